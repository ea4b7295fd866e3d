//! What the sale page and the dashboard need from the service, over HTTP: the pages and
//! their assets (embedded, with a strict Content-Security-Policy), the development sign-in
//! (only with the development secret), the admin list, and the live figures of the admin
//! view (answers by outcome, writer lag). The pages themselves run in a real browser in
//! `tests/browser/` (scripts/test).

use std::time::Duration;

use serde_json::{json, Value};

use seckill::configuration::DEV_JWT_SECRET;

use crate::helpers::{problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_pages_and_their_assets_are_served_with_a_strict_policy() {
    let app = spawn_app().await;
    for (path, media_type) in [
        ("/sale/123", "text/html"),
        ("/admin", "text/html"),
        ("/assets/sale.js", "text/javascript"),
        ("/assets/admin.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let ct = h["content-type"].to_str().unwrap();
        assert!(ct.starts_with(media_type), "{path}: {ct}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let body = resp.text().await.unwrap();
        if media_type == "text/html" {
            // Nothing inline that the policy would block: every script is a file.
            assert!(!body.contains("<script>"), "{path}: an inline script");
            assert!(!body.contains(" style=\""), "{path}: an inline style");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path}: an outside URL"
            );
        }
    }
    for path in [
        "/assets/nothing.js",
        "/assets/..%2Fsale.html",
        "/sale/abc",
        "/sale/0",
    ] {
        let (status, code, _) = problem(app.client.get(app.url(path)).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
    }
}

async fn dev_token(app: &crate::helpers::TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/dev/token"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_by_user_id_exists_only_with_the_development_secret() {
    // The test secret is not the development one: as if the endpoint did not exist.
    let app = spawn_app().await;
    let (status, code, _) = problem(dev_token(&app, json!({"user_id": "42"})).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));

    let app = spawn_app_with(|s| s.auth.jwt_secret = DEV_JWT_SECRET.into()).await;
    let activity = app.create_activity(5, 1).await;
    for (user, body) in [
        (42u64, json!({"user_id": "42"})),
        (43, json!({"user_id": 43})),
    ] {
        let resp = dev_token(&app, body).await;
        assert_eq!(resp.status(), 200);
        let signed: Value = resp.json().await.unwrap();
        assert_eq!(signed["user_id"], user.to_string());
        // The token is a buyer's: it buys as that user.
        let bought = app
            .client
            .post(app.url(&format!("/api/v1/activities/{activity}/purchase")))
            .bearer_auth(signed["token"].as_str().unwrap())
            .header("Idempotency-Key", "k")
            .send()
            .await
            .unwrap();
        assert_eq!(bought.status(), 201);
        let order: Value = bought.json().await.unwrap();
        assert_eq!(order["user_id"], user.to_string());
    }
    for bad in [
        json!({"user_id": "0"}),
        json!({"user_id": "-1"}),
        json!({"user_id": 1.5}),
        json!({"user_id": "12a"}),
        json!({"user": "1"}),
        json!({"user_id": "1", "admin": true}),
        json!([]),
    ] {
        let (status, code, _) = problem(dev_token(&app, bad.clone()).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{bad}");
    }
}

#[tokio::test]
async fn the_admin_list_shows_the_newest_activities_first() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/v1/admin/activities"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 401);
    let first = app.create_activity(5, 1).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = app.create_activity(7, 2).await;
    let list = app.admin_get("/api/v1/admin/activities").await;
    let ids: Vec<&str> = list["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["activity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.to_string(), first.to_string()]);
    let a = &list["activities"][0];
    assert_eq!(
        (a["total_stock"].as_i64(), a["per_user_limit"].as_i64()),
        (Some(7), Some(2))
    );
    assert!(a["starts_at"].is_string() && a["price_cents"].is_i64());
}

#[tokio::test]
async fn the_admin_view_counts_answers_by_outcome_and_shows_the_writer_lag() {
    let app = spawn_app_with(|s| s.writer.enabled = false).await;
    let activity = app.create_activity(1, 1).await;
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201);
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201); // replay
    assert_eq!(app.purchase(activity, 2, "k", None).await.status(), 409); // sold out
    assert_eq!(app.purchase(activity, 1, "other", None).await.status(), 409); // already bought
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = app.admin_stats(activity).await;
    assert_eq!(
        stats["outcomes"],
        json!({"accepted": 1, "replay": 1, "sold_out": 1, "already_purchased": 1})
    );
    // Nothing drains (no writer): the one order has waited at least the 50 ms slept.
    let lag = stats["writer_lag_ms"]
        .as_u64()
        .expect("a lag while an order waits");
    assert!((50..60_000).contains(&lag), "{lag}");
    // Another activity's figures are its own.
    let other = app.create_activity(1, 1).await;
    let stats = app.admin_stats(other).await;
    assert_eq!(
        (stats["outcomes"].clone(), stats["writer_lag_ms"].clone()),
        (json!({}), Value::Null)
    );
}
