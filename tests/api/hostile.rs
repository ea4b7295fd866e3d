//! Bad input of every kind the spec names: the exact status and code, and no change at all
//! in Redis or MySQL (invariant I5).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, token, TestApp, ADMIN_TOKEN, JWT_SECRET};

fn jwt(alg: Algorithm, secret: &str, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A request to send and the answer it must get.
struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    auth: Option<String>,
    key: Option<String>,
    body: Option<Vec<u8>>,
    content_type: &'static str,
    /// Sent after the others (a second `Authorization` or `Idempotency-Key`, say).
    extra_headers: Vec<(&'static str, String)>,
    status: u16,
    code: &'static str,
}

fn buy(name: &'static str, activity: &str, auth: Option<String>, key: Option<&str>) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        path: format!("/api/v1/activities/{activity}/purchase"),
        auth,
        key: key.map(str::to_owned),
        body: None,
        content_type: "application/json",
        extra_headers: Vec::new(),
        status: 0,
        code: "",
    }
}

impl Case {
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Some(b.into());
        self
    }
    fn content_type(mut self, t: &'static str) -> Self {
        self.content_type = t;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra_headers.push((name, value.into()));
        self
    }
    fn method(mut self, m: reqwest::Method) -> Self {
        self.method = m;
        self
    }
    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }
    fn admin(
        name: &'static str,
        method: reqwest::Method,
        path: String,
        auth: Option<&str>,
    ) -> Self {
        Case {
            name,
            method,
            path,
            auth: auth.map(str::to_owned),
            key: None,
            body: None,
            content_type: "application/json",
            extra_headers: Vec::new(),
            status: 0,
            code: "",
        }
    }
}

/// Runs every case and reports every mismatch at once (a failing case does not hide the
/// ones after it).
async fn check(app: &TestApp, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let before = app.state().await;
        let mut req = app.client.request(case.method.clone(), app.url(&case.path));
        if let Some(a) = &case.auth {
            req = req.bearer_auth(a);
        }
        if let Some(k) = &case.key {
            req = req.header("Idempotency-Key", k.as_str());
        }
        if let Some(b) = case.body.clone() {
            req = req.header("content-type", case.content_type).body(b);
        }
        for (name, value) in &case.extra_headers {
            req = req.header(*name, value.as_str());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").cloned();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if (status, body["code"].as_str()) != (case.status, Some(case.code)) {
            failures.push(format!(
                "{}: expected {} {}, got {status} {body}",
                case.name, case.status, case.code
            ));
        } else if content_type.as_ref().and_then(|v| v.to_str().ok())
            != Some("application/problem+json")
            || body["detail"].as_str().is_none_or(|d| d.is_empty())
        {
            failures.push(format!(
                "{}: not a problem document: {content_type:?} {body}",
                case.name
            ));
        }
        if app.state().await != before {
            failures.push(format!("{}: changed state", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn hostile_purchases_are_refused_precisely_and_change_nothing() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 1).await;
    // A real order, so that "nothing changed" covers non-empty state.
    assert_eq!(app.purchase(activity, 1, "seed", None).await.status(), 201);
    app.wait_drained(activity).await;

    let a = activity.to_string();
    let ok = Some(token(2));
    let k = Some("key-1");
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({"sub": "2", "exp": now() + 600}).to_string())
    );
    let cases = vec![
        buy("no token", &a, None, k).expect(401, "unauthorized"),
        buy("garbage token", &a, Some("garbage".into()), k).expect(401, "unauthorized"),
        buy(
            "wrong secret",
            &a,
            Some(jwt(
                Algorithm::HS256,
                "other",
                json!({"sub": "2", "exp": now() + 600}),
            )),
            k,
        )
        .expect(401, "unauthorized"),
        buy(
            "expired",
            &a,
            Some(jwt(
                Algorithm::HS256,
                JWT_SECRET,
                json!({"sub": "2", "exp": now() - 120}),
            )),
            k,
        )
        .expect(401, "unauthorized"),
        buy("alg none", &a, Some(alg_none), k).expect(401, "unauthorized"),
        buy(
            "HS512 with the right secret",
            &a,
            Some(jwt(
                Algorithm::HS512,
                JWT_SECRET,
                json!({"sub": "2", "exp": now() + 600}),
            )),
            k,
        )
        .expect(401, "unauthorized"),
        buy(
            "no exp",
            &a,
            Some(jwt(Algorithm::HS256, JWT_SECRET, json!({"sub": "2"}))),
            k,
        )
        .expect(401, "unauthorized"),
        buy(
            "non-numeric sub",
            &a,
            Some(jwt(
                Algorithm::HS256,
                JWT_SECRET,
                json!({"sub": "bob", "exp": now() + 600}),
            )),
            k,
        )
        .expect(401, "unauthorized"),
        buy("missing key", &a, ok.clone(), None).expect(400, "idempotency_key_missing"),
        buy("empty key", &a, ok.clone(), Some("")).expect(400, "idempotency_key_invalid"),
        buy("key with space", &a, ok.clone(), Some("a b")).expect(400, "idempotency_key_invalid"),
        buy("key too long", &a, ok.clone(), Some(&"x".repeat(65)))
            .expect(400, "idempotency_key_invalid"),
        buy("bad JSON", &a, ok.clone(), k)
            .body("{")
            .expect(400, "invalid_request"),
        buy("unknown field", &a, ok.clone(), k)
            .body(r#"{"qty":1}"#)
            .expect(400, "invalid_request"),
        buy("quantity 0", &a, ok.clone(), k)
            .body(r#"{"quantity":0}"#)
            .expect(400, "invalid_request"),
        buy("negative quantity", &a, ok.clone(), k)
            .body(r#"{"quantity":-1}"#)
            .expect(400, "invalid_request"),
        buy("quantity over limit", &a, ok.clone(), k)
            .body(r#"{"quantity":2}"#)
            .expect(400, "invalid_request"),
        buy("quantity as string", &a, ok.clone(), k)
            .body(r#"{"quantity":"1"}"#)
            .expect(400, "invalid_request"),
        buy("fractional quantity", &a, ok.clone(), k)
            .body(r#"{"quantity":1.5}"#)
            .expect(400, "invalid_request"),
        buy("huge quantity", &a, ok.clone(), k)
            .body(r#"{"quantity":99999999999999999999}"#)
            .expect(400, "invalid_request"),
        buy("JSON array", &a, ok.clone(), k)
            .body("[1]")
            .expect(400, "invalid_request"),
        buy("200 KB body", &a, ok.clone(), k)
            .body(vec![b' '; 200 * 1024])
            .expect(413, "payload_too_large"),
        buy("unknown activity", "999999999", ok.clone(), k).expect(404, "activity_not_found"),
        buy("non-numeric activity", "abc", ok.clone(), k).expect(404, "activity_not_found"),
        buy("negative activity", "-1", ok.clone(), k).expect(404, "activity_not_found"),
        // One spelling per id: leading zeros name no activity, however many.
        buy(
            "activity with a leading zero",
            &format!("0{a}"),
            ok.clone(),
            k,
        )
        .expect(404, "activity_not_found"),
        buy(
            "activity with two leading zeros",
            &format!("00{a}"),
            ok.clone(),
            k,
        )
        .expect(404, "activity_not_found"),
        buy(
            "activity with three leading zeros",
            &format!("000{a}"),
            ok.clone(),
            k,
        )
        .expect(404, "activity_not_found"),
        buy("quantity null", &a, ok.clone(), k)
            .body(r#"{"quantity":null}"#)
            .expect(400, "invalid_request"),
        buy("text/plain body", &a, ok.clone(), k)
            .body(r#"{"quantity":1}"#)
            .content_type("text/plain")
            .expect(415, "unsupported_media_type"),
        buy("form body", &a, ok.clone(), k)
            .body("quantity=1")
            .content_type("application/x-www-form-urlencoded")
            .expect(415, "unsupported_media_type"),
        buy("JSON look-alike media type", &a, ok.clone(), k)
            .body(r#"{"quantity":1}"#)
            .content_type("application/jsonx")
            .expect(415, "unsupported_media_type"),
        buy("two Content-Type headers", &a, ok.clone(), k)
            .body(r#"{"quantity":1}"#)
            .header("content-type", "text/plain")
            .expect(400, "invalid_request"),
        buy("gzip-encoded body", &a, ok.clone(), k)
            .body(r#"{"quantity":1}"#)
            .header("content-encoding", "gzip")
            .expect(415, "unsupported_media_type"),
        buy("two Authorization headers", &a, ok.clone(), k)
            .header("authorization", format!("Bearer {}", token(3)))
            .expect(400, "invalid_request"),
        buy("the same Authorization twice", &a, ok.clone(), k)
            .header("authorization", format!("Bearer {}", token(2)))
            .expect(400, "invalid_request"),
        buy("two Idempotency-Key headers", &a, ok.clone(), k)
            .header("idempotency-key", "key-2")
            .expect(400, "idempotency_key_invalid"),
        buy("the same Idempotency-Key twice", &a, ok.clone(), k)
            .header("idempotency-key", "key-1")
            .expect(400, "idempotency_key_invalid"),
        buy(
            "token not valid before a minute from now",
            &a,
            Some(jwt(
                Algorithm::HS256,
                JWT_SECRET,
                json!({"sub": "2", "exp": now() + 600, "nbf": now() + 60}),
            )),
            k,
        )
        .expect(401, "unauthorized"),
        buy("DELETE on the purchase", &a, ok.clone(), k)
            .method(reqwest::Method::DELETE)
            .expect(405, "method_not_allowed"),
    ];
    check(&app, cases).await;
}

#[tokio::test]
async fn hostile_admin_requests_are_refused_precisely_and_change_nothing() {
    let app = spawn_app().await;
    let activity = app.create_activity(5, 1).await;
    assert_eq!(app.purchase(activity, 1, "seed", None).await.status(), 201);
    app.wait_drained(activity).await;

    use reqwest::Method;
    let create = || "/api/v1/admin/activities".to_string();
    let stock = format!("/api/v1/admin/activities/{activity}/stock");
    let good = |over: Value| {
        let mut v = json!({
            "name": "x", "stock": 5,
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"
        });
        for (k, val) in over.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.to_string()
    };
    let admin = Some(ADMIN_TOKEN);
    let cases = vec![
        Case::admin("no admin token", Method::POST, create(), None)
            .body(good(json!({})))
            .expect(401, "unauthorized"),
        Case::admin("wrong admin token", Method::POST, create(), Some("nope"))
            .body(good(json!({})))
            .expect(401, "unauthorized"),
        Case::admin(
            "buyer token as admin",
            Method::POST,
            create(),
            Some(&token(1)),
        )
        .body(good(json!({})))
        .expect(401, "unauthorized"),
        Case::admin("negative stock", Method::POST, create(), admin)
            .body(good(json!({"stock": -1})))
            .expect(400, "invalid_request"),
        Case::admin("end before start", Method::POST, create(), admin)
            .body(good(
                json!({"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"}),
            ))
            .expect(400, "invalid_request"),
        Case::admin("unparseable time", Method::POST, create(), admin)
            .body(good(json!({"starts_at": "tomorrow"})))
            .expect(400, "invalid_request"),
        Case::admin("empty name", Method::POST, create(), admin)
            .body(good(json!({"name": " "})))
            .expect(400, "invalid_request"),
        Case::admin("zero per-user limit", Method::POST, create(), admin)
            .body(good(json!({"per_user_limit": 0})))
            .expect(400, "invalid_request"),
        Case::admin("unknown field", Method::POST, create(), admin)
            .body(good(json!({"price": 1})))
            .expect(400, "invalid_request"),
        Case::admin("missing field", Method::POST, create(), admin)
            .body(r#"{"name":"x"}"#)
            .expect(400, "invalid_request"),
        Case::admin("no body", Method::POST, create(), admin).expect(400, "invalid_request"),
        Case::admin("stock without token", Method::PUT, stock.clone(), None)
            .body(r#"{"stock":9}"#)
            .expect(401, "unauthorized"),
        Case::admin("negative re-seed", Method::PUT, stock.clone(), admin)
            .body(r#"{"stock":-5}"#)
            .expect(400, "invalid_request"),
        Case::admin("re-seed below sold", Method::PUT, stock.clone(), admin)
            .body(r#"{"stock":0}"#)
            .expect(409, "stock_below_sold"),
        Case::admin(
            "re-seed unknown activity",
            Method::PUT,
            "/api/v1/admin/activities/12345/stock".into(),
            admin,
        )
        .body(r#"{"stock":9}"#)
        .expect(404, "activity_not_found"),
        Case::admin(
            "stats without token",
            Method::GET,
            format!("/api/v1/admin/activities/{activity}"),
            None,
        )
        .expect(401, "unauthorized"),
    ];
    check(&app, cases).await;
}
