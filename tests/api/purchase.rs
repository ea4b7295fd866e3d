//! The buy-now endpoint and the order lookups, one buyer at a time.

use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{at, problem, spawn_app, spawn_app_with, token};

#[tokio::test]
async fn accepted_purchase_is_pending_then_created_and_private() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 1).await;
    let resp = app.purchase(activity, 7, "k-1", None).await;
    assert_eq!(resp.status(), 201);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/orders/{order_id}"));
    assert_eq!(body["activity_id"], activity.to_string());
    assert_eq!(body["user_id"], "7");
    assert_eq!(body["quantity"], 1);
    assert_eq!(body["status"], "pending");

    app.wait_drained(activity).await;
    let get = |user: u64, path: String| {
        let req = app.client.get(app.url(&path)).bearer_auth(token(user));
        async move { req.send().await.unwrap() }
    };
    let mine: Value = get(7, location.clone()).await.json().await.unwrap();
    assert_eq!(mine["status"], "created");
    assert_eq!(mine["order_id"], order_id.as_str());
    assert!(mine["created_at"].is_string());
    let by_activity: Value = get(7, format!("/api/v1/activities/{activity}/purchase"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_activity["order_id"], order_id.as_str());

    // Another user's order is not found, never forbidden.
    let (status, code, _) = problem(get(8, location).await).await;
    assert_eq!((status, code.as_str()), (404, "order_not_found"));
    let (status, code, _) =
        problem(get(8, format!("/api/v1/activities/{activity}/purchase")).await).await;
    assert_eq!((status, code.as_str()), (404, "order_not_found"));

    let public: Value = app
        .client
        .get(app.url(&format!("/api/v1/activities/{activity}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["remaining_stock"], 4);
}

#[tokio::test]
async fn pending_order_is_visible_before_the_writer_commits() {
    let app = spawn_app_with(|s| s.writer.enabled = false).await;
    let activity = app.create_activity(5, 1).await;
    let body: Value = app
        .purchase(activity, 3, "k", None)
        .await
        .json()
        .await
        .unwrap();
    let order_id = body["order_id"].as_str().unwrap();
    let got: Value = app
        .client
        .get(app.url(&format!("/api/v1/orders/{order_id}")))
        .bearer_auth(token(3))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "pending");
    assert_eq!(got["quantity"], 1);
    assert!(app.orders(activity).await.is_empty());
}

#[tokio::test]
async fn replay_after_sell_out_returns_the_original_order() {
    let app = spawn_app().await;
    let activity = app.create_activity(1, 1).await;
    let first: Value = app
        .purchase(activity, 1, "key-a", None)
        .await
        .json()
        .await
        .unwrap();
    let (status, code, _) = problem(app.purchase(activity, 2, "key-b", None).await).await;
    assert_eq!((status, code.as_str()), (409, "sold_out"));

    let replay = app.purchase(activity, 1, "key-a", None).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body, first, "the replay is the first answer's body");
    // The buyer's second key is told about the order it has, not "sold out".
    let (status, code, p) = problem(app.purchase(activity, 1, "key-c", None).await).await;
    assert_eq!((status, code.as_str()), (409, "already_purchased"));
    assert_eq!(p["order_id"], first["order_id"]);
}

#[tokio::test]
async fn replay_after_the_window_ended_returns_the_original_order() {
    let app = spawn_app().await;
    let activity = app.create_activity(10, 1).await;
    let first: Value = app
        .purchase(activity, 1, "key-a", None)
        .await
        .json()
        .await
        .unwrap();
    // End the sale now (the gate reads the window from the meta hash).
    let meta = app.keys(activity).meta;
    let past = chrono::Utc::now().timestamp_millis() - 1;
    let _: () = app.redis.clone().hset(meta, "ends_ms", past).await.unwrap();

    let replay = app.purchase(activity, 1, "key-a", None).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    let (status, code, _) = problem(app.purchase(activity, 2, "key-a", None).await).await;
    assert_eq!((status, code.as_str()), (409, "activity_ended"));
}

#[tokio::test]
async fn a_sale_that_has_not_started_sells_nothing() {
    let app = spawn_app().await;
    let activity = app.create_activity_at(10, 1, at(3600), at(7200)).await;
    let before = app.state().await;
    let (status, code, _) = problem(app.purchase(activity, 1, "k", None).await).await;
    assert_eq!((status, code.as_str()), (409, "activity_not_started"));
    assert_eq!(app.state().await, before);
}

#[tokio::test]
async fn key_reused_with_another_payload_is_422_and_keys_are_per_user() {
    let app = spawn_app().await;
    let activity = app.create_activity(10, 3).await;
    let first = app
        .purchase(activity, 1, "shared", Some(r#"{"quantity":1}"#))
        .await;
    assert_eq!(first.status(), 201);
    let (status, code, _) = problem(
        app.purchase(activity, 1, "shared", Some(r#"{"quantity":2}"#))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "idempotency_key_reused"));
    // An empty body means quantity 1: the same payload as the first attempt.
    assert_eq!(
        app.purchase(activity, 1, "shared", None).await.status(),
        201
    );

    let other = app
        .purchase(activity, 2, "shared", Some(r#"{"quantity":1}"#))
        .await;
    assert_eq!(other.status(), 201);
    assert!(other.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let other: Value = other.json().await.unwrap();
    assert_ne!(first["order_id"], other["order_id"]);
    app.wait_drained(activity).await;
    assert_eq!(app.orders(activity).await.len(), 2);
}

#[tokio::test]
async fn quantity_above_one_within_the_limit_and_stock() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 3).await;
    let resp = app
        .purchase(activity, 1, "k", Some(r#"{"quantity":3}"#))
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<Value>().await.unwrap()["quantity"], 3);
    assert_eq!(app.remaining(activity).await, 2);

    // 3 more do not fit in the 2 left: sold out, and the stock is untouched.
    let (status, code, _) = problem(
        app.purchase(activity, 2, "k", Some(r#"{"quantity":3}"#))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "sold_out"));
    assert_eq!(app.remaining(activity).await, 2);
    // 2 still fit.
    assert_eq!(
        app.purchase(activity, 3, "k", Some(r#"{"quantity":2}"#))
            .await
            .status(),
        201
    );
    assert_eq!(app.remaining(activity).await, 0);

    app.wait_drained(activity).await;
    let rows = app.orders(activity).await;
    assert_eq!(rows.iter().map(|r| r.quantity).sum::<i32>(), 5);
    assert_eq!(app.activity_row(activity).await.sold, 5);
}

#[tokio::test]
async fn trusted_gateway_header_identifies_the_buyer() {
    let app = spawn_app_with(|s| s.auth.trust_user_header = true).await;
    let activity = app.create_activity(5, 1).await;
    let url = app.url(&format!("/api/v1/activities/{activity}/purchase"));
    let resp = app
        .client
        .post(&url)
        .header("X-User-Id", "99")
        .header("Idempotency-Key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<Value>().await.unwrap()["user_id"], "99");
    let bad = app
        .client
        .post(&url)
        .header("X-User-Id", "not-a-number")
        .header("Idempotency-Key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(bad).await.0, 401);
}

#[tokio::test]
async fn the_user_header_is_ignored_unless_trusted() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 1).await;
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/activities/{activity}/purchase")))
        .header("X-User-Id", "99")
        .header("Idempotency-Key", "k")
        .send()
        .await
        .unwrap();
    let (status, code, _) = problem(resp).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
}
