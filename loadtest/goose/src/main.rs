//! Goose load test of the flash-sale scenario: the same buyers as `loadtest/k6/flash_sale.js`.
//!
//! One run is one phase, picked with goose's own `--scenarios`:
//! - `spike`: distinct buyers at sale start; a share of them resend the same request (same
//!   `Idempotency-Key`: a client retry), which must replay the same order, and a share
//!   double-click (a new key), which must never make a second order;
//! - `flood`: latecomers on a sold-out activity (all `409 sold_out`);
//! - `healthz`: `GET /healthz`, the HTTP ceiling under the same client;
//! - `lifecycle`: buy, then pay, cancel or walk away (`lifecycle.rs`; `loadtest/lifecycle`).
//!
//! Every other goose option works as usual (`--users`, `--increase-rate`, `--run-time`,
//! `--throttle-requests` for a fixed rate, `--co-mitigation`, `--report-file`). Besides
//! goose's report, each run merges its phase into `SUMMARY_JSON` in the shape of k6's
//! summary export (`http_reqs{phase:…}`, `http_req_duration{phase:…}` and the answer
//! counters), so `loadtest/report.py` and `loadtest/check_invariants.py` read either tool.
//!
//! Environment (set by `loadtest/run`): `ACTIVITY`, `FLOOD_ACTIVITY`, `TOKENS` (one buyer
//! JWT per line), `RETRY_SHARE` (0.2), `CLICK_SHARE` (0.05), `PHASE` (the name the buyers'
//! requests are reported under, default `spike`), `SUMMARY_JSON`.

mod lifecycle;

use lifecycle::buyer as lifecycle_buyer;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use goose::prelude::*;
use serde_json::{json, Value};

/// What the phases share: the scenario's inputs and the answer counters.
struct Sale {
    activity: String,
    flood_activity: String,
    /// The phase the buyers' requests are reported under (`PHASE`, default `spike`; the
    /// fixed-rate run of `loadtest/run` calls it `steady`).
    buy_phase: String,
    tokens: Vec<String>,
    /// Every `1/retry_every`-th buyer resends, every `1/click_every`-th double-clicks:
    /// deterministic, so two runs of one configuration send the same requests.
    retry_every: usize,
    click_every: usize,
    next_buyer: AtomicUsize,
    next_latecomer: AtomicUsize,
    counters: [AtomicU64; Counter::ALL.len()],
}

#[derive(Clone, Copy)]
enum Counter {
    Accepted,
    Replayed,
    SoldOut,
    AlreadyPurchased,
    Unexpected,
    Inconsistent,
}

impl Counter {
    const ALL: [Counter; 6] = [
        Counter::Accepted,
        Counter::Replayed,
        Counter::SoldOut,
        Counter::AlreadyPurchased,
        Counter::Unexpected,
        Counter::Inconsistent,
    ];

    /// The k6 script's metric names.
    fn name(self) -> &'static str {
        match self {
            Counter::Accepted => "orders_accepted",
            Counter::Replayed => "orders_replayed",
            Counter::SoldOut => "rejected_sold_out",
            Counter::AlreadyPurchased => "rejected_already_purchased",
            Counter::Unexpected => "unexpected_answers",
            Counter::Inconsistent => "inconsistent_replays",
        }
    }
}

static SALE: OnceLock<Arc<Sale>> = OnceLock::new();

fn sale() -> &'static Sale {
    SALE.get()
        .expect("initialised in main before the attack starts")
}

fn env(name: &str) -> Result<String, GooseError> {
    std::env::var(name).map_err(|_| GooseError::InvalidOption {
        option: name.to_string(),
        value: String::new(),
        detail: format!("environment variable {name} is required"),
    })
}

fn share_every(name: &str, default: f64) -> usize {
    let share: f64 = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    if share <= 0.0 {
        usize::MAX
    } else {
        (1.0 / share).round().max(1.0) as usize
    }
}

impl Sale {
    fn from_env() -> Result<Self, GooseError> {
        let path = env("TOKENS")?;
        let tokens: Vec<String> = std::fs::read_to_string(&path)
            .map_err(|e| GooseError::InvalidOption {
                option: "TOKENS".into(),
                value: path.clone(),
                detail: e.to_string(),
            })?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if tokens.len() < 2 {
            return Err(GooseError::InvalidOption {
                option: "TOKENS".into(),
                value: path,
                detail: "needs at least two tokens".into(),
            });
        }
        let activity = env("ACTIVITY")?;
        Ok(Sale {
            flood_activity: std::env::var("FLOOD_ACTIVITY").unwrap_or_else(|_| activity.clone()),
            activity,
            buy_phase: std::env::var("PHASE").unwrap_or_else(|_| "spike".into()),
            tokens,
            retry_every: share_every("RETRY_SHARE", 0.2),
            click_every: share_every("CLICK_SHARE", 0.05),
            next_buyer: AtomicUsize::new(0),
            next_latecomer: AtomicUsize::new(0),
            counters: Default::default(),
        })
    }

    fn count(&self, counter: Counter) {
        self.counters[counter as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// One purchase's answer, as far as the scenario cares.
struct Answer {
    status: u16,
    order_id: Option<String>,
}

async fn buy(
    user: &mut GooseUser,
    buyer: usize,
    key: &str,
    activity: &str,
    phase: &str,
) -> Result<Answer, Box<TransactionError>> {
    let s = sale();
    let path = format!("/api/v1/activities/{activity}/purchase");
    let builder = user
        .get_request_builder(&GooseMethod::Post, &path)?
        .bearer_auth(&s.tokens[buyer])
        .header("Idempotency-Key", key);
    let request = GooseRequest::builder()
        .set_request_builder(builder)
        .name(phase)
        // 201 and 409 are the expected outcomes of a flash sale (goose counts the rest
        // as failures).
        .expect_status_code(201)
        .build();
    let mut goose = user.request(request).await?;
    let response = match goose.response {
        Ok(r) => r,
        Err(e) => {
            s.count(Counter::Unexpected);
            return user
                .set_failure(&e.to_string(), &mut goose.request, None, None)
                .map(|()| Answer {
                    status: 0,
                    order_id: None,
                });
        }
    };
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let order_id = body["order_id"].as_str().map(str::to_owned);
    match (status, body["code"].as_str()) {
        (201, _) if replayed => s.count(Counter::Replayed),
        (201, _) => s.count(Counter::Accepted),
        (409, Some("sold_out")) => s.count(Counter::SoldOut),
        (409, Some("already_purchased")) => s.count(Counter::AlreadyPurchased),
        (409, _) => {}
        _ => {
            s.count(Counter::Unexpected);
            return user
                .set_failure(
                    &format!("answered {status}"),
                    &mut goose.request,
                    None,
                    None,
                )
                .map(|()| Answer { status, order_id });
        }
    }
    if status == 409 {
        user.set_success(&mut goose.request)?;
    }
    Ok(Answer { status, order_id })
}

/// A buyer of the spike: each iteration is a new, distinct buyer.
async fn buyer(user: &mut GooseUser) -> TransactionResult {
    let s = sale();
    let n = s.next_buyer.fetch_add(1, Ordering::Relaxed);
    // The first half of the tokens buys; the second half is the flood's latecomers.
    let buyer = n % (s.tokens.len() / 2);
    let key = format!("k-{buyer}");
    let first = buy(user, buyer, &key, &s.activity, &s.buy_phase).await?;
    if n.is_multiple_of(s.retry_every) {
        // The client did not see the answer and resends: same key, same payload.
        let again = buy(user, buyer, &key, &s.activity, &s.buy_phase).await?;
        let same = if first.status == 201 {
            again.status == 201 && again.order_id == first.order_id
        } else {
            again.status == 409 || again.status == 201
        };
        if !same {
            s.count(Counter::Inconsistent);
        }
    }
    if n % s.click_every == 1 {
        // A double click: a second key. Never a second order.
        let other = buy(
            user,
            buyer,
            &format!("{key}-dbl"),
            &s.activity,
            &s.buy_phase,
        )
        .await?;
        if other.status == 201 && first.status == 201 && other.order_id != first.order_id {
            s.count(Counter::Inconsistent);
        }
    }
    Ok(())
}

/// A latecomer after the sell-out (distinct buyers, from the end of the token file).
async fn latecomer(user: &mut GooseUser) -> TransactionResult {
    let s = sale();
    let n = s.next_latecomer.fetch_add(1, Ordering::Relaxed);
    let buyer = s.tokens.len() - 1 - n % (s.tokens.len() / 2);
    buy(
        user,
        buyer,
        &format!("late-{buyer}"),
        &s.flood_activity,
        "flood",
    )
    .await?;
    Ok(())
}

async fn health(user: &mut GooseUser) -> TransactionResult {
    user.get_named("/healthz", "healthz").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    let _ = SALE.set(Arc::new(Sale::from_env()?));
    let metrics = GooseAttack::initialize()?
        .register_scenario(scenario!("spike").register_transaction(transaction!(buyer)))
        .register_scenario(scenario!("flood").register_transaction(transaction!(latecomer)))
        .register_scenario(scenario!("healthz").register_transaction(transaction!(health)))
        .register_scenario(
            scenario!("lifecycle").register_transaction(transaction!(lifecycle_buyer)),
        )
        .execute()
        .await?;
    if let Ok(path) = std::env::var("SUMMARY_JSON") {
        merge_summary(&path, &metrics).map_err(|e| GooseError::InvalidOption {
            option: "SUMMARY_JSON".into(),
            value: path.clone(),
            detail: e.to_string(),
        })?;
    }
    Ok(())
}

/// Adds this run's phase to the k6-shaped summary at `path` (created if absent).
fn merge_summary(path: &str, metrics: &GooseMetrics) -> std::io::Result<()> {
    let mut summary: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| json!({ "metrics": {} }));
    let m = summary["metrics"]
        .as_object_mut()
        .ok_or_else(|| std::io::Error::other("summary without metrics"))?;
    for aggregate in metrics.requests.values() {
        // Requests are named for their phase (goose keys its aggregates "METHOD name").
        let phase = aggregate.path.as_str();
        // With --co-mitigation, goose keeps the latencies corrected for coordinated
        // omission apart: those are the ones a fixed-rate run must report.
        let timings = aggregate
            .coordinated_omission_data
            .as_ref()
            .unwrap_or(&aggregate.raw_data);
        let ms = |p: f32| timings.percentile_us(p) as f64 / 1000.0;
        m.insert(
            format!("http_req_duration{{phase:{phase}}}"),
            json!({ "values": { "med": ms(0.5), "p(90)": ms(0.9), "p(95)": ms(0.95), "p(99)": ms(0.99),
                                "max": timings.maximum_time_us as f64 / 1000.0 } }),
        );
        m.insert(
            format!("http_reqs{{phase:{phase}}}"),
            json!({ "values": { "count": aggregate.raw_data.counter,
                                "rate": aggregate.raw_data.counter as f64 / metrics.duration.max(1) as f64 } }),
        );
    }
    for counter in Counter::ALL {
        let add = sale().counters[counter as usize].load(Ordering::Relaxed);
        let entry = m
            .entry(counter.name())
            .or_insert_with(|| json!({ "values": { "count": 0 } }));
        let before = entry["values"]["count"].as_u64().unwrap_or(0);
        entry["values"]["count"] = json!(before + add);
    }
    lifecycle::merge(m);
    std::fs::write(path, serde_json::to_string_pretty(&summary)?)
}
