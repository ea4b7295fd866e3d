//! Crashes in the order lifecycle, with the real binary: the process aborts at a crash point
//! (`SECKILL_CRASH_AT`, src/crash_point.rs) between two writes no transaction spans, and a
//! restarted process must repair what it left.

use std::time::{Duration, Instant};

use serde_json::Value;

use seckill::provider::{ProviderArgs, RunningProvider};

use crate::helpers::{token, TestApp, WEBHOOK_SECRET};
use crate::service::Service;

/// Sends `req` to a process that must die at its crash point: no answer comes back.
async fn no_answer(req: reqwest::RequestBuilder) {
    let answer = req.send().await;
    assert!(
        answer.is_err(),
        "no answer from a process that died: {answer:?}"
    );
}

/// Waits for the child to exit (it aborts at its crash point).
async fn wait_exit(child: &mut tokio::process::Child) {
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the process did not stop at its crash point")
        .unwrap();
    assert!(!status.success(), "{status}");
}

#[tokio::test]
async fn killed_between_the_mysql_cancel_and_the_redis_return_the_restart_returns_the_unit_once() {
    let mut service = Service::new(&[]);
    service.set_env("SECKILL_CRASH_AT", "cancel.after_commit");
    let mut child = service.start(0).await;
    let app = TestApp::attach(service.settings.clone(), service.address()).await;
    let activity = app.create_priced(2, 100, 900).await;
    let order = app.buy_stored(activity, 1).await;
    assert_eq!(app.remaining(activity).await, 1);

    // The cancel commits in MySQL, then the process dies before the Redis return.
    no_answer(
        app.client
            .post(app.url(&format!("/api/v1/orders/{order}/cancel")))
            .bearer_auth(token(1)),
    )
    .await;
    wait_exit(&mut child).await;
    let row = app.order_row(order).await.unwrap();
    assert_eq!(row.status, "cancelled");
    assert!(row.stock_returned_at.is_none());
    assert_eq!(app.activity_row(activity).await.sold, 0);
    assert_eq!(app.remaining(activity).await, 1, "Redis was not told");

    // Restarted without the crash point: the sweeper gives the unit back, once.
    service.unset_env("SECKILL_CRASH_AT");
    let _child = service.start(0).await;
    let started = Instant::now();
    app.wait_returned(order).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "repaired after {:?}",
        started.elapsed()
    );
    assert_eq!(app.remaining(activity).await, 2);
    // The buyer's retried cancel answers the same, and returns nothing more.
    let resp = app.cancel(order, 1).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.remaining(activity).await, 2);
    // Both units sell again.
    for user in [2, 3] {
        assert_eq!(app.purchase(activity, user, "k", None).await.status(), 201);
    }
    assert_eq!(app.purchase(activity, 4, "k", None).await.status(), 409);
}

/// A provider for a child service, with callbacks delayed so that some are in flight when
/// the service dies.
fn provider(delay_ms: u64) -> RunningProvider {
    RunningProvider::start(
        ProviderArgs {
            duplicates: 2,
            delay_ms,
            jitter_ms: delay_ms,
            retry_min_ms: 50,
            retry_max_ms: 200,
            ..ProviderArgs::default()
        },
        WEBHOOK_SECRET,
    )
    .unwrap()
}

#[tokio::test]
async fn killed_between_recording_a_payment_and_asking_the_provider_the_restart_charges_it() {
    let p = provider(0);
    let mut service = Service::new(&[]);
    service.set_env("SECKILL__PAYMENT__PROVIDER_URL", &p.url());
    service.set_env("SECKILL_CRASH_AT", "pay.after_record");
    let mut child = service.start(0).await;
    let app = TestApp::attach(service.settings.clone(), service.address()).await;
    let activity = app.create_priced(1, 300, 900).await;
    let order = app.buy_stored(activity, 1).await;
    let t = app.payment_token(order, 1).await;
    no_answer(
        app.client
            .post(app.url(&format!("/api/v1/orders/{order}/pay")))
            .bearer_auth(token(1))
            .header("Payment-Token", &t)
            .header("Idempotency-Key", "k"),
    )
    .await;
    wait_exit(&mut child).await;
    let payments = app.payments_of(order).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, "processing");
    assert!(payments[0].provider_accepted_at.is_none());
    assert_eq!(p.stats().charges, 0, "the provider was never asked");

    service.unset_env("SECKILL_CRASH_AT");
    let _child = service.start(0).await;
    // The buyer's retry with the same key gets the first answer…
    let replay = app.pay(order, 1, &t, "k").await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    // …and the sweeper asks the provider (5 s after the payment started), which calls back.
    app.wait_status(order, "paid", Duration::from_secs(15))
        .await;
    let payments = app.payments_of(order).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, "succeeded");
    assert_eq!(p.stats().charges, 1);
}

#[tokio::test]
async fn killed_while_callbacks_are_in_flight_every_payment_is_applied_once_after_the_restart() {
    let p = provider(400);
    let mut service = Service::new(&[]);
    service.set_env("SECKILL__PAYMENT__PROVIDER_URL", &p.url());
    let mut child = service.start(0).await;
    let app = TestApp::attach(service.settings.clone(), service.address()).await;
    let activity = app.create_priced(8, 120, 900).await;
    let mut orders = Vec::new();
    for user in 1..=8 {
        let order = app.buy_stored(activity, user).await;
        orders.push((order, app.start_payment(order, user).await));
    }
    // SIGKILL with callbacks still on their way (delayed 400–800 ms, two copies each).
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(p.stats().undelivered > 0, "{:?}", p.stats());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _child = service.start(0).await;
    // A charge the killed process had not sent yet is sent by the sweeper 5 s after its
    // payment started; then every callback must get through.
    for _ in 0..800 {
        let s = p.stats();
        if s.charges == 8 && s.undelivered == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let s = p.stats();
    assert_eq!((s.charges, s.undelivered), (8, 0), "{s:?}");
    for (order, payment) in &orders {
        let row = app.order_row(*order).await.unwrap();
        assert_eq!(row.status, "paid", "order {order}");
        let payments = app.payments_of(*order).await;
        assert_eq!(payments.len(), 1);
        assert_eq!(
            (payments[0].id, payments[0].status.as_str()),
            (*payment, "succeeded")
        );
    }
    let stats = app.admin_stats(activity).await;
    assert_eq!(
        (stats["paid"].as_u64(), stats["sold"].as_i64()),
        (Some(8), Some(8))
    );
    assert_eq!(app.remaining(activity).await, 0);
}
