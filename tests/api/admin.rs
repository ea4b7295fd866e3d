//! Admin endpoints: create, re-seed, stats.

use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, ADMIN_TOKEN};

#[tokio::test]
async fn create_returns_the_activity_with_string_ids_and_seeds_redis() {
    let app = spawn_app().await;
    let resp = app
        .admin_post(&json!({
            "name": "  Phone  ", "stock": 10, "per_user_limit": 2,
            "starts_at": "2026-01-01T08:00:00+08:00", "ends_at": "2099-12-31T23:59:59.999Z"
        }))
        .await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let id = body["activity_id"].as_str().expect("string id");
    assert_eq!(location, format!("/api/v1/admin/activities/{id}"));
    assert_eq!(body["name"], "Phone");
    assert_eq!(body["starts_at"], "2026-01-01T00:00:00Z");
    // Past 2038: stored as DATETIME, not TIMESTAMP.
    assert_eq!(body["ends_at"], "2099-12-31T23:59:59.999Z");
    assert_eq!(
        (body["total_stock"].clone(), body["remaining_stock"].clone()),
        (json!(10), json!(10))
    );
    assert_eq!(body["per_user_limit"], 2);
    let row = app.activity_row(id.parse().unwrap()).await;
    assert_eq!((row.total_stock, row.sold), (10, 0));
}

#[tokio::test]
async fn reseed_raises_and_lowers_but_never_below_what_is_sold() {
    let app = spawn_app().await;
    let activity = app.create_activity(2, 1).await;
    for user in 1..=2 {
        assert_eq!(app.purchase(activity, user, "k", None).await.status(), 201);
    }
    assert_eq!(
        problem(app.purchase(activity, 3, "k", None).await).await.1,
        "sold_out"
    );
    let put = |stock: i64| {
        app.client
            .put(app.url(&format!("/api/v1/admin/activities/{activity}/stock")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "stock": stock }))
            .send()
    };
    let raised: Value = put(5).await.unwrap().json().await.unwrap();
    assert_eq!(
        (
            raised["total_stock"].clone(),
            raised["remaining_stock"].clone()
        ),
        (json!(5), json!(3))
    );
    assert_eq!(app.purchase(activity, 3, "k", None).await.status(), 201);

    // 3 accepted (maybe not all persisted yet): 2 is below, 3 is the floor.
    let (status, code, _) = problem(put(2).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "stock_below_sold"));
    let lowered: Value = put(3).await.unwrap().json().await.unwrap();
    assert_eq!(lowered["remaining_stock"], 0);
    assert_eq!(app.activity_row(activity).await.total_stock, 3);

    let stats = app.wait_drained(activity).await;
    assert_eq!(
        (
            stats["accepted"].clone(),
            stats["persisted"].clone(),
            stats["sold"].clone()
        ),
        (json!(3), json!(3), json!(3))
    );
}

#[tokio::test]
async fn reseed_after_redis_lost_the_state_starts_from_mysql_sold() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 1).await;
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201);
    app.wait_drained(activity).await;
    // Redis loses the activity's meta and stock (e.g. restarted without persistence).
    let mut conn = app.redis.clone();
    let tag = format!("{}:{{a:{activity}}}", app.prefix);
    let _: () = conn
        .del(&[format!("{tag}:meta"), format!("{tag}:stock")])
        .await
        .unwrap();
    // Not sellable, and not mistaken for an unknown activity.
    let (status, code, _) = problem(app.purchase(activity, 2, "k", None).await).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));

    let resp = app
        .client
        .put(app.url(&format!("/api/v1/admin/activities/{activity}/stock")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"stock": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["remaining_stock"], 4);
    assert_eq!(app.purchase(activity, 2, "k", None).await.status(), 201);
}
