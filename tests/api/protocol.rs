//! HTTP-level choices where the contract is silent: methods (`405` + `Allow`, `HEAD`), slow
//! bodies (`408`), media types, token `nbf`, the metrics page, and what malformed requests
//! do to the logs.

use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{problem, spawn_app, spawn_app_with, token, JWT_SECRET};
use crate::service::Service;

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_head_answers_wherever_get_does() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 1).await;
    for (method, path, allow) in [
        (
            "DELETE",
            format!("/api/v1/activities/{activity}"),
            "GET, HEAD",
        ),
        (
            "PUT",
            format!("/api/v1/activities/{activity}/purchase"),
            "GET, HEAD, POST",
        ),
        (
            "DELETE",
            "/api/v1/admin/activities".to_owned(),
            "GET, HEAD, POST",
        ),
        ("GET", "/dev/token".to_owned(), "POST"),
        ("POST", "/admin".to_owned(), "GET, HEAD"),
        (
            "POST",
            format!("/api/v1/admin/activities/{activity}/stock"),
            "PUT",
        ),
        (
            "PATCH",
            format!("/api/v1/admin/activities/{activity}"),
            "GET, HEAD",
        ),
        ("POST", "/api/v1/orders/1".to_owned(), "GET, HEAD"),
        ("POST", "/healthz".to_owned(), "GET, HEAD"),
        ("DELETE", "/metrics".to_owned(), "GET, HEAD"),
    ] {
        let resp = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .send()
            .await
            .unwrap();
        let allowed = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, code, _) = problem(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (405, "method_not_allowed"),
            "{method} {path}"
        );
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
    }
    // An unknown path is still a 404, whatever the method.
    let resp = app
        .client
        .delete(app.url("/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 404);

    for path in [
        format!("/api/v1/activities/{activity}"),
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
        "/openapi.json".to_owned(),
    ] {
        let get = app.client.get(app.url(&path)).send().await.unwrap();
        let head = app.client.head(app.url(&path)).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} sent a body"
        );
    }
    // HEAD of a buyer resource is authenticated like its GET.
    let head = app
        .client
        .head(app.url(&format!("/api/v1/activities/{activity}/purchase")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 401);
}

/// Sends `head` and then the body one byte every `gap`; returns the raw answer and how long
/// until the connection was closed.
async fn slow_request(address: &str, head: &str, body: &[u8], gap: Duration) -> (String, Duration) {
    let mut conn = TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = conn.into_split();
    let body = body.to_vec();
    let writer = tokio::spawn(async move {
        for b in body {
            tokio::time::sleep(gap).await;
            if write.write_all(&[b]).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), read.read_to_end(&mut answer)).await;
    writer.abort();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_body_slower_than_the_timeout_is_cut_with_408_and_changes_nothing() {
    let app = spawn_app_with(|s| s.server.body_timeout_ms = 1_000).await;
    let activity = app.create_activity(5, 1).await;
    let before = app.state().await;
    let body = br#"{"quantity": 1}"#;
    let head = format!(
        "POST /api/v1/activities/{activity}/purchase HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nIdempotency-Key: slow\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        token(1),
        body.len()
    );
    // One byte every 300 ms: the body would take 4.5 s; the timeout is 1 s.
    let (answer, took) = slow_request(&app.address, &head, body, Duration::from_millis(300)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        took < Duration::from_secs(3),
        "the connection was held for {took:?}"
    );
    assert_eq!(app.state().await, before);

    // The same on the admin endpoint.
    let admin = format!(
        "POST /api/v1/admin/activities HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 300\r\n\r\n",
        crate::helpers::ADMIN_TOKEN
    );
    let (answer, took) = slow_request(
        &app.address,
        &admin,
        &[b' '; 300],
        Duration::from_millis(300),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn an_empty_body_needs_no_content_type_and_a_past_nbf_is_accepted() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 1).await;
    let url = app.url(&format!("/api/v1/activities/{activity}/purchase"));
    let resp = app
        .client
        .post(&url)
        .bearer_auth(token(1))
        .header("Idempotency-Key", "k")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let now = chrono::Utc::now().timestamp();
    let past_nbf = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "2", "exp": now + 600, "nbf": now - 10}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let resp = app
        .client
        .post(&url)
        .bearer_auth(past_nbf)
        .header("Idempotency-Key", "k")
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"quantity": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

/// A fresh process (the in-process test apps share one metrics registry): every metric has
/// `# HELP` and `# TYPE`, and every counter is there at 0 before anything happened.
#[tokio::test]
async fn every_metric_is_described_and_every_counter_starts_at_0() {
    let service = Service::new(&[]);
    let child = service.start(1).await;
    let page = reqwest::get(format!("{}/metrics", service.address()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    drop(child);
    let mut counters = 0;
    for line in page.lines().filter(|l| l.starts_with("seckill_")) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            page.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
        assert!(
            page.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
        if page.contains(&format!("# TYPE {family} counter")) {
            assert!(line.ends_with(" 0"), "counter not at 0: {line}");
            counters += 1;
        }
    }
    for series in [
        r#"seckill_purchase_total{outcome="accepted"} 0"#,
        r#"seckill_purchase_total{outcome="sold_out"} 0"#,
        r#"seckill_purchase_total{outcome="rate_limited_user"} 0"#,
        r#"seckill_purchase_total{outcome="rate_limited_address"} 0"#,
        r#"seckill_writer_orders_total{result="dead_letter"} 0"#,
        "seckill_writer_errors_total 0",
        "# TYPE seckill_writer_batch_seconds histogram",
        "# TYPE seckill_writer_lag_seconds histogram",
    ] {
        assert!(page.contains(series), "missing {series:?}:\n{page}");
    }
    assert!(counters >= 20, "{counters} counters:\n{page}");
}

/// Malformed requests are a client's doing, and one line each at ERROR let any client
/// flood the logs: with the default log filter they write nothing.
#[tokio::test]
async fn malformed_requests_do_not_flood_the_logs() {
    let mut service = Service::new(&[]);
    service.rust_log = None;
    let child = service.start(1).await;
    let address = format!("127.0.0.1:{}", service.port);
    for i in 0..50 {
        let mut conn = TcpStream::connect(&address).await.unwrap();
        let garbage = match i % 3 {
            0 => "GARBAGE\r\n\r\n".to_owned(),
            1 => "GET / HTTP/1.1\r\nBad Header Line\r\n\r\n".to_owned(),
            _ => format!("GET /{} HTTP/9.9\r\n\r\n", "x".repeat(100)),
        };
        conn.write_all(garbage.as_bytes()).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut sink)).await;
    }
    // A request after them, so that the process has surely handled (and logged) the others.
    let ok = reqwest::get(format!("{}/healthz", service.address()))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    drop(child);
    let log = service.log.tail(10_000);
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("stream error"))
        .collect();
    assert!(
        noisy.is_empty(),
        "{} lines:\n{}",
        noisy.len(),
        noisy.join("\n")
    );
    assert!(log.contains("seckill listening"), "the log was read: {log}");
}

/// JSON has one number type: `2.0` is the integer 2 (JSON Schema's `integer` says so too),
/// `2.5` is not an integer.
#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let app = spawn_app().await;
    let activity = app.create_activity(10, 3).await;
    let resp = app
        .purchase(activity, 1, "k", Some(r#"{"quantity": 2.0}"#))
        .await;
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["quantity"], 2);
    // The same payload as `2`: a replay, not a reused key.
    let replay = app
        .purchase(activity, 1, "k", Some(r#"{"quantity": 2}"#))
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let (status, code, _) = problem(
        app.purchase(activity, 2, "k", Some(r#"{"quantity": 2.5}"#))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    let put = app.put_stock(activity, json!({"stock": 40.0})).await;
    assert_eq!(put.status(), 200);
    assert_eq!(app.activity_row(activity).await.total_stock, 40);
}
