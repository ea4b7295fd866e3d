//! `POST /api/v1/activities/{activity_id}/purchase`: buy now.
//!
//! Validation happens before anything touches Redis (I5); then one call to the Lua gate
//! decides the purchase (I1–I3), and the answer maps each of the gate's outcomes to the
//! spec's status and code.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::Deserialize;

use super::body::{read_json, PURCHASE_BODY_LIMIT};
use super::rate_limit::RateLimits;
use super::tally::PurchaseTally;
use super::views::OrderView;
use crate::auth::Buyer;
use crate::domain::{ActivityId, Quantity};
use crate::error::ApiError;
use crate::gate::{Gate, GateOutcome, OrderRecord, PurchaseAttempt};
use crate::idempotency::{IdempotencyKey, NextAction};
use crate::snowflake::IdGenerator;
use crate::store::entity::activity;

/// Optional purchase body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quantity": 1}))]
pub struct PurchaseRequest {
    /// 1 ≤ quantity ≤ the activity's `per_user_limit` (at most 1000; above the activity's
    /// own limit: `400`); absent means 1, `null` is refused (`400`).
    #[serde(default, deserialize_with = "crate::domain::json_int::present")]
    #[schema(value_type = i64, required = false, minimum = 1, maximum = 1000)]
    pub quantity: Option<i64>,
}

/// Buy now.
///
/// The same user sending the same `Idempotency-Key` with the same payload again gets the
/// first answer again (`201`, the same `order_id`, `Idempotent-Replayed: true`) for the key's
/// lifetime (`idempotency.ttl_secs`), also after a sell-out or the end of the sale. Keys are
/// scoped per (user, activity). Only accepted orders leave a record: a rejected attempt is
/// decided afresh when retried.
#[utoipa::path(
    post,
    path = "/api/v1/activities/{activity_id}/purchase",
    params(
        ("activity_id" = String, Path, description = "The activity id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
        ("Idempotency-Key" = String, Header, description = "1 to 64 characters of `[A-Za-z0-9_.:-]`, sent once; scoped per (user, activity).", pattern = "^[A-Za-z0-9_.:-]{1,64}$"),
    ),
    request_body(content = Option<PurchaseRequest>, content_type = "application/json", description = "Optional: an empty body means quantity 1 (and needs no `Content-Type`)."),
    responses(
        (status = 201, description = "The order was accepted (status `pending`), or this is a replay of the accepted answer to the same key and payload.", body = OrderView,
            headers(
                ("Location" = String, description = "`/api/v1/orders/{order_id}`."),
                ("Idempotent-Replayed" = String, description = "`true` when this answer is a replay of an earlier one; absent otherwise."),
            ),
            links(
                ("GetOrder" = (operation_id = "get_order", parameters(("order_id" = "$response.body#/order_id")), description = "The order just accepted.")),
                ("GetPurchase" = (operation_id = "get_purchase", parameters(("activity_id" = "$response.body#/activity_id")), description = "The same order, by activity.")),
            )),
        (status = 400, description = "`idempotency_key_missing`, `idempotency_key_invalid`, `invalid_request` — the `Idempotency-Key` header is absent, malformed or sent more than once; the body is not a JSON object, has unknown fields, or its `quantity` is not an integer from 1 to the activity's `per_user_limit` (`null` included); the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`activity_not_found` — no activity with this id (also any id that is not decimal without a leading zero).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, response = super::openapi::RequestTimeout),
        (status = 409, description = "`activity_not_started`, `activity_ended`, `already_purchased`, `sold_out` — before `starts_at`; after `ends_at`; the user already has an order in this activity (under another key; its id is in `order_id`); not enough stock left.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, description = "`idempotency_key_reused` — this user already used this key in this activity with a different payload.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("buyer_jwt" = []))
)]
pub async fn purchase(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    gate: web::Data<Gate>,
    ids: web::Data<IdGenerator>,
    db: web::Data<DatabaseConnection>,
    tally: web::Data<PurchaseTally>,
) -> Result<HttpResponse, ApiError> {
    // The address's limit before authentication (a flood of bad tokens is limited too),
    // the user's after it; both before anything touches Redis.
    let limits = RateLimits::of(&req);
    if let Some(l) = limits {
        l.check_address(&req)?;
    }
    let Buyer(user) = Buyer::of(&req)?;
    if let Some(l) = limits {
        l.check_user(user)?;
    }
    let key = IdempotencyKey::from_headers(req.headers())?;
    let activity = ActivityId::parse(&path).ok_or(ApiError::ActivityNotFound)?;
    let body = read_json::<PurchaseRequest>(&req, payload, PURCHASE_BODY_LIMIT).await?;
    let quantity = match body.and_then(|b| b.quantity) {
        Some(q) => Quantity::parse(q).map_err(ApiError::InvalidRequest)?,
        None => Quantity::ONE,
    };
    let candidate_order_id = ids
        .next_id()
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;

    let outcome = gate
        .purchase(&PurchaseAttempt {
            activity,
            user,
            quantity,
            key: &key,
            candidate_order_id,
        })
        .await?;
    crate::telemetry::count_purchase(outcome.label());
    // Not for ids that name no activity: anyone could fill the tally with made-up ones.
    if !matches!(outcome, GateOutcome::NotFound) {
        tally.count(activity, outcome.label());
    }
    tracing::debug!(%activity, %user, outcome = outcome.label(), "purchase decided");

    let (order, next) = match outcome {
        GateOutcome::Accepted { order, .. } => (order, NextAction::Processed),
        GateOutcome::Replay(order) => (order, NextAction::Replay),
        GateOutcome::KeyReused => return Err(ApiError::IdempotencyKeyReused),
        GateOutcome::NotFound => return Err(missing_state(&db, activity).await),
        GateOutcome::QuantityOverLimit { limit } => {
            return Err(ApiError::InvalidRequest(format!(
                "quantity {} is above this activity's per_user_limit of {limit}",
                quantity.get()
            )))
        }
        GateOutcome::NotStarted => return Err(ApiError::ActivityNotStarted),
        GateOutcome::Ended => return Err(ApiError::ActivityEnded),
        GateOutcome::AlreadyPurchased(order) => {
            return Err(ApiError::AlreadyPurchased {
                order_id: order.order_id,
            })
        }
        GateOutcome::NotSeeded => {
            return Err(ApiError::Unavailable(
                "the activity's stock is not seeded".into(),
            ))
        }
        GateOutcome::SoldOut { .. } => return Err(ApiError::SoldOut),
        GateOutcome::BacklogFull => {
            return Err(ApiError::Unavailable(
                "orders are waiting to be written to the database; the sale resumes when they are"
                    .into(),
            ))
        }
        GateOutcome::NotReplicated { reached } => return Err(ApiError::not_replicated(reached)),
    };
    Ok(accepted_response(activity, user.get(), &order, next))
}

/// The `201` of an accepted purchase and of its replays: the same body every time.
fn accepted_response(
    activity: ActivityId,
    user_id: u64,
    order: &OrderRecord,
    next: NextAction,
) -> HttpResponse {
    let mut resp = HttpResponse::Created();
    resp.insert_header((
        header::LOCATION,
        format!("/api/v1/orders/{}", order.order_id),
    ));
    if next == NextAction::Replay {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp.json(OrderView {
        order_id: order.order_id,
        activity_id: activity.get(),
        user_id,
        quantity: order.quantity,
        status: "pending".into(),
        created_at: None,
        amount_cents: None,
        payment_deadline: None,
        paid_at: None,
    })
}

/// Redis has no state for the activity: unknown (`404`), or known to MySQL but not loaded
/// in Redis (Redis lost its data, or the seed failed): not sellable, `503`.
async fn missing_state(db: &DatabaseConnection, activity: ActivityId) -> ApiError {
    match activity::Entity::find_by_id(activity.get()).one(db).await {
        Ok(None) => ApiError::ActivityNotFound,
        Ok(Some(_)) => ApiError::Unavailable(
            "the activity's sale state is not loaded in Redis; an operator must re-seed it".into(),
        ),
        Err(e) => e.into(),
    }
}
