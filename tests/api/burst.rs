//! The flash sale itself: many buyers at once, each retrying, against a small stock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::helpers::{spawn_app, TestApp};

const BUYERS: u64 = 300;
const STOCK: i64 = 100;

#[derive(Debug)]
struct Answer {
    key: &'static str,
    status: u16,
    replayed: bool,
    code: Option<String>,
    order_id: Option<String>,
}

/// One purchase attempt, retried with the same key on `503` like a well-behaved client (the
/// retry is answered from the idempotency record if the first try was accepted after all).
async fn attempt(app: Arc<TestApp>, activity: u64, user: u64, key: &'static str) -> Answer {
    let mut resp = app.purchase(activity, user, key, None).await;
    for _ in 0..5 {
        if resp.status() != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        resp = app.purchase(activity, user, key, None).await;
    }
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let body: Value = resp.json().await.unwrap();
    Answer {
        key,
        status,
        replayed,
        code: body["code"].as_str().map(str::to_owned),
        order_id: body["order_id"].as_str().map(str::to_owned),
    }
}

/// 300 buyers for 100 units; each sends its request three times at once with one key and
/// once with a second key. Exactly 100 orders, one per buyer at most, replays answered with
/// the same order, and MySQL ends with exactly those rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_buyers_with_retries_sells_exactly_the_stock() {
    let app = Arc::new(spawn_app().await);
    let activity = app.create_activity(STOCK, 1).await;
    // Bounds the sockets in flight (4 per buyer) without serializing the buyers.
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for user in 1..=BUYERS {
        let (app, gate) = (app.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let (a, b, c, d) = tokio::join!(
                attempt(app.clone(), activity, user, "first-key"),
                attempt(app.clone(), activity, user, "first-key"),
                attempt(app.clone(), activity, user, "first-key"),
                attempt(app.clone(), activity, user, "second-key"),
            );
            (user, vec![a, b, c, d])
        }));
    }
    let mut orders_by_user: HashMap<u64, String> = HashMap::new();
    let mut fresh_201 = 0;
    for task in tasks {
        let (user, answers) = task.await.unwrap();
        let mut user_orders = HashSet::new();
        let mut fresh_for_user = 0;
        let mut key_of_fresh = None;
        for a in &answers {
            match (a.status, a.code.as_deref()) {
                (201, _) => {
                    user_orders.insert(a.order_id.clone().unwrap());
                    if !a.replayed {
                        fresh_for_user += 1;
                        key_of_fresh = Some(a.key);
                    }
                }
                (409, Some("already_purchased")) => {
                    user_orders.insert(
                        a.order_id
                            .clone()
                            .expect("already_purchased names the order"),
                    );
                }
                (409, Some("sold_out")) => {}
                other => panic!("user {user}: unexpected answer {other:?}: {a:?}"),
            }
        }
        assert!(
            fresh_for_user <= 1,
            "user {user} got {fresh_for_user} orders: {answers:?}"
        );
        assert!(
            user_orders.len() <= 1,
            "user {user} saw several orders: {answers:?}"
        );
        if let Some(key) = key_of_fresh {
            // Every other attempt with the accepting key is a replay of the same order.
            for a in answers.iter().filter(|a| a.key == key) {
                assert_eq!(a.status, 201, "user {user}: {answers:?}");
            }
            fresh_201 += 1;
            orders_by_user.insert(user, user_orders.into_iter().next().unwrap());
        } else {
            assert!(
                user_orders.is_empty(),
                "user {user}: order without a 201: {answers:?}"
            );
        }
    }
    assert_eq!(fresh_201, STOCK as usize, "exactly the stock is sold");
    let distinct: HashSet<&String> = orders_by_user.values().collect();
    assert_eq!(distinct.len(), STOCK as usize);

    let stats = app.wait_drained(activity).await;
    assert_eq!(stats["remaining_stock"], 0);
    let rows = app.orders(activity).await;
    assert_eq!(rows.len(), STOCK as usize);
    let users: HashSet<u64> = rows.iter().map(|r| r.user_id).collect();
    assert_eq!(users.len(), rows.len(), "no user twice");
    for row in &rows {
        assert_eq!(orders_by_user.get(&row.user_id), Some(&row.id.to_string()));
        assert_eq!(row.status, "created");
    }
    assert_eq!(app.activity_row(activity).await.sold, STOCK);
}
