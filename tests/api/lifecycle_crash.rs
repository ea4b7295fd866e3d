//! Crashes in the order lifecycle, with the real binary: the process aborts at a crash point
//! (`SECKILL_CRASH_AT`, src/crash_point.rs) between two writes no transaction spans, and a
//! restarted process must repair what it left.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{token, TestApp};
use crate::service::Service;

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
    let answer = app
        .client
        .post(app.url(&format!("/api/v1/orders/{order}/cancel")))
        .bearer_auth(token(1))
        .send()
        .await;
    assert!(
        answer.is_err(),
        "no answer from a process that died: {answer:?}"
    );
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
