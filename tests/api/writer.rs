//! The order writer: re-delivery, duplicates inside a batch, poison entries, reclaiming the
//! entries of a dead consumer.

use std::time::Duration;

use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use serde_json::json;

use seckill::domain::ActivityId;
use seckill::gate::stream::{dead_letter, intent};
use seckill::gate::WRITER_GROUP;
use seckill::redis_conn::RedisConn;
use seckill::writer::{persist_batch, BatchOutcome, Entry, OrderIntent, StreamsRead, Terms};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// The terms of `create_activity`'s activities (price 0, default window).
const TERMS: Terms = Terms {
    price_cents: 0,
    payment_window_secs: 900,
};

fn stream_key(app: &TestApp, activity: u64) -> String {
    app.keys(activity).stream
}

async fn entries(app: &TestApp, activity: u64) -> Vec<OrderIntent> {
    let reply: Vec<Entry> = app
        .redis
        .clone()
        .xrange_all(stream_key(app, activity))
        .await
        .unwrap();
    reply
        .iter()
        .map(|e| OrderIntent::parse(e).unwrap())
        .collect()
}

fn intent(order_id: u64, user_id: u64) -> OrderIntent {
    OrderIntent {
        entry_id: format!("0-{order_id}"),
        order_id,
        user_id,
        quantity: 1,
        idempotency_key: "k".into(),
        created_ms: chrono::Utc::now().timestamp_millis(),
    }
}

#[tokio::test]
async fn the_same_batch_twice_inserts_once_and_counts_sold_once() {
    let app = spawn_app_with(|s| s.writer.enabled = false).await;
    let activity = app.create_activity(10, 1).await;
    for user in 1..=3 {
        assert_eq!(app.purchase(activity, user, "k", None).await.status(), 201);
    }
    let batch = entries(&app, activity).await;
    let id = ActivityId::new(activity);
    let first = persist_batch(&app.db, id, TERMS, &batch).await.unwrap();
    assert_eq!(
        first,
        BatchOutcome {
            created: 3,
            rejected: 0,
            duplicates: 0
        }
    );
    let again = persist_batch(&app.db, id, TERMS, &batch).await.unwrap();
    assert_eq!(
        again,
        BatchOutcome {
            created: 0,
            rejected: 0,
            duplicates: 3
        }
    );
    assert_eq!(app.orders(activity).await.len(), 3);
    assert_eq!(app.activity_row(activity).await.sold, 3);
}

#[tokio::test]
async fn a_duplicate_user_in_a_batch_does_not_stop_the_rest() {
    let app = spawn_app_with(|s| s.writer.enabled = false).await;
    let activity = app.create_activity(10, 1).await;
    let id = ActivityId::new(activity);
    persist_batch(&app.db, id, TERMS, &[intent(1, 100)])
        .await
        .unwrap();
    // User 100 again with another order id (stored already), user 101 twice in the batch,
    // and order id 1 again for another user (never from snowflakes: must not count as sold).
    let batch = [
        intent(2, 100),
        intent(3, 101),
        intent(4, 101),
        intent(1, 103),
        intent(5, 102),
    ];
    let outcome = persist_batch(&app.db, id, TERMS, &batch).await.unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            created: 2,
            rejected: 0,
            duplicates: 3
        }
    );
    let rows = app.orders(activity).await;
    let ids: Vec<(u64, u64)> = rows.iter().map(|r| (r.id, r.user_id)).collect();
    assert_eq!(ids, vec![(1, 100), (3, 101), (5, 102)]);
    assert_eq!(app.activity_row(activity).await.sold, 3);
}

#[tokio::test]
async fn more_than_the_stock_is_stored_as_rejected_not_sold() {
    let app = spawn_app_with(|s| s.writer.enabled = false).await;
    let activity = app.create_activity(2, 1).await;
    let id = ActivityId::new(activity);
    let outcome = persist_batch(
        &app.db,
        id,
        TERMS,
        &[intent(1, 1), intent(2, 2), intent(3, 3)],
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            created: 2,
            rejected: 1,
            duplicates: 0
        }
    );
    let statuses: Vec<String> = app
        .orders(activity)
        .await
        .into_iter()
        .map(|o| o.status)
        .collect();
    assert_eq!(statuses, ["created", "created", "rejected"]);
    assert_eq!(app.activity_row(activity).await.sold, 2);
}

#[tokio::test]
async fn a_redelivered_entry_inserts_nothing_and_is_acked() {
    let app = spawn_app().await;
    let activity = app.create_activity(10, 1).await;
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201);
    app.wait_drained(activity).await;
    // Acked entries are deleted: the stream holds only what is not stored yet.
    assert!(entries(&app, activity).await.is_empty());
    // The same intent appended again, as a re-delivery would present it.
    let stored = app.orders(activity).await.remove(0);
    let packed = intent::encode(
        stored.id,
        stored.quantity,
        chrono::Utc::now().timestamp_millis(),
        stored.user_id,
        &stored.idempotency_key,
    );
    let _: String = app
        .redis
        .clone()
        .xadd(stream_key(&app, activity), "*", &[(intent::FIELD, packed)])
        .await
        .unwrap();
    wait_pending_zero(&app, activity).await;
    assert_eq!(app.orders(activity).await.len(), 1);
    assert_eq!(app.activity_row(activity).await.sold, 1);
}

/// Entries written by a version before the one-field intent (five fields) may still be in a
/// stream when the new writer starts: they are stored like the others.
#[tokio::test]
async fn an_entry_in_the_five_field_format_of_earlier_versions_is_stored() {
    let app = spawn_app().await;
    let activity = app.create_activity(10, 1).await;
    let created_ms = chrono::Utc::now().timestamp_millis();
    let fields = [
        (intent::legacy::ORDER_ID, "7300000000000001".to_string()),
        (intent::legacy::USER_ID, "777".to_string()),
        (intent::legacy::QUANTITY, "1".to_string()),
        (intent::legacy::IDEMPOTENCY_KEY, "legacy:k".to_string()),
        (intent::legacy::CREATED_MS, created_ms.to_string()),
    ];
    let _: String = app
        .redis
        .clone()
        .xadd(stream_key(&app, activity), "*", &fields)
        .await
        .unwrap();
    wait_pending_zero(&app, activity).await;
    let rows = app.orders(activity).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].id, rows[0].user_id, rows[0].quantity),
        (7_300_000_000_000_001, 777, 1)
    );
    assert_eq!(rows[0].idempotency_key, "legacy:k");
    assert_eq!(app.admin_stats(activity).await["dead_letters"], 0);
}

#[tokio::test]
async fn a_poison_entry_is_dead_lettered_and_does_not_block_the_others() {
    let app = spawn_app().await;
    let activity = app.create_activity(10, 1).await;
    let _: String = app
        .redis
        .clone()
        .xadd(
            stream_key(&app, activity),
            "*",
            &[(intent::FIELD, "not-a-number")],
        )
        .await
        .unwrap();
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201);
    wait_pending_zero(&app, activity).await;
    let stats = app.wait_drained(activity).await;
    assert_eq!(stats["dead_letters"], 1);
    assert_eq!(app.orders(activity).await.len(), 1);
    let dead: StreamRangeReply = app
        .redis
        .clone()
        .xrange_all(app.keys(activity).dead)
        .await
        .unwrap();
    let reason: String = dead.ids[0].get(dead_letter::REASON).unwrap();
    assert!(reason.contains("malformed"), "{reason}");
}

/// A consumer read entries, committed them, and died before acking: a live writer reclaims
/// them after `claim_idle_ms`, inserts nothing new, and acks them.
#[tokio::test]
async fn entries_of_a_consumer_that_died_after_commit_are_reclaimed() {
    let app = spawn_app_with(|s| {
        s.writer.enabled = false;
    })
    .await;
    let activity = app.create_activity(10, 1).await;
    for user in 1..=3 {
        assert_eq!(app.purchase(activity, user, "k", None).await.status(), 201);
    }
    // The doomed consumer: read, commit, no ack.
    let StreamsRead(read) = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(WRITER_GROUP)
        .arg("doomed")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(stream_key(&app, activity))
        .arg(">")
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    let batch: Vec<OrderIntent> = read[0]
        .1
        .iter()
        .map(|e| OrderIntent::parse(e).unwrap())
        .collect();
    assert_eq!(batch.len(), 3);
    persist_batch(&app.db, ActivityId::new(activity), TERMS, &batch)
        .await
        .unwrap();
    assert_eq!(app.admin_stats(activity).await["pending"], 3);

    // A live writer with a short idle threshold, on the same key prefix and database.
    let mut settings = app.settings.clone();
    settings.writer.claim_idle_ms = 200;
    let resources = seckill::startup::Resources::connect(settings)
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = resources.spawn_writer(stop.clone()).await.unwrap();
    wait_pending_zero(&app, activity).await;
    stop.cancel();
    writer.await.unwrap();
    assert_eq!(app.orders(activity).await.len(), 3);
    assert_eq!(app.activity_row(activity).await.sold, 3);
}

async fn wait_pending_zero(app: &TestApp, activity: u64) {
    for _ in 0..200 {
        if app.admin_stats(activity).await["pending"] == json!(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("entries still pending: {}", app.admin_stats(activity).await);
}

/// The writer's ack (`lua/ack.lua`) trims the stream up to the oldest entry still pending,
/// never past it: batches commit concurrently, and a newer batch acked first must not take
/// an older one's entries with it (a trim past a pending entry deletes an order not yet in
/// MySQL: a writer that dies then never sees it again). Once nothing is pending, everything
/// delivered goes, and what was never delivered stays.
#[tokio::test]
async fn the_ack_trims_the_stream_up_to_the_oldest_pending_entry_only() {
    let app = spawn_app().await;
    // A stream of its own (not an activity's: the app's writer must not read it).
    let stream = format!("{}:{{ack-test}}:stream", app.prefix);
    let mut r = app.redis.clone();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(WRITER_GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut r)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 1..=6 {
        let id: String = r.xadd(&stream, "*", &[("n", n)]).await.unwrap();
        ids.push(id);
    }
    let older = read_new(&r, &stream, 3).await; // entries 1-3
    let newer = read_new(&r, &stream, 2).await; // entries 4-5; entry 6 is never delivered
    assert_eq!([older.clone(), newer.clone()].concat(), ids[..5]);
    let ack = seckill::gate::stream::StreamAck::default();
    let left = || ids_in(&app.redis, &stream);

    // The newer batch commits first: the older one is pending, so nothing may go.
    assert_eq!(ack.run(&mut r, &stream, &refs(&newer)).await.unwrap(), 2);
    assert_eq!(left().await, ids, "trimmed past a pending entry");
    // The older batch: nothing is pending any more; what was delivered goes, entry 6 stays.
    assert_eq!(ack.run(&mut r, &stream, &refs(&older)).await.unwrap(), 3);
    assert_eq!(left().await, ids[5..]);
    // An ack of nothing (after a dead letter) trims, and acks nothing.
    let last = read_new(&r, &stream, 10).await;
    assert_eq!(last, ids[5..]);
    let _: i64 = r.xack(&stream, WRITER_GROUP, &last).await.unwrap();
    assert_eq!(left().await, ids[5..]);
    assert_eq!(ack.run(&mut r, &stream, &[]).await.unwrap(), 0);
    assert!(left().await.is_empty());
}

/// Up to `count` entries never delivered before, for the consumer `test-consumer`.
async fn read_new(r: &RedisConn, stream: &str, count: usize) -> Vec<String> {
    let reply: StreamsRead = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(WRITER_GROUP)
        .arg("test-consumer")
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(&mut r.clone())
        .await
        .unwrap();
    reply
        .0
        .into_iter()
        .flat_map(|(_, e)| e)
        .map(|e| e.id)
        .collect()
}

async fn ids_in(r: &RedisConn, stream: &str) -> Vec<String> {
    let reply: StreamRangeReply = r.clone().xrange_all(stream).await.unwrap();
    reply.ids.into_iter().map(|e| e.id).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
