//! `POST /api/v1/activities/{activity_id}/purchase`: buy now.
//!
//! Validation happens before anything touches Redis (I5); then one call to the Lua gate
//! decides the purchase (I1–I3), and the answer maps each of the gate's outcomes to the
//! spec's status and code.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::Deserialize;

use super::body::{parse_json, read_limited, PURCHASE_BODY_LIMIT};
use super::views::OrderView;
use crate::auth::Buyer;
use crate::domain::{ActivityId, Quantity};
use crate::error::ApiError;
use crate::gate::{Gate, GateOutcome, OrderRecord, PurchaseAttempt};
use crate::idempotency::{IdempotencyKey, NextAction};
use crate::ids::IdGenerator;
use crate::store::entity::activity;

/// Optional purchase body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    /// 1 ≤ quantity ≤ the activity's `per_user_limit`; default 1.
    pub quantity: Option<i64>,
}

/// Buy now.
#[utoipa::path(
    post,
    path = "/api/v1/activities/{activity_id}/purchase",
    params(
        ("activity_id" = String, Path, description = "activity id"),
        ("Idempotency-Key" = String, Header, description = "1–64 of [A-Za-z0-9_.:-]"),
    ),
    request_body(content = Option<PurchaseRequest>, description = "optional; empty means quantity 1"),
    responses(
        (status = 201, description = "order accepted (or replayed: `Idempotent-Replayed: true`)", body = OrderView),
        (status = 400, description = "idempotency_key_missing / idempotency_key_invalid / invalid_request"),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "activity_not_found"),
        (status = 409, description = "activity_not_started / activity_ended / already_purchased / sold_out"),
        (status = 413, description = "payload_too_large"),
        (status = 422, description = "idempotency_key_reused"),
        (status = 503, description = "unavailable"),
    ),
    security(("buyer_jwt" = []))
)]
pub async fn purchase(
    req: HttpRequest,
    path: web::Path<String>,
    Buyer(user): Buyer,
    payload: web::Payload,
    gate: web::Data<Gate>,
    ids: web::Data<IdGenerator>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let key =
        IdempotencyKey::from_header(req.headers().get("idempotency-key").map(|v| v.as_bytes()))?;
    let activity = ActivityId::parse(&path).ok_or(ApiError::ActivityNotFound)?;
    let body = read_limited(&req, payload, PURCHASE_BODY_LIMIT).await?;
    let quantity = match parse_json::<PurchaseRequest>(&body)?.and_then(|b| b.quantity) {
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
    metrics::counter!("seckill_purchase_total", "outcome" => outcome.label()).increment(1);
    tracing::debug!(%activity, %user, outcome = outcome.label(), "purchase decided");

    let (order, next) =
        match outcome {
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
            GateOutcome::BacklogFull => return Err(ApiError::Unavailable(
                "orders are waiting to be written to the database; the sale resumes when they are"
                    .into(),
            )),
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
