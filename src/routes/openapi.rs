//! `GET /openapi.json`: the API description, generated from the handlers' annotations.
//!
//! Conventions the tests (`tests/api/openapi.rs`) hold the document to:
//! - every error response is `application/problem+json` with the [`Problem`] schema, and its
//!   description starts with the `code`s it can carry, each in backticks, separated by `, `,
//!   then ` — ` and the reasons (e.g. "`sold_out`, `activity_ended` — …");
//! - errors that every route of a kind shares are components (`#/components/responses/…`);
//! - every `GET` is also documented as `HEAD` (added here, from the `GET`), and every path item
//!   tells in its description which methods it allows (the others are `405` with `Allow`).

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::{activities, admin, dev, health, orders, pages, payments, purchase, views};
use crate::domain::{NewActivityRequest, StockRequest};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "seckill",
        description = "Flash-sale order service.\n\n\
            Every error is an `application/problem+json` document (RFC 9457) with a stable \
            machine-readable `code` (schema `Problem`); each error response below lists the \
            codes it can carry. 64-bit ids (orders, activities, users) are JSON strings of \
            decimal digits in responses; in paths they are decimal without a leading zero \
            (anything else is `404`).\n\n\
            Across all paths: a path that matches no route is `404` `not_found` (response \
            `NotFound`); a method a path does not allow is `405` `method_not_allowed` with an \
            `Allow` header (response `MethodNotAllowed`; each path item says which methods it \
            allows); `HEAD` is answered wherever `GET` is, with the same status and headers and \
            no body.\n\n\
            Request bodies (admin create, stock, purchase) must be `application/json` when \
            they are not empty (else `415`), arrive within `server.body_timeout_ms` (else `408`, \
            connection closed) and stay under their size limit (else `413`)."
    ),
    paths(
        purchase::purchase,
        orders::get_purchase,
        orders::get_order,
        payments::payment_token,
        payments::pay,
        orders::cancel_order,
        payments::callback,
        activities::get_activity,
        admin::create_activity,
        admin::set_stock,
        admin::list_activities,
        admin::get_activity_stats,
        dev::dev_token,
        pages::sale,
        pages::admin,
        pages::asset,
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
    ),
    components(
        schemas(
            Problem,
            ProblemCode,
            purchase::PurchaseRequest,
            views::OrderView,
            views::OrderStatus,
            views::PaymentTokenView,
            views::PaymentView,
            views::CallbackView,
            views::PaymentStatus,
            payments::CallbackBody,
            views::ActivityView,
            views::AdminActivityView,
            views::AdminActivityList,
            views::AdminActivitySummary,
            dev::DevTokenRequest,
            dev::DevTokenView,
            views::Health,
            views::Readiness,
            views::ReadinessStatus,
            views::DependencyState,
            NewActivityRequest,
            StockRequest
        ),
        responses(
            Unauthorized,
            NotFound,
            MethodNotAllowed,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            RateLimited,
            Internal,
            Unavailable
        )
    ),
    modifiers(&Security, &OptionalBodies, &HeadAndAllow)
)]
pub struct ApiDoc;

/// A problem document (RFC 9457), the body of every error response.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // documentation only: error.rs writes the real one
pub struct Problem {
    /// `urn:seckill:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:seckill:problem:[a-z_]+$")]
    kind: String,
    /// The HTTP reason phrase of `status`.
    title: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    code: ProblemCode,
    /// A human-readable explanation of this occurrence.
    detail: String,
    /// The order the user already has (`already_purchased` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, pattern = "^[1-9][0-9]{0,19}$")]
    order_id: Option<String>,
    /// The payment that consumed the token (`payment_token_used` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, pattern = "^[1-9][0-9]{0,19}$")]
    payment_id: Option<String>,
}

/// The stable machine-readable error code; each error response lists the ones it can carry.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only: `ApiError::code` writes the real one
pub enum ProblemCode {
    Unauthorized,
    IdempotencyKeyMissing,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    RequestTimeout,
    MethodNotAllowed,
    RateLimited,
    ActivityNotFound,
    OrderNotFound,
    NotFound,
    ActivityNotStarted,
    ActivityEnded,
    AlreadyPurchased,
    SoldOut,
    StockBelowSold,
    OrderNotReady,
    OrderPaid,
    OrderClosed,
    PaymentInProgress,
    PaymentTokenMissing,
    PaymentTokenUsed,
    PaymentTokenInvalid,
    InvalidSignature,
    PaymentNotFound,
    AmountMismatch,
    ProviderTxnConflict,
    Unavailable,
    Internal,
}

/// The media type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response: a [`Problem`] body and the given headers.
fn problem_response(description: &str, headers: &[(&str, Type, &str)]) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    for (name, kind, text) in headers {
        let schema = Schema::Object(ObjectBuilder::new().schema_type(kind.clone()).build());
        response = response.header(
            *name,
            HeaderBuilder::new()
                .schema(Some(schema))
                .description(Some(*text))
                .build(),
        );
    }
    response.build()
}

const RETRY_AFTER: (&str, Type, &str) = (
    "Retry-After",
    Type::Integer,
    "Seconds to wait before trying again.",
);

/// Declares a shared error response component.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => $description:expr, [$($header:expr),*];)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (
                    stringify!($name),
                    RefOr::T(problem_response($description, &[$($header),*])),
                )
            }
        }
    )*};
}

problem_responses! {
    /// `401` of every authenticated route.
    Unauthorized => "`unauthorized` — no credentials, a malformed or wrong bearer token; for a \
        buyer, a JWT that is not HS256 signed with the service's secret, lacks `sub` or \
        `exp`, has expired, or whose `nbf` lies in the future.",
        [("WWW-Authenticate", Type::String, "`Bearer`.")];
    /// `404` of every path that matches no route (no operation lists it: the routes' own
    /// `404`s carry a more precise code).
    NotFound => "`not_found` — no route matches this path.",
        [];
    /// `405` of every path, for the methods it does not allow (no operation lists it: an
    /// operation is a method the path allows).
    MethodNotAllowed => "`method_not_allowed` — the path exists but does not allow this \
        method; `Allow` lists the methods it does.",
        [("Allow", Type::String, "The methods the path allows, e.g. `GET, HEAD, POST`.")];
    /// `408` of every route that reads a body.
    RequestTimeout => "`request_timeout` — the body did not arrive within \
        `server.body_timeout_ms`; the connection is closed after this answer.",
        [];
    /// `413` of every route that reads a body.
    PayloadTooLarge => "`payload_too_large` — the body (or its `Content-Length`) is over the \
        route's limit: 1 KiB for a purchase, 16 KiB for admin bodies.",
        [];
    /// `415` of every route that reads a body.
    UnsupportedMediaType => "`unsupported_media_type` — a non-empty body whose `Content-Type` \
        is not `application/json` (parameters such as `charset` are allowed), or that is \
        compressed (`Content-Encoding` other than `identity`).",
        [];
    /// `429` of the purchase.
    RateLimited => "`rate_limited` — too many purchases from this user or this client \
        address (`rate_limit.*` settings); nothing was recorded.",
        [RETRY_AFTER];
    /// `500`, a bug.
    Internal => "`internal` — an unexpected failure (a bug or a schema mismatch); logged in \
        full, nothing more is told.",
        [];
    /// `503` of every route that reads Redis or MySQL.
    Unavailable => "`unavailable` — Redis or MySQL is unreachable or timed out, the activity's \
        sale state is not loaded in Redis or is being rebuilt, too many orders wait for MySQL \
        (`writer.max_backlog`), an accepted purchase did not reach `redis.replica_acks` replicas \
        in time (retry with the same key), or the id clock went backwards; retry after \
        `Retry-After`.",
        [RETRY_AFTER];
}

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "buyer_jwt",
            bearer(
                "JWT",
                "`Authorization: Bearer <JWT>`: HS256 with `auth.jwt_secret`, claim `sub` the \
                 user id (decimal), `exp` required, `nbf` honoured. Sent once: two \
                 `Authorization` headers are `400`. Behind a gateway with \
                 `auth.trust_user_header = true`, an `X-User-Id` header instead.",
            ),
        );
        components.add_security_scheme(
            "callback_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::payment::signature::HEADER,
                "The payment provider signs each callback: `Seckill-Signature: t=<unix \
                 seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" with \
                 payment.webhook_secret>` (the Stripe scheme; several `v1` may be sent). \
                 Checked over the raw body, in constant time; `t` more than 300 s away is \
                 refused.",
            ))),
        );
        components.add_security_scheme(
            "admin_token",
            bearer(
                "opaque",
                "`Authorization: Bearer <admin.token>`, compared in constant time. Sent once: \
                 two `Authorization` headers are `400`.",
            ),
        );
    }
}

/// An optional request body (`request_body(content = Option<T>)`) is one that may be empty,
/// not one that may be JSON `null` (refused like any body that is not an object): its schema
/// is `T`'s, and the body is not `required`.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let operations = api.paths.paths.values_mut().flat_map(|item| {
            [&mut item.post, &mut item.put, &mut item.patch]
                .into_iter()
                .flatten()
        });
        for operation in operations {
            let Some(RefOr::T(body)) = &mut operation.request_body else {
                continue;
            };
            for content in body.content.values_mut() {
                let RefOr::T(content) = content else {
                    continue;
                };
                if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                    let not_null: Vec<_> = one_of
                        .items
                        .iter()
                        .filter(|s| !is_null_schema(s))
                        .cloned()
                        .collect();
                    if not_null.len() == 1 && one_of.items.len() == 2 {
                        content.schema = not_null.into_iter().next();
                    }
                }
            }
        }
    }
}

fn is_null_schema(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

/// Adds a `HEAD` operation for every `GET` (same parameters and responses, no bodies; a
/// link to a `GET` gets a twin to its `HEAD`) and says in each path item which methods it
/// allows.
struct HeadAndAllow;

impl Modify for HeadAndAllow {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let shared = api
            .components
            .as_ref()
            .map(|c| c.responses.clone())
            .unwrap_or_default();
        for item in api.paths.paths.values_mut() {
            if let Some(get) = &item.get {
                let mut head = get.clone();
                head.operation_id = get.operation_id.as_ref().map(|id| format!("{id}_head"));
                head.summary = get
                    .summary
                    .as_ref()
                    .map(|s| format!("{} (HEAD: headers only)", s.trim_end_matches('.')));
                for response in head.responses.responses.values_mut() {
                    // A shared response has a body: inline a copy without it.
                    if let RefOr::Ref(r) = response {
                        let name = r.ref_location.trim_start_matches("#/components/responses/");
                        if let Some(RefOr::T(shared)) = shared.get(name) {
                            *response = RefOr::T(shared.clone());
                        }
                    }
                    if let RefOr::T(response) = response {
                        response.content.clear();
                        response.links.clear();
                    }
                }
                item.head = Some(head);
            }
            let allowed: Vec<&str> = [
                ("GET", item.get.is_some()),
                ("HEAD", item.head.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ]
            .into_iter()
            .filter_map(|(method, present)| present.then_some(method))
            .collect();
            item.description = Some(format!(
                "Allows {}; any other method is `405` `method_not_allowed` with `Allow: {}` \
                 (response `MethodNotAllowed`).",
                allowed.join(", "),
                allowed.join(", ")
            ));
        }
        let gets: std::collections::HashSet<String> = api
            .paths
            .paths
            .values()
            .filter_map(|item| item.get.as_ref()?.operation_id.clone())
            .collect();
        for item in api.paths.paths.values_mut() {
            let operations = [&mut item.post, &mut item.put, &mut item.get]
                .into_iter()
                .flatten();
            for operation in operations {
                for response in operation.responses.responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let twins: Vec<_> = response
                        .links
                        .iter()
                        .filter_map(|(name, link)| match link {
                            RefOr::T(link) if gets.contains(&link.operation_id) => {
                                let mut twin = link.clone();
                                twin.operation_id = format!("{}_head", link.operation_id);
                                Some((format!("{name}Head"), RefOr::T(twin)))
                            }
                            _ => None,
                        })
                        .collect();
                    response.links.extend(twins);
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
