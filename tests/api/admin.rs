//! Admin endpoints: create, re-seed, stats.

use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::{json, Value};

use seckill::gate::KeySpace;
use seckill::store::entity::activity;

use crate::helpers::{at, problem, spawn_app};

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
    let put = |stock: i64| app.put_stock(activity, json!({ "stock": stock }));
    let raised: Value = put(5).await.json().await.unwrap();
    assert_eq!(
        (
            raised["total_stock"].clone(),
            raised["remaining_stock"].clone()
        ),
        (json!(5), json!(3))
    );
    assert_eq!(app.purchase(activity, 3, "k", None).await.status(), 201);

    // 3 accepted (maybe not all persisted yet): 2 is below, 3 is the floor.
    let (status, code, _) = problem(put(2).await).await;
    assert_eq!((status, code.as_str()), (409, "stock_below_sold"));
    let lowered: Value = put(3).await.json().await.unwrap();
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
    let keys = app.keys(activity);
    let _: () = conn.del(&[keys.meta, keys.stock]).await.unwrap();
    // Not sellable, and not mistaken for an unknown activity.
    let (status, code, _) = problem(app.purchase(activity, 2, "k", None).await).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));

    let resp = app.put_stock(activity, json!({"stock": 5})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["remaining_stock"], 4);
    assert_eq!(app.purchase(activity, 2, "k", None).await.status(), 201);
}

#[tokio::test]
async fn times_that_cannot_be_stored_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let before = app.state().await;
    for (starts_at, ends_at) in [
        // Shorter than the stored millisecond: empty once truncated.
        ("2030-01-01T00:00:00.0001Z", "2030-01-01T00:00:00.0002Z"),
        // A leap second in either time (MariaDB would store 0000-00-00).
        ("2016-12-31T23:59:60Z", "2030-01-01T00:00:00Z"),
        ("2016-12-30T00:00:00Z", "2016-12-31T23:59:60Z"),
        // Beyond what DATETIME holds, before the epoch.
        ("0000-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
        ("1960-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
    ] {
        let resp = app
            .admin_post(&json!({
                "name": "x", "stock": 1, "starts_at": starts_at, "ends_at": ends_at
            }))
            .await;
        let (status, code, body) = problem(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{starts_at} {ends_at}: {body}"
        );
    }
    assert_eq!(app.state().await, before, "a refused create left something");
}

#[tokio::test]
async fn a_create_whose_seed_fails_leaves_neither_row_nor_redis_state() {
    let app = spawn_app().await;
    // The set of activities is made the wrong type: the seed script succeeds, registering
    // the activity then fails (WRONGTYPE), as a Redis failing mid-create would.
    let activities = KeySpace::new(app.prefix.clone()).activities();
    let _: () = app.redis.clone().set(&activities, "x").await.unwrap();
    let resp = app
        .admin_post(&json!({
            "name": "x", "stock": 5, "starts_at": at(-60), "ends_at": at(3600)
        }))
        .await;
    let (status, code, _) = problem(resp).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    assert!(
        activity::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .is_empty(),
        "a row was left without its Redis state"
    );
    let keys: Vec<String> = app
        .redis
        .clone()
        .keys(KeySpace::new(app.prefix.clone()).every_activity_pattern())
        .await
        .unwrap();
    assert!(keys.is_empty(), "Redis state left without a row: {keys:?}");
}

#[tokio::test]
async fn reconcile_reports_an_unreadable_activity_and_checks_the_others() {
    let app = spawn_app().await;
    let good = app.create_activity(3, 1).await;
    // A row as an older version could leave it: a leap second stored as a zero date.
    app.db
        .execute_unprepared(
            "INSERT INTO seckill_activity (id, name, total_stock, per_user_limit, starts_at, ends_at) \
             VALUES (1, 'broken', 1, 1, '0000-00-00 00:00:00', '2030-01-01 00:00:00')",
        )
        .await
        .unwrap();
    let (code, out) = app.seckill(&["reconcile"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("activity 1: cannot be checked"), "{out}");
    assert!(
        out.contains(&format!("activity {good}: consistent")),
        "{out}"
    );
}

#[tokio::test]
async fn concurrent_stock_changes_leave_mysql_and_redis_on_the_same_total() {
    let app = spawn_app().await;
    let activity = app.create_activity(100, 1).await;
    let put = |stock: i64| app.put_stock(activity, json!({ "stock": stock }));
    for round in 0..10 {
        let answers =
            futures_util::future::join_all([200, 150, 300, 120].into_iter().map(put)).await;
        assert!(answers.iter().all(|r| r.status() == 200));
        let mysql = app.activity_row(activity).await.total_stock;
        let redis_total: i64 = app
            .redis
            .clone()
            .hget(app.keys(activity).meta, "total")
            .await
            .unwrap();
        assert_eq!(
            mysql, redis_total,
            "round {round}: MySQL and Redis disagree"
        );
        assert_eq!(app.remaining(activity).await, mysql, "nothing sold yet");
    }
}
