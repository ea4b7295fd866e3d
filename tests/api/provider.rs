//! `seckill provider`: charges once per payment id, signs its callbacks, duplicates, drops
//! and retries them; then end to end with the service: pay through the hostile provider.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use seckill::payment::signature;
use seckill::provider::{ProviderArgs, RunningProvider};

use crate::helpers::{spawn_app_with, WEBHOOK_SECRET};

/// A bare HTTP receiver of callbacks: verifies each signature, records the bodies, and
/// answers 500 to the first `fail_first` requests, 200 after.
struct Receiver {
    url: String,
    /// Bodies of the requests answered 200 whose signature verified.
    bodies: Arc<Mutex<Vec<String>>>,
    /// Requests whose signature did not verify.
    bad: Arc<AtomicU32>,
    requests: Arc<AtomicU32>,
}

impl Receiver {
    fn start(fail_first: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let bad = Arc::new(AtomicU32::new(0));
        let requests = Arc::new(AtomicU32::new(0));
        let (b, x, r) = (bodies.clone(), bad.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut len, mut sig) = (0usize, None);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("seckill-signature:") {
                        sig = Some(line["seckill-signature:".len()..].trim().to_owned());
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                let now = chrono::Utc::now().timestamp();
                let ok = signature::verify(WEBHOOK_SECRET, sig.as_deref(), &body, now).is_ok();
                let status = if n <= fail_first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                if !ok {
                    x.fetch_add(1, Ordering::SeqCst);
                } else if n > fail_first {
                    b.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self {
            url,
            bodies,
            bad,
            requests,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }
}

fn args() -> ProviderArgs {
    ProviderArgs {
        retry_min_ms: 10,
        retry_max_ms: 50,
        ..ProviderArgs::default()
    }
}

async fn charge(p: &RunningProvider, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/charges", p.url()))
        .json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Waits until every copy of every callback got its 2xx.
async fn quiet(p: &RunningProvider) -> seckill::provider::Stats {
    for _ in 0..400 {
        let s = p.stats();
        if s.undelivered == 0 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("callbacks still undelivered: {:?}", p.stats());
}

#[tokio::test]
async fn a_charge_is_taken_once_per_payment_id_and_called_back_once_signed() {
    let rx = Receiver::start(0);
    let p = RunningProvider::start(args(), WEBHOOK_SECRET).unwrap();
    let body = json!({"payment_id": "77", "amount_cents": 1999, "callback_url": rx.url});
    let (status, first) = charge(&p, Some("77"), body.clone()).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = charge(&p, Some("77"), body.clone()).await;
    assert_eq!(
        (status, &again),
        (202, &first),
        "the same answer for the same key"
    );
    let (status, _) = charge(
        &p,
        Some("77"),
        json!({"payment_id": "77", "amount_cents": 1, "callback_url": rx.url}),
    )
    .await;
    assert_eq!(status, 422, "another charge under the same key");
    assert_eq!(charge(&p, None, body.clone()).await.0, 400, "no key");
    assert_eq!(
        charge(&p, Some("78"), body.clone()).await.0,
        400,
        "key is not the payment id"
    );
    assert_eq!(
        charge(&p, Some("79"), json!({"payment_id": "79"})).await.0,
        400,
        "not a charge"
    );
    let stats = quiet(&p).await;
    assert_eq!((stats.charges, stats.succeeded, stats.delivered), (1, 1, 1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = rx.bodies();
    assert_eq!(got.len(), 1, "one callback: {got:?}");
    assert_eq!(rx.bad.load(Ordering::SeqCst), 0);
    assert_eq!(
        got[0],
        json!({"payment_id": "77", "provider_txn_id": first["provider_txn_id"], "status": "succeeded", "amount_cents": 1999})
    );
}

#[tokio::test]
async fn duplicated_dropped_and_refused_callbacks_are_retried_until_each_copy_gets_through() {
    let rx = Receiver::start(2);
    let p = RunningProvider::start(
        ProviderArgs {
            duplicates: 3,
            drop_share: 0.5,
            seed: Some(1),
            jitter_ms: 20,
            reorder: true,
            reorder_window_ms: 30,
            ..args()
        },
        WEBHOOK_SECRET,
    )
    .unwrap();
    let body = json!({"payment_id": "5", "amount_cents": 10, "callback_url": rx.url});
    assert_eq!(charge(&p, Some("5"), body).await.0, 202);
    let stats = quiet(&p).await;
    assert_eq!(stats.delivered, 3);
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(stats.attempts >= 3 + 2 + stats.dropped, "{stats:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = rx.bodies();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|b| *b == got[0]),
        "copies are identical: {got:?}"
    );
    assert_eq!(
        rx.requests.load(Ordering::SeqCst) as u64,
        3 + 2,
        "2 refused, 3 accepted"
    );
    assert_eq!(p.charge("5").unwrap().delivered, 3);
}

#[tokio::test]
async fn failing_charges_and_failing_charge_requests() {
    let rx = Receiver::start(0);
    let p = RunningProvider::start(
        ProviderArgs {
            fail_share: 1.0,
            ..args()
        },
        WEBHOOK_SECRET,
    )
    .unwrap();
    let body = json!({"payment_id": "9", "amount_cents": 10, "callback_url": rx.url});
    assert_eq!(charge(&p, Some("9"), body).await.0, 202);
    quiet(&p).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.bodies()[0]["status"], "failed");

    let down = RunningProvider::start(
        ProviderArgs {
            fail_charges_share: 1.0,
            ..args()
        },
        WEBHOOK_SECRET,
    )
    .unwrap();
    let body = json!({"payment_id": "9", "amount_cents": 10, "callback_url": rx.url});
    assert_eq!(charge(&down, Some("9"), body).await.0, 503);
    let s = down.stats();
    assert_eq!(
        (s.charges, s.charge_requests_failed),
        (0, 1),
        "nothing recorded"
    );
    assert!(ProviderArgs {
        drop_share: 2.0,
        ..args()
    }
    .check()
    .is_err());
}

#[tokio::test]
async fn through_a_hostile_provider_each_payment_is_applied_once() {
    // Every callback three times, out of order, some attempts lost, a third of the charge
    // requests refused (the service retries them), a fifth of the charges failed.
    let p = RunningProvider::start(
        ProviderArgs {
            duplicates: 3,
            reorder: true,
            reorder_window_ms: 200,
            drop_share: 0.2,
            fail_share: 0.2,
            fail_charges_share: 0.3,
            seed: Some(7),
            ..args()
        },
        WEBHOOK_SECRET,
    )
    .unwrap();
    let url = p.url();
    let app = spawn_app_with(move |s| {
        s.payment.provider_url = url;
        s.payment.retry_max_ms = 100;
    })
    .await;
    let activity = app.create_priced(10, 450, 900).await;
    let mut orders = Vec::new();
    for user in 1..=10 {
        let order = app.buy_stored(activity, user).await;
        orders.push((user, order, app.start_payment(order, user).await));
    }
    // Wait until the provider took every charge and every callback got through.
    for _ in 0..400 {
        let s = p.stats();
        if s.charges == 10 && s.undelivered == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stats = p.stats();
    assert_eq!((stats.charges, stats.undelivered), (10, 0), "{stats:?}");
    assert_eq!(stats.delivered, 30);
    let mut paid = 0;
    for (_, order, payment) in &orders {
        let charge = p.charge(&payment.to_string()).unwrap();
        let row = app.order_row(*order).await.unwrap();
        let payments = app.payments_of(*order).await;
        assert_eq!(payments.len(), 1, "one payment per order");
        let expect = if matches!(
            charge.status,
            seckill::payment::wire::CallbackStatus::Succeeded
        ) {
            paid += 1;
            ("paid", "succeeded")
        } else {
            ("created", "failed")
        };
        assert_eq!((row.status.as_str(), payments[0].status.as_str()), expect);
        assert_eq!(
            payments[0].provider_txn_id.as_deref(),
            Some(charge.provider_txn_id.as_str())
        );
        assert!(payments[0].provider_accepted_at.is_some());
    }
    assert_eq!(paid, stats.succeeded);
    let s = app.admin_stats(activity).await;
    assert_eq!(s["paid"].as_u64().unwrap(), stats.succeeded);
    assert_eq!(
        s["sold"], 10,
        "failed payments keep the order (and its unit) until expiry"
    );
    assert!(stats.charge_requests_failed > 0, "{stats:?}");
}
