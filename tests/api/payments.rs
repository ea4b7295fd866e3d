//! After the purchase: payment token, pay, callbacks (SPEC "After the purchase"), against
//! the real Redis and MariaDB. Callbacks are signed here as the provider signs them.

use serde_json::Value;

use seckill::payment::signature;
use seckill::store::entity::{order, payment};

use seckill::domain::ActivityId;
use seckill::gate::{PaymentToken, TokenState};
use seckill::idempotency::IdempotencyKey;

use crate::helpers::{problem, spawn_app, spawn_app_with, WEBHOOK_SECRET};
use crate::payment_helpers::sweeper;

#[tokio::test]
async fn a_paid_order_goes_token_pay_callback_paid_and_each_step_replays() {
    let app = spawn_app().await;
    let activity = app.create_priced(5, 1999, 900).await;
    let order_id = app.buy_stored(activity, 1).await;

    let view = app.get_order(order_id, 1).await;
    assert_eq!(view["status"], "created");
    assert_eq!(view["amount_cents"], 1999);
    let created =
        chrono::DateTime::parse_from_rfc3339(view["created_at"].as_str().unwrap()).unwrap();
    let deadline =
        chrono::DateTime::parse_from_rfc3339(view["payment_deadline"].as_str().unwrap()).unwrap();
    assert_eq!((deadline - created).num_seconds(), 900);
    assert!(view.get("paid_at").is_none(), "{view}");

    // The token: 201, then the same live token with 200.
    let first = app.order_action(order_id, 1, "payment-token", &[]).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app.order_action(order_id, 1, "payment-token", &[]).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["payment_token"], again["payment_token"]);
    let t = first["payment_token"].as_str().unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(first["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires <= deadline, "a token never outlives the deadline");

    // Pay: 202 processing; the same key again: the same answer, replayed.
    let paid = app.pay(order_id, 1, t, "k1").await;
    assert_eq!(paid.status(), 202);
    assert!(paid.headers().get("idempotent-replayed").is_none());
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["status"], "processing");
    assert_eq!(paid["amount_cents"], 1999);
    assert_eq!(paid["order_id"], order_id.to_string());
    let replay = app.pay(order_id, 1, t, "k1").await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay, paid);
    let payment_id: u64 = paid["payment_id"].as_str().unwrap().parse().unwrap();

    // The callback: applied once, then answered 200 as a duplicate.
    let cb = app.callback(payment_id, "txn_1", "succeeded", 1999).await;
    assert_eq!(cb.status(), 200);
    let cb: Value = cb.json().await.unwrap();
    assert_eq!(
        (cb["status"].as_str(), cb["outcome"].as_str()),
        (Some("succeeded"), Some("paid"))
    );
    let dup = app.callback(payment_id, "txn_1", "succeeded", 1999).await;
    assert_eq!(dup.status(), 200);
    let dup: Value = dup.json().await.unwrap();
    assert_eq!(dup["outcome"], "duplicate");
    // A `failed` after the success changes nothing.
    let late = app.callback(payment_id, "txn_1b", "failed", 1999).await;
    assert_eq!(late.status(), 200);
    assert_eq!(late.json::<Value>().await.unwrap()["outcome"], "ignored");

    let row = app.order_row(order_id).await.unwrap();
    assert_eq!(row.status, order::STATUS_PAID);
    assert!(row.paid_at.is_some());
    let payments = app.payments_of(order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, payment::STATUS_SUCCEEDED);
    assert_eq!(payments[0].provider_txn_id.as_deref(), Some("txn_1"));
    let view = app.get_order(order_id, 1).await;
    assert_eq!(view["status"], "paid");
    assert!(view["paid_at"].is_string());
    // Replayed after the payment settled: still the first answer.
    let replay = app.pay(order_id, 1, t, "k1").await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.json::<Value>().await.unwrap(), paid);

    let stats = app.admin_stats(activity).await;
    assert_eq!(
        (stats["paid"].as_u64(), stats["created"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(stats["sold"], 1);
    assert_eq!(stats["price_cents"], 1999);
}

/// An order action that must be refused: (action, order, user, headers, status, code).
type Refusal<'a> = (&'a str, u64, u64, Vec<(&'a str, String)>, u16, &'a str);

#[tokio::test]
async fn every_refusal_of_token_and_pay_answers_its_code_and_changes_nothing() {
    let app = spawn_app().await;
    let activity = app.create_priced(10, 500, 900).await;
    let a = app.buy_stored(activity, 1).await;
    let b = app.buy_stored(activity, 2).await;
    let ta = app.payment_token(a, 1).await;
    let tb = app.payment_token(b, 2).await;

    let refusals: Vec<Refusal> = vec![
        // Another user's order, or none: 404.
        ("payment-token", a, 2, vec![], 404, "order_not_found"),
        ("payment-token", 12345, 1, vec![], 404, "order_not_found"),
        (
            "pay",
            a,
            2,
            vec![
                ("Payment-Token", ta.clone()),
                ("Idempotency-Key", "x".into()),
            ],
            404,
            "order_not_found",
        ),
        // Headers.
        (
            "pay",
            a,
            1,
            vec![("Idempotency-Key", "x".into())],
            400,
            "payment_token_missing",
        ),
        (
            "pay",
            a,
            1,
            vec![("Payment-Token", ta.clone())],
            400,
            "idempotency_key_missing",
        ),
        (
            "pay",
            a,
            1,
            vec![
                ("Payment-Token", ta.clone()),
                ("Idempotency-Key", "bad key!".into()),
            ],
            400,
            "idempotency_key_invalid",
        ),
        (
            "pay",
            a,
            1,
            vec![
                ("Payment-Token", ta.clone()),
                ("Payment-Token", ta.clone()),
                ("Idempotency-Key", "x".into()),
            ],
            400,
            "invalid_request",
        ),
        // Unknown token, a malformed one, another order's token.
        (
            "pay",
            a,
            1,
            vec![
                ("Payment-Token", format!("pt_{}", "0".repeat(32))),
                ("Idempotency-Key", "x".into()),
            ],
            409,
            "payment_token_invalid",
        ),
        (
            "pay",
            a,
            1,
            vec![
                ("Payment-Token", "garbage".into()),
                ("Idempotency-Key", "x".into()),
            ],
            409,
            "payment_token_invalid",
        ),
        (
            "pay",
            a,
            1,
            vec![
                ("Payment-Token", tb.clone()),
                ("Idempotency-Key", "x".into()),
            ],
            409,
            "payment_token_invalid",
        ),
    ];
    for (action, order, user, headers, status, code) in refusals {
        let before = app.state().await;
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let resp = app.order_action(order, user, action, &headers).await;
        let (got, got_code, body) = problem(resp).await;
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{action} {headers:?}: {body}"
        );
        assert_eq!(
            app.state().await,
            before,
            "{action} {headers:?} changed something"
        );
    }

    // Another order's token stayed usable for its own order.
    assert_eq!(app.pay(b, 2, &tb, "kb").await.status(), 202);
    // The consumed token, with another key: used, naming the payment.
    let pb: Value = app.pay(b, 2, &tb, "kb").await.json().await.unwrap();
    let before = app.state().await;
    let (status, code, body) = problem(app.pay(b, 2, &tb, "other").await).await;
    assert_eq!((status, code.as_str()), (409, "payment_token_used"));
    assert_eq!(body["payment_id"], pb["payment_id"]);
    // A payment in progress: no new token.
    let (status, code, _) = problem(app.order_action(b, 2, "payment-token", &[]).await).await;
    assert_eq!((status, code.as_str()), (409, "payment_in_progress"));
    // …and no cancel.
    let (status, code, _) = problem(app.cancel(b, 2).await).await;
    assert_eq!((status, code.as_str()), (409, "payment_in_progress"));
    assert_eq!(app.state().await, before);

    // Paid: token and pay answer order_paid (a token taken before stays refused).
    let pid: u64 = pb["payment_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        app.callback(pid, "t-b", "succeeded", 500).await.status(),
        200
    );
    let before = app.state().await;
    let (status, code, _) = problem(app.order_action(b, 2, "payment-token", &[]).await).await;
    assert_eq!((status, code.as_str()), (409, "order_paid"));
    let (status, code, _) = problem(app.cancel(b, 2).await).await;
    assert_eq!((status, code.as_str()), (409, "order_paid"));
    assert_eq!(app.state().await, before);

    // Cancelled: token and pay answer order_closed; the live token died with the order.
    assert_eq!(app.cancel(a, 1).await.status(), 200);
    let before = app.state().await;
    let (status, code, _) = problem(app.order_action(a, 1, "payment-token", &[]).await).await;
    assert_eq!((status, code.as_str()), (409, "order_closed"));
    let (status, code, _) = problem(app.pay(a, 1, &ta, "ka").await).await;
    assert_eq!(
        (status, code.as_str()),
        (409, "payment_token_invalid"),
        "the token was dropped"
    );
    assert_eq!(app.state().await, before);
}

#[tokio::test]
async fn a_pending_order_is_not_ready_and_its_pay_has_no_valid_token() {
    let app = spawn_app_with(|s| s.writer.enabled = false).await;
    let activity = app.create_priced(5, 100, 900).await;
    let resp = app.purchase(activity, 1, "k", None).await;
    let order: u64 = resp.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The pending view shows the amount and deadline the writer will store.
    let view = app.get_order(order, 1).await;
    assert_eq!(view["status"], "pending");
    assert_eq!(view["amount_cents"], 100);
    let created =
        chrono::DateTime::parse_from_rfc3339(view["created_at"].as_str().unwrap()).unwrap();
    let deadline =
        chrono::DateTime::parse_from_rfc3339(view["payment_deadline"].as_str().unwrap()).unwrap();
    assert_eq!((deadline - created).num_seconds(), 900);
    let before = app.state().await;
    for action in ["payment-token", "cancel"] {
        let resp = app.order_action(order, 1, action, &[]).await;
        assert_eq!(resp.headers()["retry-after"], "1");
        let (status, code, _) = problem(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "order_not_ready"),
            "{action}"
        );
    }
    let (status, code, _) = problem(
        app.pay(order, 1, &format!("pt_{}", "a".repeat(32)), "k")
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "payment_token_invalid"));
    // Another user: 404, never 409.
    let (status, code, _) = problem(app.order_action(order, 2, "cancel", &[]).await).await;
    assert_eq!((status, code.as_str()), (404, "order_not_found"));
    assert_eq!(app.state().await, before);
}

#[tokio::test]
async fn every_refused_callback_answers_its_code_and_changes_nothing() {
    let app = spawn_app().await;
    let activity = app.create_priced(5, 700, 900).await;
    let order = app.buy_stored(activity, 1).await;
    let pid = app.start_payment(order, 1).await;
    let good = serde_json::json!({
        "payment_id": pid.to_string(), "provider_txn_id": "txn", "status": "succeeded", "amount_cents": 700
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let cases: Vec<(String, Option<String>, u16, &str)> = vec![
        (good.clone(), None, 401, "invalid_signature"),
        (
            good.clone(),
            Some("t=1,v1=zz".into()),
            401,
            "invalid_signature",
        ),
        (
            good.clone(),
            Some(signature::sign("wrong secret", now, good.as_bytes())),
            401,
            "invalid_signature",
        ),
        (
            good.clone(),
            Some(signature::sign(WEBHOOK_SECRET, now - 400, good.as_bytes())),
            401,
            "invalid_signature",
        ),
        (
            good.clone(),
            Some(signature::sign(WEBHOOK_SECRET, now + 400, good.as_bytes())),
            401,
            "invalid_signature",
        ),
        // A valid signature of another body.
        (
            good.replace("700", "701"),
            Some(signature::sign(WEBHOOK_SECRET, now, good.as_bytes())),
            401,
            "invalid_signature",
        ),
    ];
    let signed = |body: String| {
        let sig = signature::sign(WEBHOOK_SECRET, now, body.as_bytes());
        (body, Some(sig))
    };
    let mut cases = cases;
    for (body, status, code) in [
        (
            good.replace(&pid.to_string(), "1"),
            404,
            "payment_not_found",
        ),
        (good.replace("700", "701"), 422, "amount_mismatch"),
        ("{\"payment_id\":".to_owned(), 400, "invalid_request"),
        (
            good.replace("succeeded", "refunded"),
            400,
            "invalid_request",
        ),
        (
            good.replace("\"txn\"", "\"txn\",\"extra\":1"),
            400,
            "invalid_request",
        ),
    ] {
        let (body, sig) = signed(body);
        cases.push((body, sig, status, code));
    }
    let mismatches_before = metric(
        &app.metrics().await,
        "seckill_payment_callbacks_total{outcome=\"amount_mismatch\"}",
    );
    for (body, sig, status, code) in cases {
        let before = app.state().await;
        let (got, got_code, detail) = problem(app.callback_raw(&body, sig.clone()).await).await;
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{body} {sig:?}: {detail}"
        );
        assert_eq!(app.state().await, before, "{body} changed something");
    }
    let mismatches = metric(
        &app.metrics().await,
        "seckill_payment_callbacks_total{outcome=\"amount_mismatch\"}",
    );
    assert!(
        mismatches > mismatches_before,
        "amount mismatches are counted"
    );
    // The real one still applies.
    assert_eq!(
        app.callback(pid, "txn", "succeeded", 700).await.status(),
        200
    );
    assert_eq!(app.order_row(order).await.unwrap().status, "paid");
}

/// The value of one sample of the Prometheus page (0 when absent).
fn metric(page: &str, sample: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn after_a_failed_payment_the_buyer_pays_again_and_a_late_success_of_the_first_is_refund_required(
) {
    let app = spawn_app().await;
    let activity = app.create_priced(5, 300, 900).await;
    let order = app.buy_stored(activity, 1).await;
    let first = app.start_payment(order, 1).await;
    let resp = app.callback(first, "f-1", "failed", 300).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["outcome"], "failed");
    // Failed: a new token (the first was consumed) and a new payment.
    let t2 = app.payment_token(order, 1).await;
    let resp = app.pay(order, 1, &t2, "second").await;
    assert_eq!(resp.status(), 202);
    let second: u64 = resp.json::<Value>().await.unwrap()["payment_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(
        app.callback(second, "s-2", "succeeded", 300).await.status(),
        200
    );
    assert_eq!(app.order_row(order).await.unwrap().status, "paid");
    // The provider changes its mind about the first: money moved for a paid order.
    let resp = app.callback(first, "s-1", "succeeded", 300).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["outcome"],
        "refund_required"
    );
    let payments = app.payments_of(order).await;
    let statuses: Vec<&str> = payments.iter().map(|p| p.status.as_str()).collect();
    assert_eq!(statuses, ["refund_required", "succeeded"]);
    assert_eq!(app.admin_stats(activity).await["refund_required"], 1);
    assert_eq!(app.order_row(order).await.unwrap().status, "paid");
}

#[tokio::test]
async fn a_token_consumed_by_a_request_that_lost_its_order_to_a_cancel_names_no_payment() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(2, 100, 900).await;
    let order = app.buy_stored(activity, 1).await;
    let token = app.payment_token(order, 1).await;
    // A pay request consumes the token for its payment, then loses the order's row lock
    // to a cancel: its payment is never recorded.
    let (gate, _) = sweeper(&app);
    let lost = 4_242_424_242_u64;
    let state = gate
        .consume_payment_token(
            ActivityId::new(activity),
            order,
            &PaymentToken::parse(&token).unwrap(),
            lost,
            &IdempotencyKey::from_header(Some(b"lost-request")).unwrap(),
            600,
        )
        .await
        .unwrap();
    assert_eq!(state, TokenState::Live, "consumed by this call");
    assert_eq!(app.cancel(order, 1).await.status(), 200);
    assert!(app.payments_of(order).await.is_empty());
    // Another request with the token: the order is closed, and no payment is named that
    // does not exist.
    let (status, code, body) = problem(app.pay(order, 1, &token, "other-key").await).await;
    assert_eq!((status, code.as_str()), (409, "order_closed"), "{body}");
    assert!(body.get("payment_id").is_none(), "{body}");
    // The request that consumed it, retried: the same answer.
    let (status, code, _) = problem(app.pay(order, 1, &token, "lost-request").await).await;
    assert_eq!((status, code.as_str()), (409, "order_closed"));
    assert!(app.payments_of(order).await.is_empty());
}

#[tokio::test]
async fn a_token_is_its_orders_own_even_after_it_was_used() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(3, 100, 900).await;
    let first = app.buy_stored(activity, 1).await;
    let second = app.buy_stored(activity, 2).await;
    let token = app.payment_token(first, 1).await;
    let resp = app.pay(first, 1, &token, "same-key").await;
    assert_eq!(resp.status(), 202);
    // The used token presented for another order (its owner's key or any other): invalid
    // there, naming no payment of the first order, recording nothing.
    let before = app.state().await;
    for key in ["same-key", "other-key"] {
        let (status, code, body) = problem(app.pay(second, 2, &token, key).await).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "payment_token_invalid"),
            "{key}: {body}"
        );
        assert!(body.get("payment_id").is_none(), "{body}");
    }
    assert_eq!(app.state().await, before);
    assert!(app.payments_of(second).await.is_empty());
}

#[tokio::test]
async fn copies_of_one_pay_request_sent_at_once_all_get_its_202() {
    let app = spawn_app_with(|s| s.sweeper.enabled = false).await;
    let activity = app.create_priced(10, 100, 900).await;
    for user in 1..=10 {
        let order = app.buy_stored(activity, user).await;
        let token = app.payment_token(order, user).await;
        let answers =
            futures_util::future::join_all((0..6).map(|_| app.pay(order, user, &token, "dbl")))
                .await;
        let mut ids = std::collections::BTreeSet::new();
        for resp in answers {
            let status = resp.status();
            let body: Value = resp.json().await.unwrap();
            assert_eq!(status, 202, "user {user}: {body}");
            ids.insert(body["payment_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids.len(), 1, "one payment: {ids:?}");
        assert_eq!(app.payments_of(order).await.len(), 1);
    }
}
