//! Callbacks that reuse a provider transaction id: the same transaction reported failed and
//! then succeeded, a second success delivered again, and two payments called back at the
//! same moment with one transaction id. Every succeeded transaction is reflected exactly
//! once (I6), and what was already applied is answered `200`.

use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn a_success_with_the_transaction_id_of_an_earlier_failure_pays_the_order() {
    let app = spawn_app().await;
    let activity = app.create_priced(2, 300, 900).await;
    let order = app.buy_stored(activity, 1).await;
    let payment = app.start_payment(order, 1).await;
    // The provider reports its transaction failed, then (the charge went through after
    // all) succeeded, under the same transaction id.
    let resp = app.callback(payment, "txn-1", "failed", 300).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["outcome"], "failed");
    let resp = app.callback(payment, "txn-1", "succeeded", 300).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["outcome"], "paid");
    assert_eq!(app.order_row(order).await.unwrap().status, "paid");
    let payments = app.payments_of(order).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, "succeeded");
    // Each delivered again changes nothing.
    for status in ["failed", "succeeded"] {
        let resp = app.callback(payment, "txn-1", status, 300).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap()["outcome"], "duplicate");
    }
    assert_eq!(app.payments_of(order).await, payments);
}

#[tokio::test]
async fn a_second_success_delivered_again_is_answered_as_applied() {
    let app = spawn_app().await;
    let activity = app.create_priced(2, 300, 900).await;
    let order = app.buy_stored(activity, 1).await;
    let payment = app.start_payment(order, 1).await;
    assert_eq!(
        app.callback(payment, "txn-a", "succeeded", 300)
            .await
            .status(),
        200
    );
    // A second transaction took money for the same payment: recorded once, to refund.
    let resp = app.callback(payment, "txn-b", "succeeded", 300).await;
    assert_eq!(
        resp.json::<Value>().await.unwrap()["outcome"],
        "refund_required"
    );
    let recorded = app.payments_of(order).await;
    assert_eq!(recorded.len(), 2);
    // The provider retries that callback (it never saw the 200): applied, so 200, and
    // nothing is recorded again; a late `failed` of it changes nothing either.
    for status in ["succeeded", "failed"] {
        let resp = app.callback(payment, "txn-b", status, 300).await;
        let code = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code, 200, "{status}: {body}");
        assert_eq!(body["status"], "refund_required", "{body}");
    }
    assert_eq!(app.payments_of(order).await, recorded);
    assert_eq!(app.admin_stats(activity).await["refund_required"], 1);
}

#[tokio::test]
async fn two_payments_called_back_at_once_with_one_transaction_id_one_is_refused() {
    let app = spawn_app().await;
    let activity = app.create_priced(40, 300, 900).await;
    // Pairs of payments of different orders; both of a pair are called back at once with
    // the same transaction id (a provider bug): one is applied, the other refused with 409
    // `provider_txn_conflict`, never a 500.
    let mut payments = Vec::new();
    for user in 1..=20 {
        let order = app.buy_stored(activity, user).await;
        payments.push((order, app.start_payment(order, user).await));
    }
    let txns: Vec<String> = (0..20).map(|i| format!("shared-{}", i / 2)).collect();
    let answers = join_all(
        payments
            .iter()
            .zip(&txns)
            .map(|((_, p), txn)| app.callback(*p, txn, "succeeded", 300)),
    )
    .await;
    let mut applied = vec![0; 10];
    for (i, resp) in answers.into_iter().enumerate() {
        let status = resp.status().as_u16();
        if status == 200 {
            applied[i / 2] += 1;
        } else {
            let (status, code, body) = problem(resp).await;
            assert_eq!(
                (status, code.as_str()),
                (409, "provider_txn_conflict"),
                "{body}"
            );
        }
    }
    assert_eq!(applied, vec![1; 10], "one payment of each pair applied");
    let mut paid = 0;
    for (order, _) in &payments {
        if app.order_row(*order).await.unwrap().status == "paid" {
            paid += 1;
        }
    }
    assert_eq!(paid, 10);
}
