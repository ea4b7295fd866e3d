//! The `lifecycle` scenario: the same buyers as `loadtest/k6/lifecycle.js` (run by
//! `loadtest/lifecycle --tool goose`).
//!
//! Every iteration is a new buyer who buys once (a share resends the same request, which
//! must replay the same order). Winners, by user id: 60 % pay (a payment token — retried
//! while the order is `pending` —, pay, a share clicks "pay" twice with the same key, then
//! wait for `paid`), 20 % cancel (a share twice), 20 % walk away and let the order expire.
//! Losers come back as new buyers, so returned units are sold again. The counters have the
//! k6 script's names, merged into `SUMMARY_JSON` by `main`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use goose::prelude::*;
use serde_json::{json, Map, Value};

/// The answer counters, named as in the k6 script.
#[derive(Clone, Copy)]
enum C {
    Accepted,
    SoldOut,
    Inconsistent,
    Unexpected,
    Paid,
    PayStarted,
    PayReplay,
    Cancelled,
    Walked,
}

const NAMES: [&str; 9] = [
    "orders_accepted",
    "rejected_sold_out",
    "inconsistent_replays",
    "unexpected_answers",
    "orders_paid",
    "payments_started",
    "payment_replays",
    "orders_cancelled",
    "orders_walked_away",
];

struct Life {
    next: AtomicUsize,
    user0: usize,
    counters: [AtomicU64; NAMES.len()],
    /// Milliseconds from asking for a payment token to seeing the order `paid`.
    to_paid_ms: Mutex<Vec<u64>>,
}

static LIFE: OnceLock<Life> = OnceLock::new();

fn life() -> &'static Life {
    LIFE.get_or_init(|| Life {
        next: AtomicUsize::new(0),
        user0: std::env::var("USER0")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        counters: Default::default(),
        to_paid_ms: Mutex::new(Vec::new()),
    })
}

fn count(c: C) {
    life().counters[c as usize].fetch_add(1, Ordering::Relaxed);
}

/// One request; statuses in `expected` count as goose successes. Returns the status
/// (0: no answer), whether it was a replay, and the JSON body.
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    token: &str,
    headers: &[(&str, &str)],
    expected: &[u16],
) -> Result<(u16, bool, Value), Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?.bearer_auth(token);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = GooseRequest::builder()
        .set_request_builder(builder)
        .name(name)
        .build();
    let mut goose = user.request(request).await?;
    let response = match goose.response {
        Ok(r) => r,
        Err(e) => {
            user.set_failure(&e.to_string(), &mut goose.request, None, None)?;
            return Ok((0, false, Value::Null));
        }
    };
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if expected.contains(&status) {
        user.set_success(&mut goose.request)?;
    } else {
        count(C::Unexpected);
        user.set_failure(
            &format!("answered {status}"),
            &mut goose.request,
            None,
            None,
        )?;
    }
    Ok((status, replayed, body))
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("")
}

/// One buyer's whole visit.
pub async fn buyer(user: &mut GooseUser) -> TransactionResult {
    let s = super::sale();
    let l = life();
    let i = l.next.fetch_add(1, Ordering::Relaxed);
    let Some(token) = s.tokens.get(i).cloned() else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return Ok(());
    };
    let uid = l.user0 + i;
    let key = format!("buy-{uid}");
    let path = format!("/api/v1/activities/{}/purchase", s.activity);
    let idem = [("Idempotency-Key", key.as_str())];
    let mut order = None;
    for _ in 0..20 {
        let (status, replayed, body) = call(
            user,
            GooseMethod::Post,
            &path,
            "purchase",
            &token,
            &idem,
            &[201, 409, 503],
        )
        .await?;
        match status {
            201 => {
                if !replayed {
                    count(C::Accepted);
                }
                order = body["order_id"].as_str().map(str::to_owned);
                if uid.is_multiple_of(5) {
                    let (st, _, again) = call(
                        user,
                        GooseMethod::Post,
                        &path,
                        "purchase",
                        &token,
                        &idem,
                        &[201],
                    )
                    .await?;
                    if st != 201 || again["order_id"] != body["order_id"] {
                        count(C::Inconsistent);
                    }
                }
                break;
            }
            409 if code(&body) == "sold_out" => {
                count(C::SoldOut);
                break;
            }
            503 | 0 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => break,
        }
    }
    let Some(order) = order else {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    };
    match uid % 10 {
        0..=5 => pay(user, uid, &order, &token).await,
        6 | 7 => cancel(user, uid, &order, &token).await,
        _ => {
            count(C::Walked);
            Ok(())
        }
    }
}

/// `POST path` until the order is stored (`409 order_not_ready` is retried every 100 ms,
/// up to 10 s): the first other answer, or `None` when the order never became ready.
async fn post_when_ready(
    user: &mut GooseUser,
    path: &str,
    name: &str,
    token: &str,
    expected: &[u16],
) -> Result<Option<(u16, Value)>, Box<TransactionError>> {
    for _ in 0..100 {
        let (status, _, body) =
            call(user, GooseMethod::Post, path, name, token, &[], expected).await?;
        if status == 409 && code(&body) == "order_not_ready" {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return Ok(Some((status, body)));
    }
    Ok(None)
}

async fn pay(user: &mut GooseUser, uid: usize, order: &str, token: &str) -> TransactionResult {
    let started = Instant::now();
    let token_path = format!("/api/v1/orders/{order}/payment-token");
    let answer =
        post_when_ready(user, &token_path, "payment-token", token, &[200, 201, 409]).await?;
    let pt = match answer {
        Some((200 | 201, body)) => match body["payment_token"].as_str() {
            Some(pt) => pt.to_owned(),
            None => {
                count(C::Unexpected);
                return Ok(());
            }
        },
        Some(_) => {
            count(C::Unexpected);
            return Ok(());
        }
        None => return Ok(()),
    };
    let key = format!("pay-{order}");
    let headers = [
        ("Payment-Token", pt.as_str()),
        ("Idempotency-Key", key.as_str()),
    ];
    let pay_path = format!("/api/v1/orders/{order}/pay");
    let (status, _, first) = call(
        user,
        GooseMethod::Post,
        &pay_path,
        "pay",
        token,
        &headers,
        &[202],
    )
    .await?;
    if status != 202 {
        return Ok(());
    }
    count(C::PayStarted);
    if uid.is_multiple_of(3) {
        let (st, _, again) = call(
            user,
            GooseMethod::Post,
            &pay_path,
            "pay",
            token,
            &headers,
            &[202],
        )
        .await?;
        if st != 202 || again["payment_id"] != first["payment_id"] {
            count(C::Inconsistent);
        } else {
            count(C::PayReplay);
        }
    }
    let order_path = format!("/api/v1/orders/{order}");
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, _, o) = call(
            user,
            GooseMethod::Get,
            &order_path,
            "order",
            token,
            &[],
            &[200],
        )
        .await?;
        if o["status"] == "paid" {
            count(C::Paid);
            let ms = started.elapsed().as_millis() as u64;
            life()
                .to_paid_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(ms);
            break;
        }
    }
    Ok(())
}

async fn cancel(user: &mut GooseUser, uid: usize, order: &str, token: &str) -> TransactionResult {
    let path = format!("/api/v1/orders/{order}/cancel");
    match post_when_ready(user, &path, "cancel", token, &[200, 409]).await? {
        Some((200, _)) => {
            count(C::Cancelled);
            if uid.is_multiple_of(2) {
                let (st, _, again) =
                    call(user, GooseMethod::Post, &path, "cancel", token, &[], &[200]).await?;
                if st != 200 || again["status"] != "cancelled" {
                    count(C::Inconsistent);
                }
            }
        }
        Some(_) => count(C::Unexpected),
        None => {}
    }
    Ok(())
}

/// Adds the scenario's counters (and its time to `paid`) to a k6-shaped metrics map.
pub fn merge(m: &mut Map<String, Value>) {
    let Some(l) = LIFE.get() else {
        return; // the scenario did not run
    };
    for (i, name) in NAMES.iter().enumerate() {
        let add = l.counters[i].load(Ordering::Relaxed);
        let entry = m
            .entry(name.to_string())
            .or_insert_with(|| json!({ "values": { "count": 0 } }));
        let before = entry["values"]["count"].as_u64().unwrap_or(0);
        entry["values"]["count"] = json!(before + add);
    }
    let mut ms = l
        .to_paid_ms
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    ms.sort_unstable();
    let q = |p: f64| {
        ms.get(((ms.len() as f64 * p) as usize).min(ms.len().saturating_sub(1)))
            .copied()
    };
    m.insert(
        "time_to_paid_ms".into(),
        json!({ "values": { "med": q(0.5), "p(95)": q(0.95) } }),
    );
}
