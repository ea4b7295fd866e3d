//! Races and faults of the order lifecycle: pay against cancel, many cancels, one token
//! sent by many requests, a crash between the MySQL transition and the Redis return (the
//! sweeper's own races are in `sweeper.rs`). Checked against the rows in MariaDB and the stock in Redis: never paid and
//! cancelled, never units returned twice or for a paid order (I6, I7).

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use seckill::domain::{ActivityId, UserId};
use seckill::gate::ReturnOutcome;
use seckill::lifecycle;

use crate::helpers::spawn_app_with;
use crate::payment_helpers::{assert_units_conserved, sweeper};

#[tokio::test]
async fn twenty_concurrent_cancels_cancel_once_and_return_the_unit_once() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(3, 100, 900).await;
    let order = app.buy_stored(activity, 1).await;
    assert_eq!(app.remaining(activity).await, 2);
    let answers = join_all((0..20).map(|_| app.cancel(order, 1))).await;
    for resp in answers {
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "cancelled");
    }
    let row = app.order_row(order).await.unwrap();
    assert_eq!((row.status.as_str(), row.version), ("cancelled", 1));
    assert!(row.stock_returned_at.is_some());
    assert_eq!(app.remaining(activity).await, 3, "one unit back, once");
    assert_units_conserved(&app, activity).await;
    // The unit sells again; the buyer who cancelled keeps the slot.
    let resp = app.purchase(activity, 1, "again", None).await;
    assert_eq!(resp.status(), 409);
    for user in 2..=4 {
        assert_eq!(app.purchase(activity, user, "k", None).await.status(), 201);
    }
    assert_eq!(app.purchase(activity, 5, "k", None).await.status(), 409);
}

#[tokio::test]
async fn pay_and_cancel_fired_together_never_end_paid_and_cancelled() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let n = 16u64;
    let activity = app.create_priced(n as i64, 250, 900).await;
    let mut orders = Vec::new();
    for user in 1..=n {
        let order = app.buy_stored(activity, user).await;
        let token = app.payment_token(order, user).await;
        orders.push((user, order, token));
    }
    // Half the races give the pay request a head start, half the cancel, so that both
    // orders of arrival happen.
    let races = orders.iter().map(|(user, order, token)| {
        let app = &app;
        async move {
            let key = format!("race-{order}");
            // 0 to 175 ms: from simultaneous to one clearly ahead (sixteen pairs at once
            // take tens of milliseconds each on a debug build). Users 1 and 2 wait a whole
            // second, so that each order of arrival happens at least once even on a machine
            // so loaded that 175 ms decide nothing (CI once saw 16 cancels win).
            let head_start = Duration::from_millis(if *user <= 2 {
                1000
            } else {
                (user / 2 % 8) * 25
            });
            let (pay_first, cancel_first) = if user % 2 == 0 {
                (Duration::ZERO, head_start)
            } else {
                (head_start, Duration::ZERO)
            };
            let (pay, cancel) = tokio::join!(
                async {
                    tokio::time::sleep(pay_first).await;
                    app.pay(*order, *user, token, &key).await
                },
                async {
                    tokio::time::sleep(cancel_first).await;
                    app.cancel(*order, *user).await
                }
            );
            (
                pay.status().as_u16(),
                pay.json::<Value>().await.unwrap(),
                cancel.status().as_u16(),
            )
        }
    });
    let results = join_all(races).await;
    let mut payments = Vec::new();
    for ((user, order, _), (pay, pay_body, cancel)) in orders.iter().zip(&results) {
        match (pay, cancel) {
            // Pay first: the cancel sees the payment in progress.
            (202, 409) => payments.push((
                *order,
                pay_body["payment_id"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            )),
            // Cancel first: the token died with the order, or the order is closed.
            (409, 200) => assert!(
                ["payment_token_invalid", "order_closed"]
                    .contains(&pay_body["code"].as_str().unwrap()),
                "{pay_body}"
            ),
            other => panic!("user {user}: pay/cancel answered {other:?}: {pay_body}"),
        }
    }
    // Every started payment succeeds, twice over (duplicate callbacks).
    for (_, pid) in &payments {
        for _ in 0..2 {
            assert_eq!(
                app.callback(*pid, &format!("txn-{pid}"), "succeeded", 250)
                    .await
                    .status(),
                200
            );
        }
    }
    let mut paid = 0;
    for (_, order, _) in &orders {
        let row = app.order_row(*order).await.unwrap();
        let ps = app.payments_of(*order).await;
        let succeeded = ps.iter().filter(|p| p.status == "succeeded").count();
        match row.status.as_str() {
            "paid" => {
                paid += 1;
                assert_eq!(succeeded, 1, "order {order}");
                assert!(row.stock_returned_at.is_none());
            }
            "cancelled" => {
                assert_eq!(succeeded, 0, "a cancelled order was paid: {order}");
                assert!(row.stock_returned_at.is_some());
            }
            other => panic!("order {order} is {other}"),
        }
    }
    assert_eq!(paid, payments.len());
    assert!(
        paid > 0 && paid < orders.len(),
        "both orders of arrival happened: {paid} of {} paid: {:?}",
        orders.len(),
        results
            .iter()
            .map(|(p, b, c)| (p, b["code"].clone(), c))
            .collect::<Vec<_>>()
    );
    assert_units_conserved(&app, activity).await;
    let stats = app.admin_stats(activity).await;
    assert_eq!(stats["paid"].as_u64().unwrap() as usize, paid);
    assert_eq!(
        stats["cancelled"].as_u64().unwrap() as usize,
        orders.len() - paid
    );
}

#[tokio::test]
async fn a_crash_between_the_mysql_close_and_the_redis_return_is_repaired_once() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(2, 100, 900).await;
    let order = app.buy_stored(activity, 1).await;
    // The MySQL half only, as a process killed right after the commit leaves it.
    let row = lifecycle::cancel(&app.db, order, UserId::new(1))
        .await
        .unwrap();
    assert_eq!(row.status, "cancelled");
    assert_eq!(app.remaining(activity).await, 1, "Redis not told yet");
    assert_eq!(
        app.activity_row(activity).await.sold,
        0,
        "MySQL gave the unit back"
    );
    assert!(app
        .order_row(order)
        .await
        .unwrap()
        .stock_returned_at
        .is_none());
    // The cancel, retried by the buyer, finishes the Redis half.
    assert_eq!(app.cancel(order, 1).await.status(), 200);
    assert_eq!(app.remaining(activity).await, 2);
    // And a second return of the same order (the sweeper's repair racing it) changes nothing.
    let (gate, _) = sweeper(&app);
    let again = gate
        .return_units(ActivityId::new(activity), order, UserId::new(1), 1)
        .await
        .unwrap();
    assert_eq!(again, ReturnOutcome::Already);
    assert_eq!(app.remaining(activity).await, 2);
    assert_units_conserved(&app, activity).await;

    // Without a retry: the sweeper repairs a closed order left without its return.
    let other = app.buy_stored(activity, 2).await;
    lifecycle::cancel(&app.db, other, UserId::new(2))
        .await
        .unwrap();
    assert_eq!(app.remaining(activity).await, 1);
    let (_, sweeper) = sweeper(&app);
    tokio::time::sleep(Duration::from_millis(2100)).await; // repairs wait 2 s for the request
    let report = sweeper.round(1).await.unwrap();
    assert_eq!(report.repaired, 1, "{report:?}");
    assert_eq!(app.remaining(activity).await, 2);
    assert!(app
        .order_row(other)
        .await
        .unwrap()
        .stock_returned_at
        .is_some());
    assert_eq!(sweeper.round(1).await.unwrap().repaired, 0);
    assert_eq!(app.remaining(activity).await, 2);
    assert_units_conserved(&app, activity).await;
}

#[tokio::test]
async fn one_token_sent_by_many_pay_requests_at_once_is_consumed_once() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(1, 100, 900).await;
    let order = app.buy_stored(activity, 1).await;
    let t = app.payment_token(order, 1).await;
    let keys: Vec<String> = (0..12).map(|i| format!("tab-{i}")).collect();
    let answers = join_all(keys.iter().map(|k| app.pay(order, 1, &t, k))).await;
    let mut started = Vec::new();
    let mut used = Vec::new();
    for resp in answers {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        match (status, body["code"].as_str()) {
            (202, _) => started.push(body["payment_id"].clone()),
            (409, Some("payment_token_used")) => used.push(body["payment_id"].clone()),
            other => panic!("a second use of the token answered {other:?}: {body}"),
        }
    }
    assert_eq!(started.len(), 1, "the token was consumed more than once");
    assert!(
        used.iter().all(|p| *p == started[0]),
        "each names the payment that took it"
    );
    assert_eq!(app.payments_of(order).await.len(), 1);
}

#[tokio::test]
async fn reconcile_and_rebuild_count_returned_units_and_keep_the_buyers_slot() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(5, 100, 900).await;
    let id = activity.to_string();
    let cancelled = app.buy_stored(activity, 1).await;
    let paid = app.buy_stored(activity, 2).await;
    app.buy_stored(activity, 3).await;
    assert_eq!(app.cancel(cancelled, 1).await.status(), 200);
    let pid = app.start_payment(paid, 2).await;
    assert_eq!(app.callback(pid, "t", "succeeded", 100).await.status(), 200);
    assert_units_conserved(&app, activity).await;
    let (code, out) = app.seckill(&["reconcile", "--activity", &id]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("consistent"), "{out}");

    // Redis loses the activity's state; the rebuild counts paid and created orders as
    // taken, the cancelled one as returned.
    let k = app.keys(activity);
    let _: () = redis::AsyncCommands::del(
        &mut app.redis.clone(),
        &[&k.meta, &k.stock, &k.buyers, &k.returned],
    )
    .await
    .unwrap();
    let (code, out) = app.seckill(&["recover", "--activity", &id]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(app.remaining(activity).await, 3, "5 - paid - created");
    let (code, out) = app.seckill(&["reconcile", "--activity", &id]);
    assert_eq!(code, Some(0), "{out}");
    // A late second return of the cancelled order changes nothing; its buyer keeps the slot.
    let (gate, _) = sweeper(&app);
    let again = gate
        .return_units(ActivityId::new(activity), cancelled, UserId::new(1), 1)
        .await
        .unwrap();
    assert_eq!(again, ReturnOutcome::Already);
    assert_eq!(app.remaining(activity).await, 3);
    assert_eq!(app.purchase(activity, 1, "again", None).await.status(), 409);
    assert_units_conserved(&app, activity).await;
}
