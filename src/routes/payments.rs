//! Paying an order: the one-time payment token, the pay request, the provider's callback.
//!
//! The order of checks of the pay request is the contract's (SPEC "After the purchase"):
//! headers; the same idempotency key again (the first answer, whatever happened since); the
//! token (used by another request, or unknown); then the order's state. The token is only
//! consumed once all of these pass, so a refused request leaves a live token usable.

use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, SubsecRound, Utc};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::Deserialize;

use super::body::{check_media_type, read_limited};
use super::orders::own_stored_order;
use super::views::{CallbackView, PaymentTokenView, PaymentView};
use crate::auth::Buyer;
use crate::domain::parse_decimal_u64;
use crate::error::ApiError;
use crate::gate::{Gate, PaymentToken, TokenState};
use crate::idempotency::IdempotencyKey;
use crate::lifecycle::{
    self, CallbackError, CallbackRefusal, PaymentRecorded, TransitionError, VerifiedCallback,
};
use crate::payment::signature;
use crate::payment::wire::Callback;
use crate::payment::ProviderClient;
use crate::snowflake::IdGenerator;
use crate::store::entity::{order, payment};

/// What the payment routes need besides the gate and the database (app data).
#[derive(Clone)]
pub struct PaymentContext {
    pub provider: ProviderClient,
    pub webhook_secret: String,
    /// Longest life of a payment token.
    pub token_ttl: Duration,
    /// How long a consumed token's record is kept (the idempotency TTL).
    pub used_token_ttl_secs: u64,
}

/// Largest callback body read.
const CALLBACK_BODY_LIMIT: usize = 4 * 1024;

/// A one-time token for paying the caller's order.
///
/// While a token is live, asking again answers the same token (`200`): a page reload or a
/// double click never makes a second one.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{order_id}/payment-token",
    params(
        ("order_id" = String, Path, description = "The order id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
    ),
    responses(
        (status = 201, description = "A new token.", body = PaymentTokenView),
        (status = 200, description = "The token issued before, still live.", body = PaymentTokenView),
        (status = 400, description = "`invalid_request` — the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`order_not_found` — no order with this id belongs to the caller (another user's order answers 404).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_ready`, `order_paid`, `order_closed`, `payment_in_progress` — the order is `pending`, not stored yet (retry after `Retry-After`); it is paid; it is `cancelled`, `expired`, `rejected` or past its payment deadline; a payment of it waits for the provider.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("buyer_jwt" = []))
)]
pub async fn payment_token(
    path: web::Path<String>,
    Buyer(user): Buyer,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
    ctx: web::Data<PaymentContext>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_decimal_u64(&path).ok_or(ApiError::OrderNotFound)?;
    let row = own_stored_order(&gate, &db, user, order_id).await?;
    let now = Utc::now();
    let left = payable(&db, &row, now).await?;
    let ttl = left.min(ctx.token_ttl);
    let issued = gate
        .issue_payment_token(
            crate::domain::ActivityId::new(row.activity_id),
            order_id,
            ttl.num_milliseconds(),
        )
        .await?;
    let view = PaymentTokenView {
        payment_token: issued.token.as_str().to_owned(),
        // To the millisecond, like every other time of the API (Redis keeps the TTL in ms).
        expires_at: (now + Duration::milliseconds(issued.ttl_ms.max(0))).trunc_subsecs(3),
    };
    Ok(if issued.new {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// Whether a payment may start for this order now; the time left until its deadline.
async fn payable(
    db: &DatabaseConnection,
    row: &order::Model,
    now: chrono::DateTime<Utc>,
) -> Result<Duration, ApiError> {
    if let Some(refused) = not_payable(row) {
        return Err(refused);
    }
    if lifecycle::has_processing_payment(db, row.id).await? {
        return Err(ApiError::PaymentInProgress);
    }
    lifecycle::time_left(row.payment_deadline, now)
        .ok_or_else(|| ApiError::OrderClosed(order::STATUS_EXPIRED.into()))
}

/// The refusal for an order that is no longer `created` (`order_paid`, `order_closed`).
fn not_payable(row: &order::Model) -> Option<ApiError> {
    lifecycle::closed_refusal(row).map(|r| TransitionError::Refused(r).into())
}

/// `payment_token_used`, naming the payment the token was consumed for, unless that payment
/// will never exist: the request that consumed the token lost the order to a cancel or an
/// expiry before it could record its payment. Then the order's state, read again now (the
/// row read at the start of this request may be older than the close), is the answer.
async fn token_used(
    db: &DatabaseConnection,
    row: &order::Model,
    payment_id: u64,
) -> Result<ApiError, ApiError> {
    if lifecycle::payment_exists(db, payment_id).await? {
        return Ok(ApiError::PaymentTokenUsed { payment_id });
    }
    let now = order::Entity::find_by_id(row.id).one(db).await?;
    Ok(now
        .as_ref()
        .and_then(not_payable)
        .unwrap_or(ApiError::PaymentTokenUsed { payment_id }))
}

/// The `Payment-Token` header: exactly one.
fn token_header(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all("payment-token");
    let first = values.next().ok_or(ApiError::PaymentTokenMissing)?;
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "the Payment-Token header was sent more than once".into(),
        ));
    }
    first.to_str().map_err(|_| ApiError::PaymentTokenInvalid)
}

/// Pay the caller's order with a payment token.
///
/// Records a payment (`processing`) and asks the payment provider to charge it; the
/// provider's callback settles it, and the order becomes `paid`. The same
/// `Idempotency-Key` again answers the first `202`, whatever happened since.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{order_id}/pay",
    params(
        ("order_id" = String, Path, description = "The order id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
        ("Payment-Token" = String, Header, description = "The token from `POST …/payment-token`, sent once."),
        ("Idempotency-Key" = String, Header, description = "1 to 64 characters of `[A-Za-z0-9_.:-]`, sent once; scoped per order.", pattern = "^[A-Za-z0-9_.:-]{1,64}$"),
    ),
    responses(
        (status = 202, description = "The payment started (or, with `Idempotent-Replayed: true`, the answer to the first request with this key).", body = PaymentView,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replay."))),
        (status = 400, description = "`payment_token_missing`, `idempotency_key_missing`, `idempotency_key_invalid`, `invalid_request` — a header is absent, malformed or sent more than once (also `Authorization`).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`order_not_found` — no order with this id belongs to the caller.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`payment_token_used`, `payment_token_invalid`, `order_paid`, `order_closed`, `payment_in_progress` — the token was consumed by another request (its `payment_id` is in the problem); the token is unknown, expired or another order's (that one stays usable); the order is paid; it is `cancelled`, `expired`, `rejected` or past its deadline; another payment of it waits for the provider.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("buyer_jwt" = []))
)]
pub async fn pay(
    req: HttpRequest,
    path: web::Path<String>,
    Buyer(user): Buyer,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
    ids: web::Data<IdGenerator>,
    ctx: web::Data<PaymentContext>,
) -> Result<HttpResponse, ApiError> {
    let presented = token_header(req.headers())?;
    let key = IdempotencyKey::from_headers(req.headers())?;
    let order_id = parse_decimal_u64(&path).ok_or(ApiError::OrderNotFound)?;
    let row = match own_stored_order(&gate, &db, user, order_id).await {
        Ok(row) => row,
        // A pending order has no token yet: whatever was presented is not its token.
        Err(ApiError::OrderNotReady) => return Err(ApiError::PaymentTokenInvalid),
        Err(e) => return Err(e),
    };
    if let Some(p) = lifecycle::payment_for_key(db.get_ref(), order_id, key.as_str()).await? {
        return Ok(accepted(&p, true));
    }
    let token = PaymentToken::parse(presented).ok_or(ApiError::PaymentTokenInvalid)?;
    let activity = crate::domain::ActivityId::new(row.activity_id);
    // The token first (without consuming it), then the order's state.
    let resumed = match token_verdict(
        gate.peek_payment_token(activity, order_id, &token).await?,
        &key,
    ) {
        Err(ApiError::PaymentTokenUsed { payment_id }) => {
            return Err(token_used(&db, &row, payment_id).await?)
        }
        verdict => verdict?,
    };
    if let Err(refused) = payable(&db, &row, Utc::now()).await {
        // A copy of this request (the same key: a double click, a retry) may have recorded
        // its payment since the look-up above; that payment is this request's answer.
        if let Some(p) = lifecycle::payment_for_key(db.get_ref(), order_id, key.as_str()).await? {
            return Ok(accepted(&p, true));
        }
        // Another request may have consumed the token (and started its payment) since the
        // peek: the token's answer comes first, as always.
        if resumed.is_none() {
            let now_state = gate.peek_payment_token(activity, order_id, &token).await?;
            if let Err(ApiError::PaymentTokenUsed { payment_id }) = token_verdict(now_state, &key) {
                return Err(token_used(&db, &row, payment_id).await?);
            }
        }
        return Err(refused);
    }
    let mut consumed_here = false;
    let payment_id = match resumed {
        Some(id) => id,
        None => {
            let id = ids
                .next_id()
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            let consumed = gate
                .consume_payment_token(
                    activity,
                    order_id,
                    &token,
                    id,
                    &key,
                    ctx.used_token_ttl_secs,
                )
                .await?;
            // `Live`: this request consumed it, with `id`; used under this key: a concurrent
            // copy of this request did, and its payment is this one.
            let resumed = token_verdict(consumed, &key)?;
            consumed_here = resumed.is_none();
            resumed.unwrap_or(id)
        }
    };
    match lifecycle::record_payment(&db, order_id, user, payment_id, key.as_str()).await {
        Ok(PaymentRecorded::New(p)) => {
            crate::crash_point::hit("pay.after_record");
            let (provider, db) = (ctx.provider.clone(), db.get_ref().clone());
            let (id, amount) = (p.id, p.amount_cents);
            tokio::spawn(async move { lifecycle::charge(&provider, &db, id, amount).await });
            Ok(accepted(&p, false))
        }
        Ok(PaymentRecorded::Replay(p)) => Ok(accepted(&p, true)),
        Err(refused @ TransitionError::Refused(_)) => {
            if consumed_here {
                gate.forget_payment_token_use(activity, order_id, &token)
                    .await?;
            }
            Err(refused.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// What a token's state means for a pay request with `key`: `None` when the token is live
/// (or was consumed just now by this request); the payment id when this very request (same
/// key) consumed it before — a retry after a crash or a lost answer, or a concurrent copy —
/// and goes on with that payment; an error when another request used it or it is not valid.
fn token_verdict(state: TokenState, key: &IdempotencyKey) -> Result<Option<u64>, ApiError> {
    match state {
        TokenState::Live => Ok(None),
        TokenState::Used(u) if u.idempotency_key == key.as_str() => Ok(Some(u.payment_id)),
        TokenState::Used(u) => Err(ApiError::PaymentTokenUsed {
            payment_id: u.payment_id,
        }),
        TokenState::Invalid => Err(ApiError::PaymentTokenInvalid),
    }
}

fn accepted(p: &payment::Model, replay: bool) -> HttpResponse {
    let mut resp = HttpResponse::Accepted();
    if replay {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp.json(PaymentView {
        payment_id: p.id,
        order_id: p.order_id,
        amount_cents: p.amount_cents,
        status: payment::STATUS_PROCESSING,
    })
}

/// The payment provider's callback (signed).
///
/// The signature is checked over the raw body before anything is parsed. Every callback
/// already applied is answered `200` again, so the provider stops retrying; its effects
/// happen once.
#[utoipa::path(
    post,
    path = "/api/v1/payments/callback",
    params(
        ("Seckill-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" with payment.webhook_secret>`; `t` within 300 s of the service's clock."),
    ),
    request_body(content = CallbackBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied now, or before.", body = CallbackView),
        (status = 400, description = "`invalid_request` — the signed body is not a callback (not JSON, unknown fields, a bad status or amount).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_signature` — the signature is missing, malformed, wrong, or its timestamp is more than 300 s away; nothing changed.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`payment_not_found` — no such payment.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, response = super::openapi::RequestTimeout),
        (status = 409, description = "`provider_txn_conflict` — the transaction id is recorded on another payment.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, description = "`amount_mismatch` — the amount differs from the payment's; the payment is unchanged.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("callback_signature" = []))
)]
pub async fn callback(
    req: HttpRequest,
    payload: web::Payload,
    db: web::Data<DatabaseConnection>,
    ids: web::Data<IdGenerator>,
    ctx: web::Data<PaymentContext>,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&req, payload, CALLBACK_BODY_LIMIT).await?;
    let mut sigs = req.headers().get_all(signature::HEADER);
    let header = sigs.next().map(|v| v.to_str().unwrap_or(""));
    let verified = if sigs.next().is_some() {
        Err(signature::SignatureError::Malformed)
    } else {
        signature::verify(&ctx.webhook_secret, header, &body, Utc::now().timestamp())
    };
    if let Err(e) = verified {
        metrics::counter!("seckill_payment_callbacks_total", "outcome" => "invalid_signature")
            .increment(1);
        return Err(ApiError::InvalidSignature(e.to_string()));
    }
    // After the signature: an unsigned request learns nothing, not even this.
    check_media_type(&req)?;
    let cb = parse_callback(&body).inspect_err(|_| {
        metrics::counter!("seckill_payment_callbacks_total", "outcome" => "invalid").increment(1);
    })?;
    let result = lifecycle::apply_callback(&db, &ids, &cb, Utc::now()).await;
    let label = match &result {
        Ok((outcome, _)) => outcome.label(),
        Err(CallbackError::Refused(CallbackRefusal::UnknownPayment)) => "unknown_payment",
        Err(CallbackError::Refused(CallbackRefusal::AmountMismatch { .. })) => "amount_mismatch",
        Err(CallbackError::Refused(CallbackRefusal::TxnConflict { .. })) => "txn_conflict",
        Err(_) => "error",
    };
    metrics::counter!("seckill_payment_callbacks_total", "outcome" => label).increment(1);
    match result {
        Ok((outcome, p)) => Ok(HttpResponse::Ok().json(CallbackView {
            payment_id: p.id,
            status: p.status,
            outcome: outcome.label(),
        })),
        Err(CallbackError::Refused(CallbackRefusal::UnknownPayment)) => {
            Err(ApiError::PaymentNotFound)
        }
        Err(CallbackError::Refused(CallbackRefusal::AmountMismatch { expected, got })) => {
            tracing::error!(payment_id = cb.payment_id, expected, got, txn = %cb.provider_txn_id,
                "payment callback with another amount than the payment's: not applied");
            Err(ApiError::AmountMismatch { expected, got })
        }
        Err(CallbackError::Refused(CallbackRefusal::TxnConflict { payment_id })) => {
            tracing::error!(payment_id = cb.payment_id, other = payment_id, txn = %cb.provider_txn_id,
                "a provider transaction id already recorded on another payment");
            Err(ApiError::ProviderTxnConflict { payment_id })
        }
        Err(CallbackError::Db(e)) => Err(e.into()),
        Err(CallbackError::Id(e)) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// The callback's body, as documented (the wire type is [`Callback`]).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: the body is parsed as `wire::Callback`
pub struct CallbackBody {
    #[schema(pattern = "^[1-9][0-9]{0,19}$")]
    payment_id: String,
    #[schema(min_length = 1, max_length = 128)]
    provider_txn_id: String,
    #[schema(pattern = "^(succeeded|failed)$")]
    status: String,
    #[schema(minimum = 0)]
    amount_cents: i64,
}

fn parse_callback(body: &[u8]) -> Result<VerifiedCallback, ApiError> {
    let cb: Callback = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidRequest(format!("not a payment callback: {e}")))?;
    let payment_id = parse_decimal_u64(&cb.payment_id).ok_or(ApiError::PaymentNotFound)?;
    if cb.provider_txn_id.is_empty() || cb.provider_txn_id.len() > 128 {
        return Err(ApiError::InvalidRequest(
            "provider_txn_id must be 1 to 128 bytes".into(),
        ));
    }
    if cb.amount_cents < 0 {
        return Err(ApiError::InvalidRequest(
            "amount_cents must not be negative".into(),
        ));
    }
    Ok(VerifiedCallback {
        payment_id,
        provider_txn_id: cb.provider_txn_id,
        status: cb.status,
        amount_cents: cb.amount_cents,
    })
}
