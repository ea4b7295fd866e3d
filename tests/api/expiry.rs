//! The payment deadline: past it an order is closed to a token, a payment and a cancel
//! alike; the sweeper expires it within 5 s, its unit is sold again, and a success that
//! arrives after that is `refund_required` (SPEC "Expiry").

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn past_its_deadline_an_order_is_closed_to_token_pay_and_cancel_until_it_expires() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(2, 100, 2).await;
    let order = app.buy_stored(activity, 1).await;
    let token = app.payment_token(order, 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The sweeper has not expired it yet (it is off here): the row still says `created`,
    // but every action of the buyer is refused as for an expired order.
    let before = app.state().await;
    for (resp, expected) in [
        (app.cancel(order, 1).await, "order_closed"),
        (
            app.order_action(order, 1, "payment-token", &[]).await,
            "order_closed",
        ),
        // The token lived until the deadline: gone, checked before the order's state.
        (
            app.pay(order, 1, &token, "late-pay").await,
            "payment_token_invalid",
        ),
    ] {
        let (status, code, body) = problem(resp).await;
        assert_eq!((status, code.as_str()), (409, expected), "{body}");
    }
    assert_eq!(
        app.state().await,
        before,
        "a refused action changed something"
    );
    assert_eq!(app.order_row(order).await.unwrap().status, "created");
}

#[tokio::test]
async fn a_success_after_expiry_leaves_the_order_expired_and_is_refund_required() {
    let app = spawn_app_with(|s| s.payment.processing_grace_secs = 1).await;
    // The writer stores a new activity's first order within about a second: a 3 s window
    // leaves time to pay before the deadline.
    let activity = app.create_priced(1, 900, 3).await;
    let order = app.buy_stored(activity, 1).await;
    let pid = app.start_payment(order, 1).await;
    // Deadline 3 s after creation, grace 1 s after the payment started: expired within 5 s.
    app.wait_status(order, "expired", Duration::from_secs(9))
        .await;
    let row = app.wait_returned(order).await;
    assert_eq!(row.status, "expired");
    assert_eq!(app.remaining(activity).await, 1, "the unit is back on sale");
    assert_eq!(app.activity_row(activity).await.sold, 0);
    let resp = app.callback(pid, "late", "succeeded", 900).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["outcome"],
        "refund_required"
    );
    assert_eq!(app.order_row(order).await.unwrap().status, "expired");
    assert_eq!(app.payments_of(order).await[0].status, "refund_required");
    // The unit is sold to someone else.
    assert_eq!(app.purchase(activity, 2, "k", None).await.status(), 201);
}

#[tokio::test]
async fn an_unpaid_order_expires_within_5_s_of_its_deadline_and_its_unit_is_sold_again() {
    let app = spawn_app().await;
    // 3 s: the sold-out check below must come before the expiry, even on a loaded machine
    // where the writer takes a second to store a new activity's first order.
    let activity = app.create_priced(1, 100, 3).await;
    let order = app.buy_stored(activity, 1).await;
    assert_eq!(
        problem(app.purchase(activity, 2, "k", None).await).await.1,
        "sold_out"
    );
    let row = app.order_row(order).await.unwrap();
    let row = {
        let expired = app
            .wait_status(order, "expired", Duration::from_secs(10))
            .await;
        let late = chrono::Utc::now().naive_utc() - row.payment_deadline;
        assert!(
            late < chrono::Duration::seconds(6),
            "expired {late} after the deadline"
        );
        expired
    };
    assert_eq!(row.version, 1);
    app.wait_returned(order).await;
    assert_eq!(app.remaining(activity).await, 1);
    assert_eq!(app.activity_row(activity).await.sold, 0);
    // Sold out before: the sold-out view was dropped, the unit sells again.
    assert_eq!(app.purchase(activity, 2, "k2", None).await.status(), 201);
    // The buyer who let it expire keeps the slot.
    assert_eq!(
        problem(app.purchase(activity, 1, "again", None).await)
            .await
            .1,
        "already_purchased"
    );
    let (status, code, _) = problem(app.cancel(order, 1).await).await;
    assert_eq!((status, code.as_str()), (409, "order_closed"));
}
