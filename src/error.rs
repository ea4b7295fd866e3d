//! Every error a client can see, mapped to HTTP in one place.
//!
//! Errors are `application/problem+json` (RFC 9457) with a stable machine-readable `code`.
//! Handlers return `Result<_, ApiError>`; nothing else writes an error response, except
//! [`not_found_fallback`] for paths no route matches.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// A failure answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("the Idempotency-Key header is required")]
    IdempotencyKeyMissing,
    #[error("{0}")]
    IdempotencyKeyInvalid(&'static str),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("a request body must be application/json, got {0}")]
    UnsupportedMediaType(String),
    #[error("the request body did not arrive within {0} ms")]
    RequestTimeout(u64),
    #[error("this resource allows only {0}")]
    MethodNotAllowed(&'static str),
    #[error("too many requests from this {scope}; retry after {retry_after_secs} s")]
    RateLimited {
        scope: &'static str,
        retry_after_secs: u64,
    },
    #[error("no such activity")]
    ActivityNotFound,
    #[error("no such order")]
    OrderNotFound,
    #[error("no such resource")]
    NotFound,
    #[error("the sale has not started yet")]
    ActivityNotStarted,
    #[error("the sale has ended")]
    ActivityEnded,
    #[error("you already have an order in this activity")]
    AlreadyPurchased { order_id: u64 },
    #[error("not enough stock left")]
    SoldOut,
    #[error("the stock cannot be set below the {accepted} units already sold")]
    StockBelowSold { accepted: i64 },
    #[error("the order is not stored yet; retry in a moment")]
    OrderNotReady,
    #[error("the order is paid")]
    OrderPaid,
    #[error("the order is {0}")]
    OrderClosed(String),
    #[error("a payment of this order is waiting for the payment provider")]
    PaymentInProgress,
    #[error("the Payment-Token header is required")]
    PaymentTokenMissing,
    #[error("this payment token was already used")]
    PaymentTokenUsed { payment_id: u64 },
    #[error("the payment token is unknown, expired, or not this order's")]
    PaymentTokenInvalid,
    #[error("{0}")]
    InvalidSignature(String),
    #[error("no such payment")]
    PaymentNotFound,
    #[error("the callback's amount {got} differs from the payment's {expected}")]
    AmountMismatch { expected: i64, got: i64 },
    #[error("this provider transaction is recorded on payment {payment_id}")]
    ProviderTxnConflict { payment_id: u64 },
    #[error("service temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The stable `code` of the problem document.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::IdempotencyKeyMissing => "idempotency_key_missing",
            Self::IdempotencyKeyInvalid(_) => "idempotency_key_invalid",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RequestTimeout(_) => "request_timeout",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::ActivityNotFound => "activity_not_found",
            Self::OrderNotFound => "order_not_found",
            Self::NotFound => "not_found",
            Self::ActivityNotStarted => "activity_not_started",
            Self::ActivityEnded => "activity_ended",
            Self::AlreadyPurchased { .. } => "already_purchased",
            Self::SoldOut => "sold_out",
            Self::StockBelowSold { .. } => "stock_below_sold",
            Self::OrderNotReady => "order_not_ready",
            Self::OrderPaid => "order_paid",
            Self::OrderClosed(_) => "order_closed",
            Self::PaymentInProgress => "payment_in_progress",
            Self::PaymentTokenMissing => "payment_token_missing",
            Self::PaymentTokenUsed { .. } => "payment_token_used",
            Self::PaymentTokenInvalid => "payment_token_invalid",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::PaymentNotFound => "payment_not_found",
            Self::AmountMismatch { .. } => "amount_mismatch",
            Self::ProviderTxnConflict { .. } => "provider_txn_conflict",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self.status_code() {
            StatusCode::BAD_REQUEST => "Bad Request",
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::NOT_FOUND => "Not Found",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "Content Too Large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported Media Type",
            StatusCode::REQUEST_TIMEOUT => "Request Timeout",
            StatusCode::METHOD_NOT_ALLOWED => "Method Not Allowed",
            StatusCode::TOO_MANY_REQUESTS => "Too Many Requests",
            StatusCode::UNPROCESSABLE_ENTITY => "Unprocessable Content",
            StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }

    /// An accepted order that fewer than `redis.replica_acks` replicas confirmed in time.
    pub fn not_replicated(reached: u32) -> Self {
        Self::Unavailable(format!(
            "the purchase reached {reached} Redis replica(s) in time, fewer than required; \
             retry with the same Idempotency-Key for its answer"
        ))
    }

    /// Wraps any unexpected failure; logged in full, answered as a bare 500.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }
}

/// Redis failures on the request path are answered 503: nothing was recorded (or, for a
/// timed-out script, the client's retry with the same key is answered from the record).
impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "redis unavailable");
        Self::Unavailable("redis unreachable".into())
    }
}

/// An order only Redis holds that cannot be shown yet is `503`, as its purchase was.
impl From<crate::gate::LookupError> for ApiError {
    fn from(e: crate::gate::LookupError) -> Self {
        match e {
            crate::gate::LookupError::Redis(e) => e.into(),
            crate::gate::LookupError::NotReplicated { reached } => Self::Unavailable(format!(
                "the order reached {reached} Redis replica(s) in time, fewer than required; \
                 ask again shortly"
            )),
        }
    }
}

/// MySQL failures: a connection problem is `503` (retry later); anything else is a bug or
/// a schema mismatch, `500`.
impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crate::store::is_connection_error(&e) {
            tracing::warn!(error = %e, "database unreachable");
            Self::Unavailable("database unreachable".into())
        } else {
            Self::Internal(e.into())
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_string_id")]
    order_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_string_id")]
    payment_id: Option<u64>,
}

mod opt_string_id {
    pub fn serialize<S: serde::Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.collect_str(id),
            None => s.serialize_none(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            Self::PaymentTokenMissing => StatusCode::BAD_REQUEST,
            Self::OrderNotReady
            | Self::OrderPaid
            | Self::OrderClosed(_)
            | Self::PaymentInProgress
            | Self::PaymentTokenUsed { .. }
            | Self::PaymentTokenInvalid
            | Self::ProviderTxnConflict { .. } => StatusCode::CONFLICT,
            Self::PaymentNotFound => StatusCode::NOT_FOUND,
            Self::AmountMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyMissing
            | Self::IdempotencyKeyInvalid(_)
            | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ActivityNotFound | Self::OrderNotFound | Self::NotFound => StatusCode::NOT_FOUND,
            Self::ActivityNotStarted
            | Self::ActivityEnded
            | Self::AlreadyPurchased { .. }
            | Self::SoldOut
            | Self::StockBelowSold { .. } => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(e) = self {
            tracing::error!(error = ?e, "internal error");
        }
        let status = self.status_code();
        let code = self.code();
        let body = Problem {
            kind: format!("urn:seckill:problem:{code}"),
            title: self.title(),
            status: status.as_u16(),
            code,
            detail: self.to_string(),
            order_id: match self {
                Self::AlreadyPurchased { order_id } => Some(*order_id),
                _ => None,
            },
            payment_id: match self {
                Self::PaymentTokenUsed { payment_id } => Some(*payment_id),
                _ => None,
            },
        };
        let mut resp = HttpResponse::build(status);
        resp.content_type("application/problem+json");
        match self {
            Self::Unavailable(_) | Self::OrderNotReady => {
                resp.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::RateLimited {
                retry_after_secs, ..
            } => {
                resp.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::MethodNotAllowed(allow) => {
                resp.insert_header((header::ALLOW, *allow));
            }
            // The rest of a body that came too slowly is not worth reading: the connection
            // is closed after the answer instead of kept alive.
            Self::RequestTimeout(_) => {
                resp.force_close();
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(body)
    }
}

/// A refused transition, answered from the order as it now is.
impl From<crate::lifecycle::TransitionError> for ApiError {
    fn from(e: crate::lifecycle::TransitionError) -> Self {
        use crate::lifecycle::{Refusal, TransitionError};
        match e {
            TransitionError::Refused(Refusal::NotFound) => Self::OrderNotFound,
            TransitionError::Refused(Refusal::Paid) => Self::OrderPaid,
            TransitionError::Refused(Refusal::Closed(status)) => Self::OrderClosed(status),
            TransitionError::Refused(Refusal::PaymentInProgress) => Self::PaymentInProgress,
            // Only the sweeper carries a fencing token; a request never does.
            TransitionError::Fenced(f) => Self::internal(f),
            TransitionError::Db(e) => e.into(),
        }
    }
}

/// Default service: paths that match no route get a problem document too.
pub async fn not_found_fallback() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
