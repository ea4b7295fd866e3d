//! The provider's book of charges: one per payment id, decided once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::delivery;
use super::ProviderArgs;
use crate::payment::wire::{CallbackStatus, ChargeAccepted, ChargeRequest};

/// One charge, as `GET /charges/{payment_id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Charge {
    pub payment_id: String,
    pub amount_cents: i64,
    pub provider_txn_id: String,
    pub status: CallbackStatus,
    pub callback_url: String,
    /// Copies of its callback to deliver.
    pub copies: u32,
    /// Copies answered 2xx.
    pub delivered: u32,
    /// Attempts made (sent or dropped).
    pub attempts: u32,
    /// Attempts dropped on purpose (`--drop-share`).
    pub dropped: u32,
    /// Copies given up after `--max-attempts`.
    pub abandoned: u32,
}

/// What the provider did so far (`GET /stats`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Distinct charges.
    pub charges: u64,
    /// `POST /charges` requests answered 202 (repeats included).
    pub charge_requests: u64,
    /// Charge requests refused with 503 (`--fail-charges-share`).
    pub charge_requests_failed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub attempts: u64,
    pub dropped: u64,
    /// Copies answered 2xx.
    pub delivered: u64,
    /// Copies not answered 2xx yet (0: quiet).
    pub undelivered: u64,
    pub abandoned: u64,
    /// Latency of the callbacks answered 2xx, as the provider saw it (ms).
    pub callback_p50_ms: f64,
    pub callback_p99_ms: f64,
    pub callback_max_ms: f64,
}

/// The provider's state, shared by its handlers and delivery tasks.
pub(super) struct State {
    pub args: ProviderArgs,
    pub secret: String,
    pub http: reqwest::Client,
    charges: Mutex<HashMap<String, (ChargeRequest, Charge)>>,
    rng: Mutex<fastrand::Rng>,
    charge_requests: AtomicU64,
    charge_requests_failed: AtomicU64,
    /// Latencies (µs) of the deliveries answered 2xx.
    latencies: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding these locks; a poisoned one is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub fn new(args: ProviderArgs, secret: String) -> anyhow::Result<Self> {
        let rng = match args.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Ok(Self {
            args,
            secret,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?,
            charges: Mutex::new(HashMap::new()),
            rng: Mutex::new(rng),
            charge_requests: AtomicU64::new(0),
            charge_requests_failed: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
        })
    }

    /// A uniform random number in `[0, 1)`.
    pub fn chance(&self) -> f64 {
        lock(&self.rng).f64()
    }

    /// A uniform random number of milliseconds in `[0, max]`.
    pub fn up_to(&self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            lock(&self.rng).u64(0..=max)
        }
    }

    pub fn charge(&self, payment_id: &str) -> Option<Charge> {
        lock(&self.charges).get(payment_id).map(|(_, c)| c.clone())
    }

    /// Updates one charge's delivery counters.
    pub fn record(&self, payment_id: &str, f: impl FnOnce(&mut Charge)) {
        if let Some((_, c)) = lock(&self.charges).get_mut(payment_id) {
            f(c);
        }
    }

    pub fn delivered_in(&self, micros: u64) {
        lock(&self.latencies).push(micros);
    }

    pub fn stats(&self) -> Stats {
        let charges = lock(&self.charges);
        let mut s = Stats {
            charges: charges.len() as u64,
            charge_requests: self.charge_requests.load(Ordering::Relaxed),
            charge_requests_failed: self.charge_requests_failed.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for (_, c) in charges.values() {
            match c.status {
                CallbackStatus::Succeeded => s.succeeded += 1,
                CallbackStatus::Failed => s.failed += 1,
            }
            s.attempts += u64::from(c.attempts);
            s.dropped += u64::from(c.dropped);
            s.delivered += u64::from(c.delivered);
            s.abandoned += u64::from(c.abandoned);
            s.undelivered += u64::from(c.copies - c.delivered - c.abandoned);
        }
        drop(charges);
        let mut l = lock(&self.latencies).clone();
        l.sort_unstable();
        let pick = |q: f64| {
            if l.is_empty() {
                0.0
            } else {
                let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
                l[i] as f64 / 1000.0
            }
        };
        s.callback_p50_ms = pick(0.50);
        s.callback_p99_ms = pick(0.99);
        s.callback_max_ms = pick(1.0);
        s
    }
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// `POST /charges`.
pub(super) async fn create(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    if state.chance() < state.args.fail_charges_share {
        state.charge_requests_failed.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "charge refused on purpose (--fail-charges-share)",
        );
    }
    let Some(key) = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
    else {
        return error(StatusCode::BAD_REQUEST, "Idempotency-Key is required");
    };
    let charge: ChargeRequest = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not a charge: {e}")),
    };
    if charge.payment_id != key {
        return error(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key must be the payment_id",
        );
    }
    if charge.amount_cents < 0 {
        return error(StatusCode::BAD_REQUEST, "amount_cents must not be negative");
    }
    let created = {
        let mut charges = lock(&state.charges);
        if let Some((first, c)) = charges.get(key) {
            if *first != charge {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used with another charge",
                );
            }
            state.charge_requests.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::Accepted().json(ChargeAccepted {
                payment_id: c.payment_id.clone(),
                provider_txn_id: c.provider_txn_id.clone(),
            });
        }
        let status = if state.chance() < state.args.fail_share {
            CallbackStatus::Failed
        } else {
            CallbackStatus::Succeeded
        };
        let c = Charge {
            payment_id: charge.payment_id.clone(),
            amount_cents: charge.amount_cents,
            provider_txn_id: format!("txn_{}", uuid::Uuid::new_v4().simple()),
            status,
            callback_url: charge.callback_url.clone(),
            copies: state.args.duplicates.max(1),
            delivered: 0,
            attempts: 0,
            dropped: 0,
            abandoned: 0,
        };
        charges.insert(key.to_owned(), (charge, c.clone()));
        c
    };
    state.charge_requests.fetch_add(1, Ordering::Relaxed);
    let shared: Arc<State> = state.into_inner();
    for _ in 0..created.copies {
        tokio::spawn(delivery::deliver(shared.clone(), created.clone()));
    }
    HttpResponse::Accepted().json(ChargeAccepted {
        payment_id: created.payment_id,
        provider_txn_id: created.provider_txn_id,
    })
}

/// `GET /charges/{payment_id}`.
pub(super) async fn show(path: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    match state.charge(&path) {
        Some(c) => HttpResponse::Ok().json(c),
        None => error(actix_web::http::StatusCode::NOT_FOUND, "no such charge"),
    }
}

/// `GET /stats`.
pub(super) async fn stats(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}
