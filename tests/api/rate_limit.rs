//! Purchase rate limits: per user and per client address, before Redis is touched.

use serde_json::Value;

use seckill::configuration::Settings;

use crate::helpers::{problem, spawn_app_with, token, TestApp};

fn limited(s: &mut Settings, per_user: (u32, u32), per_address: (u32, u32), header: &str) {
    s.rate_limit.per_user_per_sec = per_user.0;
    s.rate_limit.per_user_burst = per_user.1;
    s.rate_limit.per_address_per_sec = per_address.0;
    s.rate_limit.per_address_burst = per_address.1;
    s.rate_limit.address_header = header.into();
}

/// Sends `n` purchases at once; returns the statuses and the `429`s' `Retry-After`.
async fn burst(
    app: &TestApp,
    activity: u64,
    n: u64,
    user: impl Fn(u64) -> u64,
    forwarded: impl Fn(u64) -> Option<String>,
) -> (Vec<u16>, Vec<u64>) {
    let sends = (0..n).map(|i| {
        let mut req = app
            .client
            .post(app.url(&format!("/api/v1/activities/{activity}/purchase")))
            .bearer_auth(token(user(i)))
            .header("Idempotency-Key", format!("k{i}"));
        if let Some(addr) = forwarded(i) {
            req = req.header("x-forwarded-for", addr);
        }
        req.send()
    });
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for resp in futures_util::future::join_all(sends).await {
        let resp = resp.unwrap();
        if resp.status() == 429 {
            retry_after.push(
                resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            let (_, code, _) = problem(resp).await;
            assert_eq!(code, "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(resp.status().as_u16());
        }
    }
    (statuses, retry_after)
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

/// The limits refill at 1 per second: a burst that takes longer than that on a loaded
/// machine lets one or two more through. The assertions allow that much, no more.
const SLACK: usize = 2;

#[tokio::test]
async fn one_user_flooding_gets_429_with_retry_after_before_redis_is_asked() {
    let app = spawn_app_with(|s| limited(s, (1, 5), (0, 0), "")).await;
    let activity = app.create_activity(100, 1).await;
    // 30 purchases of one user at once: the burst of 5 reaches the gate (one accepted, the
    // others already_purchased), the rest never do.
    let (statuses, retry_after) = burst(&app, activity, 30, |_| 7, |_| None).await;
    let passed = 30 - count(&statuses, 429);
    assert!((5..=5 + SLACK).contains(&passed), "{statuses:?}");
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), passed - 1, "{statuses:?}");
    assert!(retry_after.iter().all(|&s| s >= 1), "{retry_after:?}");
    // Another user is not held back by the first one's flood.
    assert_eq!(app.purchase(activity, 8, "k", None).await.status(), 201);
    // Limited before the gate: an activity that does not exist still answers 429 (the gate
    // would have said 404).
    let (status, code, _) = problem(app.purchase(999, 7, "k", None).await).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    let stats: Value = app.admin_stats(activity).await;
    assert_eq!(stats["accepted"], 2);
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with(r#"seckill_purchase_total{outcome="rate_limited_user"}"#)
            && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn one_address_flooding_with_many_users_gets_429() {
    let app = spawn_app_with(|s| limited(s, (0, 0), (1, 10), "")).await;
    let activity = app.create_activity(100, 1).await;
    let (statuses, _) = burst(&app, activity, 30, |i| 100 + i, |_| None).await;
    let passed = count(&statuses, 201);
    assert!((10..=10 + SLACK).contains(&passed), "{statuses:?}");
    assert_eq!(count(&statuses, 429), 30 - passed, "{statuses:?}");
}

#[tokio::test]
async fn behind_a_gateway_the_address_comes_from_the_trusted_header_only() {
    // Not configured: a client's own X-Forwarded-For changes nothing (all from 127.0.0.1).
    let app = spawn_app_with(|s| limited(s, (0, 0), (1, 10), "")).await;
    let activity = app.create_activity(100, 1).await;
    let spoofed = |i: u64| Some(format!("198.51.100.{i}"));
    let (statuses, _) = burst(&app, activity, 20, |i| 100 + i, spoofed).await;
    assert!(count(&statuses, 429) >= 10 - SLACK, "{statuses:?}");

    // Configured: each forwarded address has its own budget (the last entry counts, the
    // one the gateway appended).
    let app = spawn_app_with(|s| limited(s, (0, 0), (1, 10), "X-Forwarded-For")).await;
    let activity = app.create_activity(100, 1).await;
    let forwarded = |i: u64| Some(format!("203.0.113.9, 198.51.100.{}", i % 2));
    let (statuses, _) = burst(&app, activity, 20, |i| 100 + i, forwarded).await;
    assert_eq!(count(&statuses, 201), 20, "two clients of 10: {statuses:?}");
    let (statuses, _) = burst(
        &app,
        activity,
        5,
        |i| 500 + i,
        |_| Some("198.51.100.0".into()),
    )
    .await;
    assert!(count(&statuses, 429) >= 5 - SLACK, "{statuses:?}");
}

#[tokio::test]
async fn the_shipped_limits_let_a_person_clicking_through() {
    let shipped = Settings::load().unwrap().rate_limit;
    let app = spawn_app_with(|s| s.rate_limit = shipped).await;
    let activity = app.create_activity(100, 1).await;
    // A double click, three retries of a timed-out request and a second key: six purchases
    // of one user in the same instant.
    let (statuses, _) = burst(&app, activity, 6, |_| 1, |_| None).await;
    assert_eq!(count(&statuses, 429), 0, "{statuses:?}");
}

#[tokio::test]
async fn the_address_limit_comes_before_authentication() {
    let app = spawn_app_with(|s| limited(s, (1, 5), (1, 10), "")).await;
    let sends = (0..30).map(|i| {
        app.client
            .post(app.url("/api/v1/activities/1/purchase"))
            .bearer_auth("garbage.token.x")
            .header("Idempotency-Key", format!("k{i}"))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let unauthorized = count(&statuses, 401);
    assert!((10..=10 + SLACK).contains(&unauthorized), "{statuses:?}");
    assert_eq!(count(&statuses, 429), 30 - unauthorized, "{statuses:?}");
}
