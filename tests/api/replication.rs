//! `redis.replica_acks`: a purchase is answered `201` only once that many replicas have it
//! (`WAIT`); otherwise `503`, and a retry with the same key asks again. On the single test
//! Redis (no replica) every accept times out; on the suite's local cluster (one replica per
//! master, scripts/redis-cluster.sh) every accept is confirmed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::AsyncCommands;
use serde_json::Value;

use seckill::domain::UserId;
use seckill::gate::{OrderRecord, ReplicaAcks};
use seckill::redis_conn::RedisClient;

use crate::helpers::{problem, spawn_app_with, TestApp};

/// Replicas of the master that holds the test's keys.
async fn replicas(app: &TestApp) -> u32 {
    if !app.settings.redis.cluster_nodes.is_empty() {
        return 1; // every master of scripts/redis-cluster.sh has one replica
    }
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Confirmations by one replica, waiting up to `timeout_ms`.
async fn confirmations(app: &TestApp, timeout_ms: u64) -> Arc<ReplicaAcks> {
    confirmations_by(app, 1, timeout_ms).await
}

async fn confirmations_by(app: &TestApp, replicas: u32, timeout_ms: u64) -> Arc<ReplicaAcks> {
    let client = RedisClient::open(&app.settings.redis).unwrap();
    Arc::new(
        ReplicaAcks::connect(&client, replicas, timeout_ms, "purchase")
            .await
            .unwrap(),
    )
}

/// Buyers the activity's master holds (accepted, whether or not confirmed).
async fn buyers_in_redis(app: &TestApp, activity: u64) -> i64 {
    app.redis
        .clone()
        .hlen(app.keys(activity).buyers)
        .await
        .unwrap()
}

#[tokio::test]
async fn with_replica_acks_an_accept_is_answered_only_once_a_replica_has_it() {
    let app = spawn_app_with(|s| {
        s.redis.replica_acks = 1;
        s.redis.replica_ack_timeout_ms = 200;
    })
    .await;
    let activity = app.create_activity(5, 1).await;
    let first = app.purchase(activity, 1, "k", None).await;
    if replicas(&app).await >= 1 {
        assert_eq!(first.status(), 201);
        let body: Value = first.json().await.unwrap();
        let replay = app.purchase(activity, 1, "k", None).await;
        assert_eq!(replay.status(), 201);
        assert_eq!(
            replay.json::<Value>().await.unwrap()["order_id"],
            body["order_id"]
        );
        // The writer stores what the replicas have.
        app.wait_drained(activity).await;
    } else {
        let (status, code, body) = problem(first).await;
        assert_eq!((status, code.as_str()), (503, "unavailable"), "{body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains("replica"),
            "{body}"
        );
        // The master has it (the sale counts it), and the retry with the same key finds
        // it, and waits for the replicas again.
        assert_eq!(buyers_in_redis(&app, activity).await, 1);
        let (status, _, _) = problem(app.purchase(activity, 1, "k", None).await).await;
        assert_eq!(status, 503);
        // Another key of the same buyer is told about the order only once it is safe:
        // `already_purchased` names it, so it waits for the replicas too.
        let (status, code, body) = problem(app.purchase(activity, 1, "k2", None).await).await;
        assert_eq!((status, code.as_str()), (503, "unavailable"), "{body}");
        // Nor is it shown by a lookup: a failover now could still lose it.
        let record: String = app
            .redis
            .clone()
            .hget(app.keys(activity).buyers, 1)
            .await
            .unwrap();
        let order_id = OrderRecord::parse(&record).unwrap().order_id;
        for path in [
            format!("/api/v1/activities/{activity}/purchase"),
            format!("/api/v1/orders/{order_id}"),
        ] {
            let (status, code, body) = problem(app.get_as(1, &path).await).await;
            assert_eq!(
                (status, code.as_str()),
                (503, "unavailable"),
                "{path}: {body}"
            );
        }
        // Nor does the writer store it: a failover now could lose the accept, and the
        // buyer's retry would make another order that MySQL must be free to take.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stats = app.admin_stats(activity).await;
        assert_eq!(stats["persisted"], 0, "{stats}");
        assert_eq!(stats["pending"], 1, "{stats}");
        let metrics = app.metrics().await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("seckill_replica_ack_timeouts_total") && !l.ends_with(" 0")),
            "{metrics}"
        );
    }
}

/// Accepts that arrive together share one `WAIT`: a `WAIT` blocks the shared connection
/// until the replicas answer, so one per accept would queue every purchase of the process
/// behind the previous accept's replication round trip (src/gate/replica_acks.rs).
#[tokio::test]
async fn concurrent_accepts_share_their_waits() {
    const BUYERS: u64 = 40;
    let app = spawn_app_with(|s| {
        s.writer.enabled = false;
        s.redis.replica_acks = 1;
        s.redis.replica_ack_timeout_ms = 200;
    })
    .await;
    let activity = app.create_activity(BUYERS as i64, 1).await;
    // Every confirmation of the activity increments its `replicated` counter once
    // (lua/replica_check.lua); the writer, which confirms too, is off.
    let confirmations = || async {
        let n: Option<u64> = app
            .redis
            .clone()
            .get(app.keys(activity).replicated)
            .await
            .unwrap();
        n.unwrap_or(0)
    };
    let answers = join_all((1..=BUYERS).map(|u| app.purchase(activity, u, "k", None))).await;
    let expected = if replicas(&app).await >= 1 { 201 } else { 503 };
    for answer in answers {
        assert_eq!(answer.status(), expected);
    }
    // One per accept would be 40.
    let sent = confirmations().await;
    assert!(
        (1..=BUYERS / 4).contains(&sent),
        "{sent} confirmations for {BUYERS} concurrent accepts"
    );
    assert_eq!(buyers_in_redis(&app, activity).await, BUYERS as i64);
}

/// A confirmation answers for the buyer's order on the master it reaches: an order that
/// master does not have (a failover lost it, and the confirmation reached the promoted
/// replica) is not confirmed, however many replicas answer the `WAIT`.
#[tokio::test]
async fn an_order_the_master_does_not_have_is_never_confirmed() {
    let app = spawn_app_with(|s| s.redis.replica_acks = 0).await;
    let activity = app.create_activity(5, 1).await;
    let first = app.purchase(activity, 1, "k", None).await;
    assert_eq!(first.status(), 201);
    let body: Value = first.json().await.unwrap();
    let order: u64 = body["order_id"].as_str().unwrap().parse().unwrap();
    let acks = confirmations(&app, 200).await;
    let keys = app.keys(activity);
    let have = replicas(&app).await;
    assert_eq!(
        acks.confirm(&keys, UserId::new(1), order).await.unwrap(),
        have.min(1)
    );
    // Another order of the same buyer (the one a failover lost, when the retry made a new
    // one), and a buyer without an order.
    assert_eq!(
        acks.confirm(&keys, UserId::new(1), order + 1)
            .await
            .unwrap(),
        0
    );
    assert_eq!(acks.confirm(&keys, UserId::new(2), order).await.unwrap(), 0);
}

#[tokio::test]
async fn without_replica_acks_nothing_waits_for_replicas() {
    let app = spawn_app_with(|s| s.redis.replica_acks = 0).await;
    let activity = app.create_activity(5, 1).await;
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201);
}

/// One activity's confirmation does not hold up another's: each in flight has a connection
/// of its own (Redis reads nothing more from a client blocked in `WAIT`). Without a replica
/// every `WAIT` runs to its timeout, so on one shared connection the second would answer
/// only after both timeouts; with a replica both answer at once.
#[tokio::test]
async fn a_confirmation_does_not_wait_behind_another_activitys() {
    const TIMEOUT_MS: u64 = 1_000;
    let app = spawn_app_with(|s| s.redis.replica_acks = 0).await;
    let (x, y) = (
        app.create_activity(5, 1).await,
        app.create_activity(5, 1).await,
    );
    let acks = confirmations(&app, TIMEOUT_MS).await;
    let first = {
        let (acks, keys) = (acks.clone(), app.keys(x));
        tokio::spawn(async move { acks.confirm(&keys, UserId::new(1), 1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    acks.confirm(&app.keys(y), UserId::new(1), 1).await.unwrap();
    let took = started.elapsed();
    first.await.unwrap().unwrap();
    assert!(
        took < Duration::from_millis(TIMEOUT_MS * 3 / 2),
        "the second activity's confirmation took {took:?}"
    );
    // Groups nobody waits in are dropped when the next activity's is made.
    let z = app.create_activity(5, 1).await;
    acks.confirm(&app.keys(z), UserId::new(1), 1).await.unwrap();
    assert_eq!(acks.groups_held(), 1);
}

/// A confirmation may wait its whole `replica_ack_timeout_ms`, however long, and then
/// answers how many replicas it reached: no connection timeout of its own cuts it short (on
/// a cluster, redis-rs bounds every request by a timeout fixed when its client is built).
#[tokio::test]
async fn a_confirmation_waits_its_whole_timeout() {
    const TIMEOUT_MS: u64 = 2_500;
    let app = spawn_app_with(|s| s.redis.replica_acks = 0).await;
    let activity = app.create_activity(5, 1).await;
    let have = replicas(&app).await;
    // One replica more than there are: the WAIT runs to its timeout.
    let acks = confirmations_by(&app, have + 1, TIMEOUT_MS).await;
    let started = Instant::now();
    let (_, reached) = acks.check(&app.keys(activity), &[(1, 1)]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(TIMEOUT_MS));
    assert_eq!(reached, have);
}
