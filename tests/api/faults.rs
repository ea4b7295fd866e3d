//! Faults a sale meets, against the real Redis and MariaDB: an entry MySQL keeps refusing,
//! a writer backlog at its bound, MySQL unreachable for 10 s, Redis losing an activity's
//! state, Redis selling more than the stock, and the operator's reconcile tool.

use std::time::{Duration, Instant};

use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use seckill::gate::stream::{dead_letter, intent};

use crate::helpers::{metric_value, problem, spawn_app_with, TestApp};
use crate::mysql_proxy::{target_of, MysqlProxy};

/// Order ids of the 201 answers (fresh or replayed) for `users` buying with key `k<user>`.
async fn buy_all(app: &TestApp, activity: u64, users: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut ids = Vec::new();
    for u in users {
        let resp = app.purchase(activity, u, &format!("k{u}"), None).await;
        assert_eq!(resp.status(), 201, "user {u}");
        let body: Value = resp.json().await.unwrap();
        ids.push(body["order_id"].as_str().unwrap().parse().unwrap());
    }
    ids
}

/// A gate on the test app's key prefix, for the recovery tools (as `seckill recover` builds
/// one).
fn gate(app: &TestApp) -> seckill::gate::Gate {
    seckill::gate::Gate::new(
        app.redis.clone(),
        seckill::gate::KeySpace::new(app.prefix.clone()),
        app.settings.idempotency.ttl_secs,
        0,
    )
}

/// `seckill_writer_orders_total{result=…}` in a Prometheus text page.
fn counter(metrics: &str, result: &str) -> u64 {
    metric_value(
        metrics,
        &format!("seckill_writer_orders_total{{result=\"{result}\"}}"),
    )
}

async fn wait_until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn an_entry_mysql_keeps_refusing_is_dead_lettered_after_n_attempts_and_the_rest_persist() {
    let app = spawn_app_with(|s| {
        s.writer.max_attempts = 3;
        s.writer.retry_min_ms = 20;
        s.writer.retry_max_ms = 100;
    })
    .await;
    let activity = app.create_activity(10, 1).await;
    // MySQL refuses user 666's row every time, whatever the batch (a trigger's SIGNAL is an
    // error even under INSERT IGNORE): a stand-in for any row that can never be stored.
    app.db
        .execute_raw(Statement::from_string(
            app.db.get_database_backend(),
            "CREATE TRIGGER poison BEFORE INSERT ON seckill_order FOR EACH ROW \
             IF NEW.user_id = 666 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison row'; END IF",
        ))
        .await
        .unwrap();
    let good = buy_all(&app, activity, [1, 2, 666, 3, 4].into_iter()).await;

    wait_until("the poison entry to be dead-lettered", 20, || async {
        let stats = app.admin_stats(activity).await;
        stats["dead_letters"] == 1 && stats["pending"] == 0
    })
    .await;
    let stats = app.admin_stats(activity).await;
    // Every other order is stored, and only they count as sold.
    let rows = app.orders(activity).await;
    let stored: Vec<u64> = rows.iter().map(|o| o.id).collect();
    let expected: Vec<u64> = good.iter().copied().filter(|&id| id != good[2]).collect();
    assert_eq!(stored, expected);
    assert_eq!(app.activity_row(activity).await.sold, 4);
    assert_eq!(stats["persisted"], 4);
    // The dead letter carries the order and the reason, with the attempt count.
    let dead: StreamRangeReply = app
        .redis
        .clone()
        .xrange_all(app.keys(activity).dead)
        .await
        .unwrap();
    let reason: String = dead.ids[0].get("reason").unwrap();
    assert!(
        reason.contains("failed 3 times") && reason.contains("poison row"),
        "{reason}"
    );
    let original: String = dead.ids[0]
        .get(&dead_letter::original(intent::FIELD))
        .unwrap();
    // order_id:quantity:created_ms:user_id:key
    assert_eq!(original.split(':').nth(3), Some("666"), "{original}");
    let metrics = app.metrics().await;
    // (The registry is the process's: other tests add to it, hence "at least".)
    assert!(counter(&metrics, "dead_letter") >= 1, "{metrics}");
}

#[tokio::test]
async fn at_the_backlog_bound_purchases_get_503_and_change_nothing() {
    let app = spawn_app_with(|s| {
        s.writer.enabled = false; // nothing drains: the backlog only grows
        s.writer.max_backlog = 3;
    })
    .await;
    let activity = app.create_activity(10, 1).await;
    let first = buy_all(&app, activity, 1..=3).await;
    let before = app.state().await;
    let resp = app.purchase(activity, 4, "k4", None).await;
    let retry_after = resp.headers().get("retry-after").cloned();
    let (status, code, _) = problem(resp).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    assert!(retry_after.is_some());
    assert_eq!(
        app.state().await,
        before,
        "a refused purchase changed state"
    );
    // Answers that write nothing go on: a replay, and another key of a buyer.
    assert_eq!(buy_all(&app, activity, [2].into_iter()).await, [first[1]]);
    let (status, code, _) = problem(app.purchase(activity, 1, "other", None).await).await;
    assert_eq!((status, code.as_str()), (409, "already_purchased"));
    assert_eq!(app.remaining(activity).await, 7);
}

#[tokio::test]
async fn mysql_unreachable_for_10_s_sales_go_on_bounded_and_the_backlog_drains_after() {
    let mysql = crate::helpers::test_settings().database.url;
    let proxy = MysqlProxy::start(target_of(&mysql), Duration::ZERO).await;
    let mut direct_db = String::new();
    let mut app = spawn_app_with(|s| {
        direct_db = s.database.url.clone();
        s.database.url = proxy.url_for(&s.database.url);
        s.writer.max_backlog = 25;
        s.writer.retry_min_ms = 50;
        s.writer.retry_max_ms = 1_000;
    })
    .await;
    app.data.drop_database_at(&direct_db);
    let activity = app.create_activity(100, 1).await;
    let mut accepted = buy_all(&app, activity, 1..=10).await;
    app.wait_drained(activity).await;

    proxy.down();
    let outage = Instant::now();
    // Purchases are decided in Redis: they go on while MySQL is away…
    accepted.extend(buy_all(&app, activity, 11..=35).await);
    // …until 25 orders wait for MySQL: then the sale pauses instead of piling up.
    let (status, code, _) = problem(app.purchase(activity, 36, "k36", None).await).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    // Readiness says which dependency is missing.
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        (body["mysql"].as_str(), body["redis"].as_str()),
        (Some("down"), Some("up"))
    );
    let sleep = Duration::from_secs(10).saturating_sub(outage.elapsed());
    tokio::time::sleep(sleep).await;
    let backlog: u64 = app
        .redis
        .clone()
        .xlen(app.keys(activity).stream)
        .await
        .unwrap();
    assert_eq!(
        backlog, 25,
        "nothing can have been written while MySQL was away"
    );

    proxy.restore();
    wait_until("readiness to come back", 15, || async {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        r.status() == 200
    })
    .await;
    let stats = app.wait_drained(activity).await;
    assert_eq!(stats["persisted"], 35);
    let stored: Vec<u64> = app.orders(activity).await.iter().map(|o| o.id).collect();
    accepted.sort_unstable();
    assert_eq!(stored, accepted, "every 201 is a row, and nothing else");
    assert_eq!(app.activity_row(activity).await.sold, 35);
    // The sale resumes.
    buy_all(&app, activity, [36].into_iter()).await;
    // Stored before the test ends: a batch still in its transaction when the service stops
    // would keep it open behind the proxy.
    app.wait_drained(activity).await;
}

/// Deletes every key of the test's prefix and flushes the script cache: what a Redis
/// restart without persistence does to this deployment (other tests share the server).
async fn lose_redis_state(app: &TestApp) {
    let mut conn = app.redis.clone();
    let keys: Vec<String> = conn.keys(format!("{}:*", app.prefix)).await.unwrap();
    let _: () = conn.del(keys).await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn after_redis_lost_its_data_an_activity_is_not_sellable_until_rebuilt_and_replays_survive() {
    let app = spawn_app_with(|_| {}).await;
    let activity = app.create_activity(10, 1).await;
    let first = buy_all(&app, activity, 1..=4).await;
    app.wait_drained(activity).await;

    lose_redis_state(&app).await;
    // Not sellable: neither "unlimited" nor "zero" — a clear 503 for buyers and for retries.
    for (user, k) in [(5, "k5"), (1, "k1")] {
        let (status, code, _) = problem(app.purchase(activity, user, k, None).await).await;
        assert_eq!((status, code.as_str()), (503, "unavailable"), "user {user}");
    }

    let gate = gate(&app);
    let id = seckill::domain::ActivityId::new(activity);
    let report = seckill::recovery::rebuild(&gate, &app.db, id)
        .await
        .unwrap();
    assert_eq!(
        (
            report.restored.buyers,
            report.restored.idempotency_records,
            report.remaining
        ),
        (4, 4, 6)
    );
    // A retry of an order accepted before the loss is replayed, with the same order id.
    let resp = app.purchase(activity, 3, "k3", None).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["order_id"], first[2].to_string());
    // A buyer cannot buy again with another key; a new buyer can.
    let (status, code, _) = problem(app.purchase(activity, 1, "again", None).await).await;
    assert_eq!((status, code.as_str()), (409, "already_purchased"));
    buy_all(&app, activity, [5].into_iter()).await;
    assert_eq!(app.remaining(activity).await, 5);
    let stats = app.wait_drained(activity).await;
    assert_eq!(stats["persisted"], 5);
    assert!(seckill::recovery::reconcile(&gate, &app.db, id)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn when_redis_sells_more_than_the_stock_the_excess_is_stored_rejected_and_visible() {
    let app = spawn_app_with(|_| {}).await;
    let activity = app.create_activity(3, 1).await;
    // A failover lost the decrements: Redis believes 5 units are left of a stock of 3.
    let _: () = app
        .redis
        .clone()
        .set(app.keys(activity).stock, 5)
        .await
        .unwrap();
    let ids = buy_all(&app, activity, 1..=5).await;
    let stats = app.wait_drained(activity).await;
    assert_eq!(stats["persisted"], 5);
    let row = app.activity_row(activity).await;
    assert_eq!(row.sold, 3, "MySQL never sells beyond the stock");
    let statuses: Vec<(u64, String)> = app
        .orders(activity)
        .await
        .into_iter()
        .map(|o| (o.user_id, o.status))
        .collect();
    let rejected: Vec<u64> = statuses
        .iter()
        .filter(|(_, s)| s == "rejected")
        .map(|(u, _)| *u)
        .collect();
    assert_eq!(rejected.len(), 2, "{statuses:?}");
    // The buyer sees it: the order lookup answers `rejected`.
    let user = rejected[0];
    let order_id = ids[(user - 1) as usize];
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/orders/{order_id}")))
        .bearer_auth(crate::helpers::token(user))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "rejected");
    let metrics = app.metrics().await;
    assert!(counter(&metrics, "rejected") >= 2, "{metrics}");
}

#[tokio::test]
async fn reconcile_reports_drift_with_a_failing_exit_status_and_repair_fixes_it() {
    let app = spawn_app_with(|_| {}).await;
    let activity = app.create_activity(10, 1).await;
    buy_all(&app, activity, 1..=3).await;
    app.wait_drained(activity).await;
    let id = activity.to_string();
    let reconcile = |args: &[&str]| {
        let mut all = vec!["reconcile", "--activity", id.as_str()];
        all.extend_from_slice(args);
        app.seckill(&all)
    };
    let (code, out) = reconcile(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("consistent"), "{out}");

    // Drift: a lost buyer record and a stock that does not add up.
    let mut conn = app.redis.clone();
    let _: () = conn.hdel(app.keys(activity).buyers, 2).await.unwrap();
    let _: () = conn.set(app.keys(activity).stock, 9).await.unwrap();
    let (code, out) = reconcile(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("user 2 has order"), "{out}");
    assert!(out.contains("remaining 9 (Redis) + taken 3"), "{out}");

    let (code, out) = reconcile(&["--repair"]);
    assert_eq!(code, Some(1), "drift was found, even if repaired: {out}");
    assert!(out.contains("repaired") && !out.contains("still:"), "{out}");
    let (code, out) = reconcile(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(app.remaining(activity).await, 7);
    let (status, code, _) = problem(app.purchase(activity, 2, "again", None).await).await;
    assert_eq!((status, code.as_str()), (409, "already_purchased"));
}

#[tokio::test]
async fn an_error_that_says_nothing_about_the_entry_is_retried_never_dead_lettered() {
    let app = spawn_app_with(|s| {
        s.writer.max_attempts = 2;
        s.writer.retry_min_ms = 20;
        s.writer.retry_max_ms = 50;
    })
    .await;
    let activity = app.create_activity(10, 1).await;
    // MySQL refuses user 777's rows as a read-only server would (1290, SQLSTATE HY000): the
    // entries are fine, the server is not. Many more failed rounds than max_attempts pass.
    let exec = |sql: &str| {
        app.db
            .execute_raw(Statement::from_string(app.db.get_database_backend(), sql))
    };
    exec(
        "CREATE TRIGGER read_only BEFORE INSERT ON seckill_order FOR EACH ROW \
         IF NEW.user_id = 777 THEN SIGNAL SQLSTATE 'HY000' \
         SET MESSAGE_TEXT = 'read only for now', MYSQL_ERRNO = 1290; END IF",
    )
    .await
    .unwrap();
    let mut ids = buy_all(&app, activity, [777].into_iter()).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stats = app.admin_stats(activity).await;
    assert_eq!(stats["dead_letters"], 0, "{stats}");
    assert_eq!(stats["pending"], 1, "{stats}");
    // The server recovers: the order is stored, nothing was lost.
    exec("DROP TRIGGER read_only").await.unwrap();
    ids.extend(buy_all(&app, activity, [1].into_iter()).await);
    app.wait_drained(activity).await;
    let stored: Vec<u64> = app.orders(activity).await.iter().map(|o| o.id).collect();
    assert_eq!(stored, ids);
}

#[tokio::test]
async fn a_rebuild_during_the_writers_drain_counts_every_order_once() {
    let app = spawn_app_with(|s| s.writer.batch_size = 1).await;
    let activity = app.create_activity(1_000, 1).await;
    let gate = gate(&app);
    let id = seckill::domain::ActivityId::new(activity);
    // Rebuilds race the writer (one entry per batch: many commits during each rebuild's
    // reads). Each must leave remaining = total − accepted exactly.
    let mut bought = 0;
    for round in 0..5u64 {
        let users = round * 40 + 1..=round * 40 + 40;
        bought += buy_all(&app, activity, users).await.len() as i64;
        let report = seckill::recovery::rebuild(&gate, &app.db, id)
            .await
            .unwrap();
        assert_eq!(report.remaining, 1_000 - bought, "round {round}");
        assert_eq!(app.remaining(activity).await, 1_000 - bought);
    }
    let stats = app.wait_drained(activity).await;
    assert_eq!(stats["persisted"], bought);
    assert_eq!(app.activity_row(activity).await.sold, bought);
}

#[tokio::test]
async fn while_a_rebuild_holds_the_sale_paused_purchases_and_reseeds_wait() {
    let app = spawn_app_with(|_| {}).await;
    let activity = app.create_activity(10, 1).await;
    let first = buy_all(&app, activity, [1].into_iter()).await;
    let gate = gate(&app);
    gate.pause(seckill::domain::ActivityId::new(activity))
        .await
        .unwrap();
    // A new buyer and a second key of a buyer: not sellable now. A replay: still answered.
    for (user, k) in [(2, "k2"), (1, "other")] {
        let (status, code, _) = problem(app.purchase(activity, user, k, None).await).await;
        assert_eq!((status, code.as_str()), (503, "unavailable"), "user {user}");
    }
    assert_eq!(buy_all(&app, activity, [1].into_iter()).await, first);
    // An ordinary re-seed must not re-open the sale under the rebuild.
    let resp = app
        .put_stock(activity, serde_json::json!({"stock": 20}))
        .await;
    let (status, code, _) = problem(resp).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    // The rebuild's own seed re-opens it.
    seckill::recovery::rebuild(&gate, &app.db, seckill::domain::ActivityId::new(activity))
        .await
        .unwrap();
    buy_all(&app, activity, [2].into_iter()).await;
    assert_eq!(app.remaining(activity).await, 8);
}
