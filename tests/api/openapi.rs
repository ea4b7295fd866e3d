//! The OpenAPI document against what it describes: every registered path and method is
//! documented, every error response is a problem document whose `code`s exist in error.rs
//! with the documented status, every code of error.rs is documented, and the errors that can
//! happen on a kind of route are documented on every route of that kind.
//!
//! `scripts/api-contract` goes further: it validates the document with openapi-spec-validator
//! and fuzzes the running service against it with schemathesis.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::ResponseError;
use serde_json::{json, Value};

use seckill::error::ApiError;

use crate::helpers::{problem, spawn_app, token, TestApp};

/// The pattern of an id in a path.
const ID_PATTERN: &str = "^[1-9][0-9]{0,19}$";
const PROBLEM_REF: &str = "#/components/schemas/Problem";
const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// One error of every kind. The `match` does not compile when a variant is added to
/// `ApiError`, so a new code cannot be left out of this list, nor (by the tests below) out of
/// the document.
fn every_error() -> Vec<ApiError> {
    let all = vec![
        ApiError::Unauthorized,
        ApiError::IdempotencyKeyMissing,
        ApiError::IdempotencyKeyInvalid("bad key"),
        ApiError::IdempotencyKeyReused,
        ApiError::InvalidRequest("bad".into()),
        ApiError::PayloadTooLarge(1024),
        ApiError::UnsupportedMediaType("text/plain".into()),
        ApiError::RequestTimeout(5000),
        ApiError::MethodNotAllowed("GET, HEAD"),
        ApiError::RateLimited {
            scope: "user",
            retry_after_secs: 1,
        },
        ApiError::ActivityNotFound,
        ApiError::OrderNotFound,
        ApiError::NotFound,
        ApiError::ActivityNotStarted,
        ApiError::ActivityEnded,
        ApiError::AlreadyPurchased { order_id: 42 },
        ApiError::SoldOut,
        ApiError::StockBelowSold { accepted: 3 },
        ApiError::OrderNotReady,
        ApiError::OrderPaid,
        ApiError::OrderClosed("cancelled".into()),
        ApiError::PaymentInProgress,
        ApiError::PaymentTokenMissing,
        ApiError::PaymentTokenUsed { payment_id: 7 },
        ApiError::PaymentTokenInvalid,
        ApiError::InvalidSignature("bad".into()),
        ApiError::PaymentNotFound,
        ApiError::AmountMismatch {
            expected: 100,
            got: 1,
        },
        ApiError::ProviderTxnConflict { payment_id: 8 },
        ApiError::Unavailable("redis unreachable".into()),
        ApiError::Internal(anyhow::anyhow!("a bug")),
    ];
    for e in &all {
        match e {
            ApiError::Unauthorized
            | ApiError::IdempotencyKeyMissing
            | ApiError::IdempotencyKeyInvalid(_)
            | ApiError::IdempotencyKeyReused
            | ApiError::InvalidRequest(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::RequestTimeout(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::RateLimited { .. }
            | ApiError::ActivityNotFound
            | ApiError::OrderNotFound
            | ApiError::NotFound
            | ApiError::ActivityNotStarted
            | ApiError::ActivityEnded
            | ApiError::AlreadyPurchased { .. }
            | ApiError::SoldOut
            | ApiError::StockBelowSold { .. }
            | ApiError::OrderNotReady
            | ApiError::OrderPaid
            | ApiError::OrderClosed(_)
            | ApiError::PaymentInProgress
            | ApiError::PaymentTokenMissing
            | ApiError::PaymentTokenUsed { .. }
            | ApiError::PaymentTokenInvalid
            | ApiError::InvalidSignature(_)
            | ApiError::PaymentNotFound
            | ApiError::AmountMismatch { .. }
            | ApiError::ProviderTxnConflict { .. }
            | ApiError::Unavailable(_)
            | ApiError::Internal(_) => {}
        }
    }
    all
}

/// Every code of error.rs with its status.
fn codes() -> BTreeMap<&'static str, u16> {
    every_error()
        .iter()
        .map(|e| (e.code(), e.status_code().as_u16()))
        .collect()
}

/// The paths `src/routes/mod.rs` registers, read from its `configure` function: string
/// literals that start with `/`, prefixed by the `web::scope` they are in.
fn registered_paths() -> BTreeSet<String> {
    let source = include_str!("../../src/routes/mod.rs");
    let start = source
        .find("pub fn configure")
        .expect("src/routes/mod.rs has no `pub fn configure`");
    let body: String = source[start..]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = BTreeSet::new();
    // (prefix, the parenthesis depth its scope applies at)
    let mut scopes: Vec<(String, i32)> = Vec::new();
    let (mut depth, mut braces) = (0, 0);
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                while scopes.last().is_some_and(|(_, d)| depth < *d) {
                    scopes.pop();
                }
            }
            '{' => braces += 1,
            '}' => {
                braces -= 1;
                if braces == 0 {
                    break; // the end of `configure`
                }
            }
            '"' => {
                let rest = &body[i + 1..];
                let literal = &rest[..rest.find('"').expect("unterminated string literal")];
                chars
                    .by_ref()
                    .take(literal.chars().count() + 1)
                    .for_each(drop);
                if !literal.starts_with('/') {
                    continue;
                }
                if body[..i].trim_end().ends_with("web::scope(") {
                    // The scope call is at `depth`; its routes are chained after it, one
                    // level up, until the call that holds the scope closes.
                    scopes.push((literal.to_owned(), depth - 1));
                } else {
                    let prefix: String = scopes.iter().map(|(p, _)| p.as_str()).collect();
                    paths.insert(format!("{prefix}{literal}"));
                }
            }
            _ => {}
        }
    }
    assert!(
        paths.len() >= 5,
        "could not read the routes of src/routes/mod.rs (found {paths:?}): update \
         registered_paths() in tests/api/openapi.rs to the way routes are written now"
    );
    paths
}

async fn document(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// `(path, method, operation)` of every operation.
fn operations(doc: &Value) -> Vec<(String, &'static str, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item[method].is_object() {
                ops.push((path.clone(), method, &item[method]));
            }
        }
    }
    ops
}

/// A response, with a `$ref` to `#/components/responses/…` followed.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/responses/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            &doc["components"]["responses"][name]
        }
        None => response,
    }
}

/// The codes an error response lists: its description starts with them, each in backticks,
/// separated by `, `, then ` — ` and the reasons.
fn listed_codes(description: &str) -> Vec<String> {
    let (head, reasons) = description.split_once(" — ").unwrap_or_else(|| {
        panic!("an error description must be \"`code`, `code` — reasons\": {description:?}")
    });
    assert!(!reasons.trim().is_empty(), "no reasons in {description:?}");
    head.split(", ")
        .map(|c| {
            c.strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or_else(|| panic!("{c:?} is not a `code` in {description:?}"))
                .to_owned()
        })
        .collect()
}

/// Statuses of an operation's responses.
fn statuses(op: &Value) -> BTreeSet<String> {
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// A path with its parameters filled in with real ids.
fn concrete(path: &str, activity: u64, order: u64) -> String {
    path.replace("{activity_id}", &activity.to_string())
        .replace("{order_id}", &order.to_string())
}

/// An app with one open activity and one order of user 42 in it.
async fn app_with_an_order() -> (TestApp, u64, u64) {
    let app = spawn_app().await;
    let activity = app.create_activity(10, 1).await;
    let resp = app.purchase(activity, 42, "k1", None).await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let order = body["order_id"].as_str().unwrap().parse().unwrap();
    (app, activity, order)
}

#[tokio::test]
async fn every_registered_route_and_method_is_documented() {
    let (app, activity, order) = app_with_an_order().await;
    let doc = document(&app).await;
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        registered_paths(),
        documented,
        "the paths of src/routes/mod.rs and of the document differ"
    );

    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = app.url(&concrete(path, activity, order));
        // A method no path allows: the answer's `Allow` lists what the path does allow.
        let resp = app
            .client
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap();
        let allow = resp
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("OPTIONS {path}: no Allow header"))
            .to_str()
            .unwrap()
            .to_owned();
        let (status, code, _) = problem(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (405, "method_not_allowed"),
            "{path}"
        );
        let allowed: BTreeSet<String> = allow.split(", ").map(str::to_lowercase).collect();
        let methods: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item[**m].is_object())
            .map(|m| m.to_string())
            .collect();
        assert_eq!(
            allowed, methods,
            "{path}: Allow: {allow}, documented {methods:?}"
        );
        let description = item["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(&format!("`Allow: {allow}`")),
            "{path}: the path item must tell its Allow header: {description:?}"
        );

        // Each documented method is routed (not 405), and HEAD answers like GET.
        let mut get_status = None;
        for method in &methods {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let req = app.client.request(m, &url);
            let req = if path.contains("/admin/") {
                req.bearer_auth(crate::helpers::ADMIN_TOKEN)
            } else {
                req.bearer_auth(token(42))
            };
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            assert_ne!(status, 405, "{} {path}", method.to_uppercase());
            assert!(
                statuses(&item[method.as_str()]).contains(&status.to_string()),
                "{} {path} answered {status}, which is not documented",
                method.to_uppercase()
            );
            match method.as_str() {
                "get" => get_status = Some(status),
                "head" => assert_eq!(Some(status), get_status, "HEAD {path} differs from GET"),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn every_error_response_is_a_problem_whose_codes_have_its_status() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let codes = codes();
    let check = |what: &str, status: &str, response: &Value, head: bool| {
        let description = response["description"].as_str().unwrap_or_default();
        let content = response["content"].as_object().cloned().unwrap_or_default();
        if head {
            assert!(content.is_empty(), "{what}: a HEAD response has no body");
        } else {
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/problem+json"],
                "{what} {status}: errors are problem documents"
            );
            assert_eq!(
                content["application/problem+json"]["schema"]["$ref"], PROBLEM_REF,
                "{what} {status}"
            );
        }
        for code in listed_codes(description) {
            let Some(code_status) = codes.get(code.as_str()) else {
                panic!("{what} {status}: `{code}` is not a code of src/error.rs");
            };
            assert_eq!(
                code_status.to_string(),
                status,
                "{what}: `{code}` is a {code_status}, documented under {status}"
            );
        }
    };
    for (path, method, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let what = format!("{} {path}", method.to_uppercase());
            if path == "/readyz" {
                // Readiness answers its own JSON when degraded: it tells which dependency.
                assert_eq!(status, "503", "{what}");
                continue;
            }
            check(&what, status, resolve(&doc, response), method == "head");
        }
    }
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let listed = listed_codes(response["description"].as_str().unwrap_or_default());
        let status = codes[listed[0].as_str()].to_string();
        check(&format!("response {name}"), &status, response, false);
    }
}

#[tokio::test]
async fn every_code_of_error_rs_is_documented_and_in_the_problem_schema() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let all: BTreeSet<String> = codes().keys().map(|c| c.to_string()).collect();

    let mut documented = BTreeSet::new();
    let responses = operations(&doc)
        .into_iter()
        .filter(|(path, _, _)| path != "/readyz")
        .flat_map(|(_, _, op)| op["responses"].as_object().unwrap().iter())
        .filter(|(status, _)| status.starts_with('4') || status.starts_with('5'))
        .map(|(_, r)| resolve(&doc, r))
        .chain(doc["components"]["responses"].as_object().unwrap().values());
    for response in responses {
        documented.extend(listed_codes(response["description"].as_str().unwrap()));
    }
    assert_eq!(documented, all, "codes documented vs codes of src/error.rs");

    let schema = &doc["components"]["schemas"]["ProblemCode"];
    let listed: BTreeSet<String> = schema["enum"]
        .as_array()
        .expect("ProblemCode is an enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, all, "the Problem schema's codes vs src/error.rs");
}

/// What error.rs writes matches the `Problem` schema, and every header a shared error
/// response documents is sent with each of its codes.
#[tokio::test]
async fn the_problem_schema_and_headers_match_what_the_service_writes() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schema = &doc["components"]["schemas"]["Problem"];
    let properties = schema["properties"].as_object().unwrap();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    // code → headers documented with it
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for response in doc["components"]["responses"].as_object().unwrap().values() {
        for code in listed_codes(response["description"].as_str().unwrap()) {
            let names = response["headers"]
                .as_object()
                .map(|h| h.keys().cloned().collect())
                .unwrap_or_default();
            headers.insert(code, names);
        }
    }

    for error in every_error() {
        let code = error.code();
        let resp = error.error_response();
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/problem+json",
            "{code}"
        );
        for name in headers.get(code).into_iter().flatten() {
            assert!(
                resp.headers().contains_key(name.as_str()),
                "{code}: no {name}"
            );
        }
        let status = resp.status().as_u16();
        let bytes = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let body = body.as_object().unwrap();
        for key in &required {
            assert!(body.contains_key(*key), "{code}: no {key}");
        }
        for (key, value) in body {
            let property = properties
                .get(key)
                .unwrap_or_else(|| panic!("{code}: `{key}` is not in the Problem schema"));
            let kind = if property["$ref"].is_string() {
                "string" // the code enum
            } else {
                property["type"].as_str().unwrap()
            };
            let ok = match kind {
                "string" => value.is_string(),
                "integer" => value.is_u64(),
                other => panic!("unexpected type {other}"),
            };
            assert!(ok, "{code}: `{key}` is {value}, documented {kind}");
        }
        assert_eq!(body["status"], status);
        assert_eq!(body["code"], code);
        assert_eq!(body["type"], format!("urn:seckill:problem:{code}"));
        assert_eq!(body.contains_key("order_id"), code == "already_purchased");
    }
}

/// The errors that can happen on a kind of route are documented on every route of that
/// kind; ids and keys have their patterns; every `GET` has its `HEAD`.
#[tokio::test]
async fn shared_errors_parameters_and_heads_are_documented_where_they_apply() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    // The shared response, by reference (or inlined without its body, for a HEAD).
    let has = |op: &Value, status: &str, component: &str| {
        let response = &op["responses"][status];
        let shared = &doc["components"]["responses"][component];
        response["$ref"] == format!("#/components/responses/{component}")
            || (response["description"].is_string()
                && response["description"] == shared["description"]
                && response["headers"] == shared["headers"])
    };
    let codes_of = |op: &Value, status: &str| -> Vec<String> {
        let response = resolve(&doc, &op["responses"][status]);
        response["description"]
            .as_str()
            .map(listed_codes)
            .unwrap_or_default()
    };
    for (path, method, op) in operations(&doc) {
        let what = format!("{} {path}", method.to_uppercase());
        // Routes behind a bearer token (the callback is signed instead: its own 401).
        let secured = op["security"].as_array().is_some_and(|s| {
            s.iter()
                .any(|r| r.get("buyer_jwt").is_some() || r.get("admin_token").is_some())
        });
        if secured {
            assert!(has(op, "401", "Unauthorized"), "{what}: 401");
            assert!(
                codes_of(op, "400").contains(&"invalid_request".to_owned()),
                "{what}: 400 invalid_request (Authorization sent twice)"
            );
        }
        if op["requestBody"].is_object() {
            assert!(
                codes_of(op, "400").contains(&"invalid_request".to_owned()),
                "{what}"
            );
            assert!(has(op, "408", "RequestTimeout"), "{what}: 408");
            assert!(has(op, "413", "PayloadTooLarge"), "{what}: 413");
            assert!(has(op, "415", "UnsupportedMediaType"), "{what}: 415");
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                body["$ref"].is_string(),
                "{what}: the body is one schema: {body}"
            );
        }
        if path.starts_with("/api/") {
            assert!(has(op, "500", "Internal"), "{what}: 500");
            assert!(has(op, "503", "Unavailable"), "{what}: 503");
        }
        for parameter in op["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] == "path" {
                // Ids are decimal (the one other path parameter is an asset's file name).
                if parameter["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("_id"))
                {
                    assert_eq!(parameter["schema"]["pattern"], ID_PATTERN, "{what}");
                }
                assert!(!codes_of(op, "404").is_empty(), "{what}: 404");
            }
        }
        if method == "post" && path.ends_with("/purchase") {
            assert!(has(op, "429", "RateLimited"), "{what}: 429");
            let key = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "Idempotency-Key")
                .expect("Idempotency-Key parameter");
            assert_eq!(key["in"], "header");
            assert_eq!(key["required"], true);
            assert_eq!(key["schema"]["pattern"], "^[A-Za-z0-9_.:-]{1,64}$");
            assert!(
                op["requestBody"]["required"] != true,
                "the body is optional"
            );
            let replayed = &op["responses"]["201"]["headers"]["Idempotent-Replayed"];
            assert!(replayed.is_object(), "{what}: Idempotent-Replayed");
        }
        // A payment token is not a resource one can fetch: its 201 has no Location.
        if op["responses"]["201"].is_object() && !path.ends_with("/payment-token") {
            assert!(
                op["responses"]["201"]["headers"]["Location"].is_object(),
                "{what}: 201 with Location"
            );
        }
        if method == "get" {
            let head = &doc["paths"][&path]["head"];
            assert!(head.is_object(), "{what}: no HEAD");
            assert_eq!(statuses(head), statuses(op), "HEAD {path}");
            assert_ne!(head["operationId"], op["operationId"], "{what}");
        }
    }
    // Every POST/PUT reads a body, except the order actions, whose request is all in the
    // path and headers (a body sent to them is not read).
    let bodiless = ["/payment-token", "/pay", "/cancel"];
    for (path, p) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put"] {
            if p[method].is_object() {
                assert_eq!(
                    p[method]["requestBody"].is_object(),
                    !bodiless.iter().any(|b| path.ends_with(b)),
                    "{method} {path}: a body exactly where one is read"
                );
            }
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    for name in ["buyer_jwt", "admin_token"] {
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }
    for view in ["OrderView", "ActivityView", "AdminActivityView"] {
        let properties = &doc["components"]["schemas"][view]["properties"];
        for id in ["order_id", "activity_id", "user_id"] {
            if properties[id].is_object() {
                assert_eq!(
                    properties[id]["type"], "string",
                    "{view}.{id}: ids are strings"
                );
                assert_eq!(properties[id]["pattern"], ID_PATTERN, "{view}.{id}");
            }
        }
    }
}

/// The document needs no server: `OPENAPI_JSON_OUT=<file> cargo test --test api openapi`
/// writes it, the same as `GET /openapi.json` serves.
#[tokio::test]
async fn the_served_document_is_the_built_one() {
    use utoipa::OpenApi;
    let built = serde_json::to_value(seckill::routes::ApiDoc::openapi()).unwrap();
    let app = spawn_app().await;
    assert_eq!(document(&app).await, built);
    assert_eq!(built["openapi"], json!("3.1.0"));
    if let Ok(out) = std::env::var("OPENAPI_JSON_OUT") {
        std::fs::write(&out, serde_json::to_string_pretty(&built).unwrap()).unwrap();
        eprintln!("wrote {out}");
    }
}

/// A status and the codes its answer can carry.
type StatusCodes = (u16, &'static [&'static str]);
/// Status → codes of one operation.
type Responses = BTreeMap<u16, BTreeSet<String>>;

/// Every operation's statuses and, for errors, codes, as the contract (docs/SPEC and the
/// handlers) has them. A route, a status or a code left out of the document fails here.
#[tokio::test]
async fn each_operation_documents_exactly_its_statuses_and_codes() {
    const AUTH_400: &[&str] = &["invalid_request"];
    const BODY: [(u16, &[&str]); 3] = [
        (408, &["request_timeout"]),
        (413, &["payload_too_large"]),
        (415, &["unsupported_media_type"]),
    ];
    const STORE: [(u16, &[&str]); 2] = [(500, &["internal"]), (503, &["unavailable"])];
    const ORDER_STATE: &[&str] = &[
        "order_not_ready",
        "order_paid",
        "order_closed",
        "payment_in_progress",
    ];
    let contract: Vec<(&str, Vec<StatusCodes>)> = vec![
        (
            "purchase",
            [
                (201, &[][..]),
                (
                    400,
                    &[
                        "idempotency_key_missing",
                        "idempotency_key_invalid",
                        "invalid_request",
                    ],
                ),
                (401, &["unauthorized"]),
                (404, &["activity_not_found"]),
                (
                    409,
                    &[
                        "activity_not_started",
                        "activity_ended",
                        "already_purchased",
                        "sold_out",
                    ],
                ),
                (422, &["idempotency_key_reused"]),
                (429, &["rate_limited"]),
            ]
            .into_iter()
            .chain(BODY)
            .chain(STORE)
            .collect(),
        ),
        (
            "get_purchase",
            [
                (200, &[][..]),
                (400, AUTH_400),
                (401, &["unauthorized"]),
                (404, &["order_not_found"]),
            ]
            .into_iter()
            .chain(STORE)
            .collect(),
        ),
        (
            "get_order",
            [
                (200, &[][..]),
                (400, AUTH_400),
                (401, &["unauthorized"]),
                (404, &["order_not_found"]),
            ]
            .into_iter()
            .chain(STORE)
            .collect(),
        ),
        (
            "get_activity",
            [(200, &[][..]), (404, &["activity_not_found"])]
                .into_iter()
                .chain(STORE)
                .collect(),
        ),
        (
            "create_activity",
            [
                (201, &[][..]),
                (400, &["invalid_request"]),
                (401, &["unauthorized"]),
            ]
            .into_iter()
            .chain(BODY)
            .chain(STORE)
            .collect(),
        ),
        (
            "set_stock",
            [
                (200, &[][..]),
                (400, &["invalid_request"]),
                (401, &["unauthorized"]),
                (404, &["activity_not_found"]),
                (409, &["stock_below_sold"]),
            ]
            .into_iter()
            .chain(BODY)
            .chain(STORE)
            .collect(),
        ),
        (
            "get_activity_stats",
            [
                (200, &[][..]),
                (400, AUTH_400),
                (401, &["unauthorized"]),
                (404, &["activity_not_found"]),
            ]
            .into_iter()
            .chain(STORE)
            .collect(),
        ),
        (
            "payment_token",
            [
                (200, &[][..]),
                (201, &[][..]),
                (400, AUTH_400),
                (401, &["unauthorized"]),
                (404, &["order_not_found"]),
                (409, ORDER_STATE),
            ]
            .into_iter()
            .chain(STORE)
            .collect(),
        ),
        (
            "pay",
            [
                (202, &[][..]),
                (
                    400,
                    &[
                        "payment_token_missing",
                        "idempotency_key_missing",
                        "idempotency_key_invalid",
                        "invalid_request",
                    ],
                ),
                (401, &["unauthorized"]),
                (404, &["order_not_found"]),
                (
                    409,
                    &[
                        "payment_token_used",
                        "payment_token_invalid",
                        "order_paid",
                        "order_closed",
                        "payment_in_progress",
                    ],
                ),
            ]
            .into_iter()
            .chain(STORE)
            .collect(),
        ),
        (
            "cancel_order",
            [
                (200, &[][..]),
                (400, AUTH_400),
                (401, &["unauthorized"]),
                (404, &["order_not_found"]),
                (409, ORDER_STATE),
            ]
            .into_iter()
            .chain(STORE)
            .collect(),
        ),
        (
            "callback",
            [
                (200, &[][..]),
                (400, &["invalid_request"]),
                (401, &["invalid_signature"]),
                (404, &["payment_not_found"]),
                (409, &["provider_txn_conflict"]),
                (422, &["amount_mismatch"]),
            ]
            .into_iter()
            .chain(BODY)
            .chain(STORE)
            .collect(),
        ),
        ("healthz", vec![(200, &[][..])]),
        ("readyz", vec![(200, &[][..]), (503, &[][..])]),
        ("metrics", vec![(200, &[][..])]),
        ("openapi_json", vec![(200, &[][..])]),
        (
            "list_activities",
            [(200, &[][..]), (400, AUTH_400), (401, &["unauthorized"])]
                .into_iter()
                .chain(STORE)
                .collect(),
        ),
        (
            "dev_token",
            [
                (200, &[][..]),
                (400, &["invalid_request"][..]),
                (404, &["not_found"]),
                (500, &["internal"]),
            ]
            .into_iter()
            .chain(BODY)
            .collect(),
        ),
        ("sale", vec![(200, &[][..]), (404, &["not_found"])]),
        ("admin", vec![(200, &[][..])]),
        ("asset", vec![(200, &[][..]), (404, &["not_found"])]),
    ];

    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut documented: BTreeMap<String, Responses> = BTreeMap::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap().to_owned();
        let mut responses = BTreeMap::new();
        for (status, response) in op["responses"].as_object().unwrap() {
            let status: u16 = status.parse().unwrap();
            let codes = if status >= 400 && path != "/readyz" {
                listed_codes(resolve(&doc, response)["description"].as_str().unwrap())
                    .into_iter()
                    .collect()
            } else {
                BTreeSet::new()
            };
            responses.insert(status, codes);
        }
        if method == "head" {
            let get = id.strip_suffix("_head").expect("HEAD ids end in _head");
            let get_op = &doc["paths"][&path]["get"];
            assert_eq!(get_op["operationId"], get, "HEAD {path}");
            continue; // compared with its GET below
        }
        documented.insert(id, responses);
    }
    let expected: BTreeMap<String, Responses> = contract
        .into_iter()
        .map(|(id, responses)| {
            let responses = responses
                .into_iter()
                .map(|(status, codes)| (status, codes.iter().map(|c| c.to_string()).collect()))
                .collect();
            (id.to_owned(), responses)
        })
        .collect();
    for (id, responses) in &expected {
        assert_eq!(
            documented.get(id),
            Some(responses),
            "operation {id}: documented statuses and codes differ from the contract"
        );
    }
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "operations"
    );
}
