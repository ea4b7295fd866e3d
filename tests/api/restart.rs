//! A process killed with SIGKILL and started again with the same instance id: how soon it
//! serves, and how soon the orders its writer held reach MySQL (issue: the restart waited
//! ~13 s for its own dead lease, and the held entries ~30 s for `claim_idle_ms`).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

use crate::helpers::TestApp;
use crate::service::{unacked_by, wait_for_consumer, Service};

/// What a restart must achieve, measured from the moment the new process is started.
const TARGET: Duration = Duration::from_secs(5);

/// The writer is made to hold entries it has not committed (the test holds the activity
/// row's lock, so the writer's transaction waits on it), the process is killed, and the
/// same command is started again with the same `ids.instance_id` and the default
/// `writer.claim_idle_ms` (30 s). It must answer within 5 s (its predecessor's lease is
/// provably dead: taken over at once) and every order answered `201` before the kill must
/// be in MySQL within 5 s (the dead writer's heartbeat is gone: its entries are claimed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_restarted_after_sigkill_serves_and_catches_up_within_5_s() {
    let service = Service::new(&[]);
    let mut child = service.start(7).await;
    let app = TestApp::attach(service.settings.clone(), service.address()).await;
    let activity = app.create_activity(100, 1).await;
    let pid = child.id().expect("running");
    wait_for_consumer(&app, activity, pid).await;

    let lock = app.db.begin().await.unwrap();
    lock.execute_raw(Statement::from_string(
        lock.get_database_backend(),
        format!("SELECT id FROM seckill_activity WHERE id = {activity} FOR UPDATE"),
    ))
    .await
    .unwrap();
    let mut acked = Vec::new();
    for user in 1..=20u64 {
        let resp = app.purchase(activity, user, "k", None).await;
        assert_eq!(resp.status(), 201);
        let body: serde_json::Value = resp.json().await.unwrap();
        acked.push(body["order_id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    // The writer reads a few batches (`writer.max_in_flight`), each stuck on the lock; the
    // rest wait in the stream. The held ones are what only a claim can bring back.
    let waiting = Instant::now();
    let held = loop {
        let held = unacked_by(&app, activity, pid).await;
        if held > 0 {
            break held;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the writer never took the entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().await.unwrap();
    lock.rollback().await.unwrap();

    let restarted = Instant::now();
    let child = service.start(7).await;
    let serving = restarted.elapsed();
    let caught_up = loop {
        let stored: Vec<u64> = app.orders(activity).await.iter().map(|o| o.id).collect();
        if acked.iter().all(|id| stored.contains(id)) {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "orders missing a minute after the restart: {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "restart after SIGKILL, same instance id: serving after {} ms, all {} acknowledged \
         orders ({held} held by the killed writer) in MySQL after {} ms",
        serving.as_millis(),
        acked.len(),
        caught_up.as_millis()
    );
    assert!(serving < TARGET, "serving only after {serving:?}");
    assert!(caught_up < TARGET, "caught up only after {caught_up:?}");
    drop(child);
}
