//! Every branch of `lua/purchase.lua`, against the real Redis, through the library's Gate.

use redis::AsyncCommands;

use seckill::domain::{ActivityId, Quantity, UserId};
use seckill::gate::{
    ActivityKeys, Gate, GateOutcome, KeySpace, PurchaseAttempt, SeedOutcome, SeedSpec,
};
use seckill::idempotency::IdempotencyKey;
use seckill::redis_conn::{RedisClient, RedisConn};

struct Fixture {
    gate: Gate,
    conn: RedisConn,
    activity: ActivityId,
    next_order: u64,
    _data: crate::test_data::TestData,
}

async fn fixture(stock: i64, limit: i64, starts_in_ms: i64, ends_in_ms: i64) -> Fixture {
    let settings = crate::helpers::test_settings();
    let data = crate::test_data::TestData::of(&settings);
    let client = RedisClient::open(&settings.redis).unwrap();
    let conn = client.shared().await.unwrap();
    let keys = KeySpace::new(settings.redis.key_prefix.clone());
    let gate = Gate::new(conn.clone(), keys.clone(), 60, 0);
    tokio::spawn(gate.sold_out_cache().run_invalidator(
        client.pubsub_clients(&settings.redis).unwrap(),
        keys.seeded_channel(),
        tokio_util::sync::CancellationToken::new(),
    ));
    let activity = ActivityId::new(42);
    let now = chrono::Utc::now().timestamp_millis();
    let seeded = gate
        .seed(&SeedSpec {
            id: activity,
            name: "gate".into(),
            total_stock: stock,
            starts_ms: now + starts_in_ms,
            ends_ms: now + ends_in_ms,
            per_user_limit: limit,
            price_cents: 0,
            payment_window_secs: 900,
            sold: 0,
        })
        .await
        .unwrap();
    assert_eq!(seeded, SeedOutcome::Seeded { remaining: stock });
    Fixture {
        gate,
        conn,
        activity,
        next_order: 1000,
        _data: data,
    }
}

impl Fixture {
    async fn buy(&mut self, user: u64, key: &str, quantity: i64) -> GateOutcome {
        self.next_order += 1;
        let key = IdempotencyKey::from_header(Some(key.as_bytes())).unwrap();
        self.gate
            .purchase(&PurchaseAttempt {
                activity: self.activity,
                user: UserId::new(user),
                quantity: Quantity::parse(quantity).unwrap(),
                key: &key,
                candidate_order_id: self.next_order,
            })
            .await
            .unwrap()
    }

    fn keys(&self) -> ActivityKeys {
        self.gate.keys().activity(self.activity)
    }

    /// The idempotency record of `user`'s key `key`.
    fn idempotency(&self, user: u64, key: &str) -> String {
        let key = IdempotencyKey::from_header(Some(key.as_bytes())).unwrap();
        self.keys().idempotency(UserId::new(user), &key)
    }

    async fn stock(&self) -> Option<i64> {
        self.conn.clone().get(self.keys().stock).await.unwrap()
    }

    async fn stream_len(&self) -> u64 {
        self.conn.clone().xlen(self.keys().stream).await.unwrap()
    }
}

#[tokio::test]
async fn accept_replay_reuse_and_already_purchased() {
    let mut f = fixture(3, 2, -1000, 60_000).await;
    let GateOutcome::Accepted { order, remaining } = f.buy(1, "k", 1).await else {
        panic!()
    };
    assert_eq!((order.order_id, order.quantity, remaining), (1001, 1, 2));
    assert_eq!(f.stream_len().await, 1);
    assert_eq!(f.buy(1, "k", 1).await, GateOutcome::Replay(order));
    assert_eq!(f.buy(1, "k", 2).await, GateOutcome::KeyReused);
    assert_eq!(
        f.buy(1, "other", 1).await,
        GateOutcome::AlreadyPurchased(order)
    );
    // Nothing but the first purchase changed the stock or the stream.
    assert_eq!((f.stock().await, f.stream_len().await), (Some(2), 1));
    // The idempotency record has the configured TTL.
    let ttl: i64 = f.conn.clone().ttl(f.idempotency(1, "k")).await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn sold_out_leaves_the_stock_as_it_was() {
    let mut f = fixture(2, 3, -1000, 60_000).await;
    assert_eq!(
        f.buy(1, "k", 3).await,
        GateOutcome::SoldOut { remaining: 2 }
    );
    assert_eq!(f.stock().await, Some(2));
    assert!(matches!(
        f.buy(2, "k", 2).await,
        GateOutcome::Accepted { remaining: 0, .. }
    ));
    assert_eq!(
        f.buy(3, "k", 1).await,
        GateOutcome::SoldOut { remaining: 0 }
    );
    // A rejection leaves no idempotency record: the retry is decided afresh.
    let exists: bool = f.conn.clone().exists(f.idempotency(3, "k")).await.unwrap();
    assert!(!exists);
    assert_eq!(f.stream_len().await, 1);
}

#[tokio::test]
async fn quantity_over_the_limit_is_refused_before_any_write() {
    let mut f = fixture(10, 2, -1000, 60_000).await;
    assert_eq!(
        f.buy(1, "k", 3).await,
        GateOutcome::QuantityOverLimit { limit: 2 }
    );
    assert_eq!((f.stock().await, f.stream_len().await), (Some(10), 0));
}

#[tokio::test]
async fn window_is_enforced_on_both_ends() {
    let mut early = fixture(10, 1, 60_000, 120_000).await;
    assert_eq!(early.buy(1, "k", 1).await, GateOutcome::NotStarted);
    let mut late = fixture(10, 1, -120_000, -1).await;
    assert_eq!(late.buy(1, "k", 1).await, GateOutcome::Ended);
    assert_eq!(late.stock().await, Some(10));
}

#[tokio::test]
async fn missing_meta_is_not_found_and_missing_stock_is_not_seeded() {
    let mut f = fixture(10, 1, -1000, 60_000).await;
    let _: () = f.conn.clone().del(f.keys().stock).await.unwrap();
    assert_eq!(f.buy(1, "k", 1).await, GateOutcome::NotSeeded);
    // Never "zero then decrement" into a negative stock.
    assert_eq!(f.stock().await, None);
    let _: () = f.conn.clone().del(f.keys().meta).await.unwrap();
    assert_eq!(f.buy(1, "k", 1).await, GateOutcome::NotFound);
    assert_eq!(f.stream_len().await, 0);
}

#[tokio::test]
async fn script_cache_flush_is_transparent() {
    let mut f = fixture(10, 1, -1000, 60_000).await;
    assert!(matches!(
        f.buy(1, "k", 1).await,
        GateOutcome::Accepted { .. }
    ));
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    assert!(matches!(
        f.buy(2, "k", 1).await,
        GateOutcome::Accepted { .. }
    ));
}

#[tokio::test]
async fn reseed_keeps_accepted_units_and_refuses_below_them() {
    let mut f = fixture(5, 1, -1000, 60_000).await;
    for user in 1..=3 {
        assert!(matches!(
            f.buy(user, "k", 1).await,
            GateOutcome::Accepted { .. }
        ));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let spec = |total| SeedSpec {
        id: f.activity,
        name: "gate".into(),
        total_stock: total,
        starts_ms: now - 1000,
        ends_ms: now + 60_000,
        per_user_limit: 1,
        price_cents: 0,
        payment_window_secs: 900,
        sold: 0,
    };
    assert_eq!(
        f.gate.seed(&spec(2)).await.unwrap(),
        SeedOutcome::BelowSold { accepted: 3 }
    );
    assert_eq!(f.stock().await, Some(2));
    assert_eq!(
        f.gate.seed(&spec(10)).await.unwrap(),
        SeedOutcome::Seeded { remaining: 7 }
    );
    assert_eq!(f.stock().await, Some(7));
}

/// After the sell-out, non-buyers are answered from the local view (no Redis), buyers still
/// go to Redis (replay, already purchased), and a re-seed drops the view.
#[tokio::test]
async fn sold_out_is_answered_locally_without_breaking_replay() {
    let mut f = fixture(1, 1, -1000, 60_000).await;
    let GateOutcome::Accepted { order, .. } = f.buy(1, "k", 1).await else {
        panic!()
    };
    assert_eq!(
        f.buy(2, "k", 1).await,
        GateOutcome::SoldOut { remaining: 0 }
    );
    let cache = f.gate.sold_out_cache();
    let (activity, one) = (f.activity, Quantity::parse(1).unwrap());
    let mut installed = false;
    for _ in 0..100 {
        if cache.decide(activity, UserId::new(3), one).is_some() {
            installed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // On a cluster the seed's invalidation travels over the cluster bus and may arrive
        // after the view was loaded, dropping it (safe: a view is only ever dropped early);
        // the next sold-out answer from Redis loads it again.
        assert_eq!(
            f.buy(2, "k", 1).await,
            GateOutcome::SoldOut { remaining: 0 }
        );
    }
    assert!(installed, "the sold-out view was never installed");
    // Remove the stock key: an answer that went to Redis would now be NotSeeded.
    let _: () = f.conn.clone().del(f.keys().stock).await.unwrap();
    assert_eq!(
        f.buy(3, "k", 1).await,
        GateOutcome::SoldOut { remaining: 0 }
    );
    assert_eq!(
        cache.decide(activity, UserId::new(1), one),
        None,
        "a buyer is never local"
    );
    assert_eq!(f.buy(1, "k", 1).await, GateOutcome::Replay(order));
    assert_eq!(
        f.buy(1, "k2", 1).await,
        GateOutcome::AlreadyPurchased(order)
    );

    // Re-seed to 2 units: the view is dropped and the next buyer is accepted.
    let now = chrono::Utc::now().timestamp_millis();
    let spec = SeedSpec {
        id: activity,
        name: "gate".into(),
        total_stock: 2,
        starts_ms: now - 1000,
        ends_ms: now + 60_000,
        per_user_limit: 1,
        price_cents: 0,
        payment_window_secs: 900,
        sold: 0,
    };
    let _: () = f.conn.clone().set(f.keys().stock, 0).await.unwrap();
    assert_eq!(
        f.gate.seed(&spec).await.unwrap(),
        SeedOutcome::Seeded { remaining: 1 }
    );
    let mut outcome = f.buy(4, "k", 1).await;
    for _ in 0..50 {
        if matches!(outcome, GateOutcome::Accepted { .. }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        outcome = f.buy(4, "k", 1).await;
    }
    assert!(
        matches!(outcome, GateOutcome::Accepted { .. }),
        "{outcome:?}"
    );
}

/// Purchases sent together are decided by few script calls (src/gate/purchase.rs): the first
/// goes alone, the others queue behind it and go in one call. Each is decided exactly as if
/// it came alone, in the order sent.
#[tokio::test]
async fn a_batch_decides_each_purchase_as_if_it_came_alone() {
    let f = fixture(5, 2, -1000, 60_000).await;
    let attempts: Vec<(u64, &str, i64)> = vec![
        (1, "k", 1),
        (2, "k", 1),
        (1, "k", 1),  // a replay of the first
        (1, "k2", 1), // the same buyer, another key
        (2, "k", 2),  // the same key, another payload
        (3, "k", 3),  // above the limit
        (4, "k", 2),
        (5, "k", 1),
        (6, "k", 1), // one unit left, not enough...
        (7, "k", 1), // ...and now none
        (4, "k", 2), // a replay after the sell-out
    ];
    let outcomes = concurrently(&f, &attempts).await;
    let order = |i: usize| match &outcomes[i] {
        Ok(GateOutcome::Accepted { order, .. }) => *order,
        other => panic!("attempt {i}: {other:?}"),
    };
    let expected = [
        Some(GateOutcome::Accepted {
            order: order(0),
            remaining: 4,
        }),
        Some(GateOutcome::Accepted {
            order: order(1),
            remaining: 3,
        }),
        Some(GateOutcome::Replay(order(0))),
        Some(GateOutcome::AlreadyPurchased(order(0))),
        Some(GateOutcome::KeyReused),
        Some(GateOutcome::QuantityOverLimit { limit: 2 }),
        Some(GateOutcome::Accepted {
            order: order(6),
            remaining: 1,
        }),
        Some(GateOutcome::Accepted {
            order: order(7),
            remaining: 0,
        }),
        Some(GateOutcome::SoldOut { remaining: 0 }),
        Some(GateOutcome::SoldOut { remaining: 0 }),
        Some(GateOutcome::Replay(order(6))),
    ];
    for (i, (got, want)) in outcomes.iter().zip(expected).enumerate() {
        assert_eq!(
            got.as_ref().ok(),
            want.as_ref(),
            "attempt {i}: {:?}",
            attempts[i]
        );
    }
    assert_eq!((f.stock().await, f.stream_len().await), (Some(0), 4));
    // The buyers hash (written once, at the end of the call) holds each accept's record.
    let buyers: std::collections::HashMap<u64, String> =
        f.conn.clone().hgetall(f.keys().buyers).await.unwrap();
    let mut who: Vec<u64> = buyers.keys().copied().collect();
    who.sort_unstable();
    assert_eq!(who, [1, 2, 4, 5]);
    let record = &buyers[&4];
    assert!(
        record.starts_with(&format!("{}:2:", order(6).order_id)),
        "{record}"
    );
    // Candidate order ids were given in order: each accept kept its own.
    assert_eq!(
        [0, 1, 6, 7].map(|i| order(i).order_id),
        [1001, 1002, 1007, 1008]
    );
}

/// The buyers hash is written once, at the end of a call: a buyer's second key in the same
/// call must still find the first order (the script's own note of this call's accepts).
#[tokio::test]
async fn a_buyer_twice_in_one_call_gets_one_order() {
    let f = fixture(10, 1, -1000, 60_000).await;
    // The first attempt goes alone (nothing is in flight); the others queue behind it and
    // go together in the next call.
    let attempts: Vec<(u64, &str, i64)> = vec![(9, "w", 1), (1, "a", 1), (1, "b", 1), (2, "a", 1)];
    let outcomes = concurrently(&f, &attempts).await;
    let Ok(GateOutcome::Accepted { order: first, .. }) = &outcomes[1] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(
        outcomes[2].as_ref().ok(),
        Some(&GateOutcome::AlreadyPurchased(*first))
    );
    assert!(matches!(
        outcomes[3],
        Ok(GateOutcome::Accepted { remaining: 7, .. })
    ));
    assert_eq!((f.stock().await, f.stream_len().await), (Some(7), 3));
}

/// One purchase's failure in the script is its own: the others of its call are decided.
#[tokio::test]
async fn a_failing_purchase_does_not_fail_its_batch() {
    let f = fixture(100, 1, -1000, 60_000).await;
    // User 5 is a buyer (so the script reads the key's record) whose idempotency record is
    // a hash: reading it as a string fails.
    let _: () = f
        .conn
        .clone()
        .hset(f.keys().buyers, 5, "999:1:1700000000000")
        .await
        .unwrap();
    let _: () = f
        .conn
        .clone()
        .hset(f.idempotency(5, "k"), "x", "y")
        .await
        .unwrap();
    let attempts: Vec<(u64, &str, i64)> = (1..=10).map(|u| (u, "k", 1)).collect();
    let outcomes = concurrently(&f, &attempts).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        let user = attempts[i].0;
        if user == 5 {
            let e = outcome
                .as_ref()
                .expect_err("the broken record fails its purchase");
            assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        } else {
            assert!(
                matches!(outcome, Ok(GateOutcome::Accepted { .. })),
                "user {user}: {outcome:?}"
            );
        }
    }
    assert_eq!((f.stock().await, f.stream_len().await), (Some(91), 9));
}

/// A purchase whose last step fails leaves nothing behind. Here the append to the stream
/// fails (its key is not a stream): the purchase is an error, and nothing of it remains —
/// no idempotency record, no buyer, no unit taken — so a retry with the same key is decided
/// afresh once the stream is back, not replayed as an order that was never appended. (A
/// script that wrote the record before the append, to save a command, would have to take it
/// back here: one that was measured did not save Redis CPU, and was dropped.)
#[tokio::test]
async fn a_purchase_failing_at_its_append_leaves_nothing() {
    let mut f = fixture(10, 1, -1000, 60_000).await;
    assert!(matches!(
        f.buy(1, "a", 1).await,
        GateOutcome::Accepted { .. }
    ));
    let stream = f.keys().stream;
    let mut conn = f.conn.clone();
    let _: () = conn.del(&stream).await.unwrap();
    let _: () = conn.set(&stream, "not a stream").await.unwrap();
    let key = IdempotencyKey::from_header(Some(b"b")).unwrap();
    let failed = f
        .gate
        .purchase(&PurchaseAttempt {
            activity: f.activity,
            user: UserId::new(2),
            quantity: Quantity::parse(1).unwrap(),
            key: &key,
            candidate_order_id: 5000,
        })
        .await
        .expect_err("the append fails");
    assert!(failed.to_string().contains("WRONGTYPE"), "{failed}");
    let exists: bool = conn.exists(f.idempotency(2, "b")).await.unwrap();
    assert!(!exists, "the failed purchase left its idempotency record");
    let buyer: Option<String> = conn.hget(f.keys().buyers, 2).await.unwrap();
    assert_eq!((buyer, f.stock().await), (None, Some(9)));

    let _: () = conn.del(&stream).await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(seckill::gate::WRITER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    match f.buy(2, "b", 1).await {
        GateOutcome::Accepted { order, .. } => assert_ne!(order.order_id, 5000),
        other => panic!("the retry was not decided afresh: {other:?}"),
    }
    assert_eq!((f.stock().await, f.stream_len().await), (Some(8), 1));
}

/// Sends `attempts` (user, key, quantity) together; candidate order ids 1001, 1002, … in
/// order. Each future reaches the gate's queue in the order given (join_all polls them in
/// order, and each queues at its first poll).
async fn concurrently(
    f: &Fixture,
    attempts: &[(u64, &str, i64)],
) -> Vec<Result<GateOutcome, redis::RedisError>> {
    let keys: Vec<IdempotencyKey> = attempts
        .iter()
        .map(|(_, k, _)| IdempotencyKey::from_header(Some(k.as_bytes())).unwrap())
        .collect();
    let purchases: Vec<PurchaseAttempt> = attempts
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, ((user, _, quantity), key))| PurchaseAttempt {
            activity: f.activity,
            user: UserId::new(*user),
            quantity: Quantity::parse(*quantity).unwrap(),
            key,
            candidate_order_id: 1001 + i as u64,
        })
        .collect();
    futures_util::future::join_all(purchases.iter().map(|p| f.gate.purchase(p))).await
}

/// A purchase whose stream entry cannot be written changes nothing: the entry is the first
/// write of an accept (Redis does not undo a script's writes), so the stock, the buyer and
/// the idempotency record stay as they were.
#[tokio::test]
async fn an_accept_that_cannot_write_its_stream_entry_writes_nothing() {
    let mut f = fixture(5, 1, -1000, 60_000).await;
    // The stream replaced by a string (no backlog bound here: the script does not read it).
    let stream = f.keys().stream;
    let _: () = f.conn.clone().set(&stream, "not a stream").await.unwrap();
    let key = IdempotencyKey::from_header(Some(b"k")).unwrap();
    let failed = f
        .gate
        .purchase(&PurchaseAttempt {
            activity: f.activity,
            user: UserId::new(1),
            quantity: Quantity::ONE,
            key: &key,
            candidate_order_id: 7,
        })
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(f.stock().await, Some(5));
    let buyer: Option<String> = f.conn.clone().hget(f.keys().buyers, 1).await.unwrap();
    let record: Option<String> = f.conn.clone().get(f.idempotency(1, "k")).await.unwrap();
    assert_eq!((buyer, record), (None, None));
    // The stream back: the same key is then decided afresh.
    let _: () = f.conn.clone().del(&stream).await.unwrap();
    assert!(matches!(
        f.buy(1, "k", 1).await,
        GateOutcome::Accepted { .. }
    ));
}
