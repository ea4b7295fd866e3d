//! Races and faults of the order lifecycle: pay against cancel, many cancels, two sweepers,
//! a sweeper paused past its lease (fencing), a crash between the MySQL transition and the
//! Redis return. Checked against the rows in MariaDB and the stock in Redis: never paid and
//! cancelled, never units returned twice or for a paid order (I6, I7).

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use seckill::domain::{ActivityId, UserId};
use seckill::gate::{Gate, KeySpace, ReturnOutcome};
use seckill::lifecycle::{self, Sweeper, TransitionError};
use seckill::payment::ProviderClient;

use seckill::provider::{ProviderArgs, RunningProvider};

use crate::helpers::{spawn_app_with, TestApp, WEBHOOK_SECRET};

/// A gate and a sweeper of their own over the test app's Redis and database (the app's own
/// sweeper is off in these tests, so each round runs when the test says).
fn sweeper(app: &TestApp) -> (Gate, Sweeper) {
    sweeper_with(app, &app.settings.payment.provider_url)
}

/// The same, asking the provider at `provider_url`.
fn sweeper_with(app: &TestApp, provider_url: &str) -> (Gate, Sweeper) {
    let mut s = app.settings.clone();
    s.payment.provider_url = provider_url.to_owned();
    let s = &s;
    let gate = Gate::new(
        app.redis.clone(),
        KeySpace::new(app.prefix.clone()),
        s.idempotency.ttl_secs,
        s.writer.max_backlog,
    );
    let provider = ProviderClient::new(s, app.url("/api/v1/payments/callback")).unwrap();
    let sweeper = Sweeper::new(
        gate.clone(),
        app.db.clone(),
        provider,
        s.sweeper.clone(),
        &s.payment,
    );
    (gate, sweeper)
}

/// I7 at rest: Redis remaining + units of the orders that hold theirs = total, and MySQL's
/// `sold` = those units.
async fn assert_units_conserved(app: &TestApp, activity: u64) {
    let orders = app.orders(activity).await;
    let held: i64 = orders
        .iter()
        .filter(|o| o.status == "created" || o.status == "paid")
        .map(|o| i64::from(o.quantity))
        .sum();
    let row = app.activity_row(activity).await;
    assert_eq!(row.sold, held, "MySQL sold");
    assert_eq!(
        app.remaining(activity).await + held,
        row.total_stock,
        "Redis remaining + held units"
    );
}

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
            // take tens of milliseconds each on a debug build).
            let head_start = Duration::from_millis((user / 2 % 8) * 25);
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
async fn two_sweepers_at_once_expire_each_order_once_and_return_each_unit_once() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(30, 100, 1).await;
    let mut orders = Vec::new();
    for user in 1..=30 {
        orders.push(app.buy_stored(activity, user).await);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, a) = sweeper(&app);
    let (_, b) = sweeper(&app);
    // Both act with the same (current) token, as two sweepers would if the lock failed:
    // each transition is conditional, so each order still expires once.
    let (ra, rb) = tokio::join!(a.round(1), b.round(1));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.expired + rb.expired, 30, "{ra:?} {rb:?}");
    for order in &orders {
        let row = app.order_row(*order).await.unwrap();
        assert_eq!((row.status.as_str(), row.version), ("expired", 1));
    }
    // A third round finds nothing.
    let again = a.round(1).await.unwrap();
    assert_eq!((again.expired, again.repaired), (0, 0));
    assert_eq!(app.remaining(activity).await, 30);
    assert_units_conserved(&app, activity).await;
}

#[tokio::test]
async fn only_one_sweeper_holds_the_lock_and_a_paused_one_is_fenced() {
    let app = spawn_app_with(|s| {
        s.sweeper.enabled = false;
        s.sweeper.lease_ms = 300;
    })
    .await;
    let (gate, old) = sweeper(&app);
    let (_, new) = sweeper(&app);
    let t1 = gate
        .sweeper_lock(old.owner(), 300)
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(
        gate.sweeper_lock(new.owner(), 300).await.unwrap(),
        None,
        "held by the first"
    );
    assert_eq!(
        gate.sweeper_lock(old.owner(), 300).await.unwrap(),
        Some(t1),
        "renewed"
    );

    let activity = app.create_priced(2, 100, 1).await;
    let first = app.buy_stored(activity, 1).await;
    // The first sweeper "pauses" past its lease; the second takes over with a higher token
    // and acts once (MySQL sees the new token).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t2 = gate
        .sweeper_lock(new.owner(), 300)
        .await
        .unwrap()
        .expect("lease expired");
    assert!(t2 > t1);
    let report = new.round(t2).await.unwrap();
    assert_eq!(report.expired, 1);
    app.wait_returned(first).await;
    // A second order falls due; the paused sweeper wakes up with its old token: refused.
    let second = app.buy_stored(activity, 2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = app.state().await;
    let report = old.round(t1).await.unwrap();
    assert!(report.fenced, "{report:?}");
    assert_eq!(report.expired, 0);
    assert_eq!(
        app.state().await,
        before,
        "a fenced sweeper changed something"
    );
    assert_eq!(app.order_row(second).await.unwrap().status, "created");
    // The same refusal, one transition at a time.
    let refused = lifecycle::expire(
        &app.db,
        second,
        t1,
        chrono::Duration::zero(),
        chrono::Utc::now(),
    )
    .await;
    assert!(
        matches!(refused, Err(TransitionError::Fenced(_))),
        "{refused:?}"
    );
    assert_eq!(new.round(t2).await.unwrap().expired, 1);
    assert_units_conserved(&app, activity).await;
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

#[tokio::test]
async fn the_sweeper_charges_again_only_the_payments_of_orders_still_payable() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let provider = RunningProvider::start(ProviderArgs::default(), WEBHOOK_SECRET).unwrap();
    let activity = app.create_priced(2, 100, 3).await;
    // The app's provider is down: both payments stay `processing`, never acknowledged.
    let closed = app.buy_stored(activity, 1).await;
    let open = app.buy_stored(activity, 2).await;
    app.start_payment(closed, 1).await;
    let pending = app.start_payment(open, 2).await;
    tokio::time::sleep(Duration::from_millis(5200)).await;
    // One order expires (its grace waived here); the other is in its payment's grace.
    let expired = lifecycle::expire(
        &app.db,
        closed,
        1,
        chrono::Duration::zero(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(expired.is_some());
    let (_, sweeper) = sweeper_with(&app, &provider.url());
    let report = sweeper.round(1).await.unwrap();
    assert_eq!((report.expired, report.recharged), (0, 1), "{report:?}");
    let stats = provider.stats();
    assert_eq!(stats.charges, 1);
    assert!(
        provider.charge(&pending.to_string()).is_some(),
        "the payable order's payment"
    );
}
