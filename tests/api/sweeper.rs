//! The sweeper: one holder of the lock at a time, fencing of a holder that lost it (also
//! when Redis lost the token counter), expiry of each due order once even when some wait in
//! their payment's grace, and charging again only what can still be paid (I6, I7).

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};

use seckill::gate::KeySpace;
use seckill::lifecycle::{self, TransitionError};
use seckill::provider::{ProviderArgs, RunningProvider};

use crate::helpers::{spawn_app_with, TestApp, WEBHOOK_SECRET};
use crate::payment_helpers::{assert_units_conserved, sweeper, sweeper_with};

/// Sets MySQL's fencing token, as if earlier holders had written with tokens up to `token`.
async fn set_mysql_fence(app: &TestApp, token: u64) {
    app.db
        .execute_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!("UPDATE seckill_fence SET token = {token} WHERE name = 'sweeper'"),
        ))
        .await
        .unwrap();
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
        .sweeper_lock(old.owner(), 300, 0)
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(
        gate.sweeper_lock(new.owner(), 300, 0).await.unwrap(),
        None,
        "held by the first"
    );
    assert_eq!(
        gate.sweeper_lock(old.owner(), 300, 0).await.unwrap(),
        Some(t1),
        "renewed"
    );

    let activity = app.create_priced(2, 100, 1).await;
    let first = app.buy_stored(activity, 1).await;
    // The first sweeper "pauses" past its lease; the second takes over with a higher token
    // and acts once (MySQL sees the new token).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t2 = gate
        .sweeper_lock(new.owner(), 300, 0)
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
        (t1, old.owner()),
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
    let (_, sweeper) = sweeper_with(&app, &provider.url());
    let expired = lifecycle::expire(
        &app.db,
        closed,
        (1, sweeper.owner()),
        chrono::Duration::zero(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(expired.is_some());
    let report = sweeper.round(1).await.unwrap();
    assert_eq!((report.expired, report.recharged), (0, 1), "{report:?}");
    let stats = provider.stats();
    assert_eq!(stats.charges, 1);
    assert!(
        provider.charge(&pending.to_string()).is_some(),
        "the payable order's payment"
    );
}

#[tokio::test]
async fn a_redis_that_lost_the_token_counter_does_not_fence_the_sweeper_for_ever() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let (_, sweeper) = sweeper(&app);
    let activity = app.create_priced(3, 100, 1).await;
    let first = app.buy_stored(activity, 1).await;
    // Earlier holders wrote up to token 50; then Redis lost the lock and its counter (a
    // restart without persistence, a failover to a replica that had not received them).
    set_mysql_fence(&app, 50).await;
    let (lock, counter) = KeySpace::new(app.prefix.clone()).sweeper_lock();
    let _: i64 = redis::cmd("DEL")
        .arg(&lock)
        .arg(&counter)
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token = sweeper.acquire().await.unwrap().expect("free lock");
    assert!(token > 50, "token {token} is not above MySQL's 50");
    assert_eq!(sweeper.round(token).await.unwrap().expired, 1);
    app.wait_returned(first).await;

    // A holder that MySQL refuses anyway (a token handed out before another holder wrote a
    // higher one) lets go of the lock, and its next round takes a token above MySQL's.
    let second = app.buy_stored(activity, 2).await;
    set_mysql_fence(&app, token + 10).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = sweeper.round(token).await.unwrap();
    assert!(report.fenced, "{report:?}");
    let next = sweeper.acquire().await.unwrap().expect("let go, so free");
    assert!(
        next > token + 10,
        "token {next} is not above MySQL's {}",
        token + 10
    );
    assert_eq!(sweeper.round(next).await.unwrap().expired, 1);
    app.wait_returned(second).await;
    assert_units_conserved(&app, activity).await;
}

#[tokio::test]
async fn orders_in_their_payment_grace_do_not_hold_back_the_expiry_of_others() {
    let app = spawn_app_with(|s| {
        s.sweeper.enabled = false;
        s.sweeper.batch_size = 2;
    })
    .await;
    let activity = app.create_priced(3, 100, 3).await;
    // The two orders due first have a payment in progress (the provider is down: they stay
    // `processing`, in their grace); the third has none.
    let graced: Vec<u64> = vec![
        app.buy_stored(activity, 1).await,
        app.buy_stored(activity, 2).await,
    ];
    for (user, order) in (1..).zip(&graced) {
        app.start_payment(*order, user).await;
    }
    let unpaid = app.buy_stored(activity, 3).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (_, sweeper) = sweeper(&app);
    let token = sweeper.acquire().await.unwrap().expect("free lock");
    let report = sweeper.round(token).await.unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(app.order_row(unpaid).await.unwrap().status, "expired");
    for order in graced {
        assert_eq!(app.order_row(order).await.unwrap().status, "created");
    }
    app.wait_returned(unpaid).await;
    assert_units_conserved(&app, activity).await;
}

#[tokio::test]
async fn one_token_handed_to_two_holders_is_accepted_from_the_first_writer_only() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let (_, first) = sweeper(&app);
    let (_, second) = sweeper(&app);
    let token = first.acquire().await.unwrap().expect("free lock");
    // Redis fails over to a replica that had received neither the lock nor the INCR: the
    // next holder is handed the same number.
    let (lock, counter) = KeySpace::new(app.prefix.clone()).sweeper_lock();
    let _: () = redis::pipe()
        .del(&lock)
        .ignore()
        .set(&counter, token - 1)
        .ignore()
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    assert_eq!(
        second.acquire().await.unwrap(),
        Some(token),
        "the same number"
    );
    assert!(!first.round(token).await.unwrap().fenced, "first to write");
    let report = second.round(token).await.unwrap();
    assert!(report.fenced, "same token, other owner: {report:?}");
    // It let go, and comes back above MySQL's token; the first holder is then refused,
    // from the new holder's first round on, with nothing to expire.
    let next = second.acquire().await.unwrap().expect("let go, so free");
    assert!(next > token, "{next} <= {token}");
    assert!(!second.round(next).await.unwrap().fenced);
    assert!(first.round(token).await.unwrap().fenced);
}
