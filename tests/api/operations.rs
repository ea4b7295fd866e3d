//! Health, readiness, metrics, OpenAPI and unknown routes.

use serde_json::Value;

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let app = spawn_app().await;
    let get = |p: &str| app.client.get(app.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready: Value = get("/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");

    let activity = app.create_activity(1, 1).await;
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201);
    assert_eq!(app.purchase(activity, 2, "k", None).await.status(), 409);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"seckill_purchase_total{outcome="accepted"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"seckill_purchase_total{outcome="sold_out"}"#));
    assert!(metrics.contains("seckill_stock_remaining"));

    let api: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(api["paths"]["/api/v1/activities/{activity_id}/purchase"]["post"].is_object());
    assert!(api["paths"]["/api/v1/admin/activities"]["post"].is_object());
}

#[tokio::test]
async fn unknown_routes_are_problem_documents() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    let (status, code, _) = problem(resp).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn startup_names_an_unreachable_database() {
    // Port 1 on loopback: nothing listens there.
    let result = seckill::startup::Application::build({
        let mut s = crate::helpers::test_settings();
        s.database.url = "mysql://root@127.0.0.1:1/seckill_test_nothing".into();
        s
    })
    .await;
    let err = result
        .err()
        .expect("no MySQL: the service refuses to start");
    assert!(format!("{err:#}").contains("mysql"), "{err:#}");
}

#[tokio::test]
async fn a_second_process_with_the_same_instance_id_refuses_to_start() {
    let app = spawn_app().await;
    let mut same = app.settings.clone();
    same.server.port = 0;
    let err = seckill::startup::Application::build(same)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("already held"), "{err:#}");
    let mut other = app.settings.clone();
    other.ids.instance_id = 1;
    assert!(seckill::startup::Application::build(other).await.is_ok());
}

#[tokio::test]
async fn a_graceful_stop_gives_the_instance_id_back() {
    let settings = crate::helpers::test_settings();
    let _data = crate::test_data::TestData::of(&settings);
    let app = seckill::startup::Application::build(settings.clone())
        .await
        .unwrap();
    let handle = app.server_handle();
    let running = tokio::spawn(app.run_until_stopped());
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    // The lease was released: a restart does not wait for it to expire (15 s).
    let started = std::time::Instant::now();
    let again = seckill::startup::Application::build(settings).await;
    assert!(again.is_ok(), "{:?}", again.err());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_process_that_lost_its_instance_id_lease_issues_no_more_ids() {
    use redis::AsyncCommands;
    let app = spawn_app().await;
    let activity = app.create_activity(1_000, 1).await;
    assert_eq!(app.purchase(activity, 1, "k", None).await.status(), 201);
    // Another process holds the id now (as after a pause longer than the lease's TTL).
    let lease = seckill::gate::KeySpace::new(app.prefix.clone())
        .instance_lease(app.settings.ids.instance_id);
    let _: () = app
        .redis
        .clone()
        .set(
            &lease,
            "pid=1 start=1 host=elsewhere boot=b pidns=n nonce=x",
        )
        .await
        .unwrap();
    // Within a renewal period the process notices, and from then on issues no id: no order,
    // no activity, rather than ids that may collide with the other process's.
    let started = std::time::Instant::now();
    let mut user = 2;
    loop {
        let resp = app.purchase(activity, user, "k", None).await;
        if resp.status() == 503 {
            break;
        }
        assert_eq!(resp.status(), 201);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "still issuing ids"
        );
        user += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, code, body) =
        crate::helpers::problem(app.purchase(activity, 99, "k", None).await).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("lease"), "{body}");
    let created = app
        .admin_post(&serde_json::json!({
            "name": "x", "stock": 1,
            "starts_at": crate::helpers::at(-1), "ends_at": crate::helpers::at(60)
        }))
        .await;
    assert_eq!(created.status(), 503);
}
