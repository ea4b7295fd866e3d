//! Order lookups: MySQL first (the durable status), then the gate's record in Redis for an
//! order accepted but not yet persisted (`pending`).

use actix_web::{web, HttpResponse};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::views::{from_ms, OrderView};
use crate::auth::Buyer;
use crate::domain::{parse_decimal_u64, ActivityId, UserId};
use crate::error::ApiError;
use crate::gate::{Gate, OrderRecord};
use crate::lifecycle;
use crate::store::entity::{order, utc};

/// The caller's own order. Another user's order answers 404, never 403.
///
/// From MySQL once stored, from the gate's record in Redis while `pending`.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{order_id}",
    params(
        ("order_id" = String, Path, description = "The order id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
    ),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 400, description = "`invalid_request` — the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`order_not_found` — no order with this id belongs to the caller (another user's order answers 404, never 403).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("buyer_jwt" = []))
)]
pub async fn get_order(
    path: web::Path<String>,
    Buyer(user): Buyer,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_decimal_u64(&path).ok_or(ApiError::OrderNotFound)?;
    match own_order(&gate, &db, user, order_id).await? {
        Some(OwnOrder::Stored(row)) => Ok(HttpResponse::Ok().json(stored(row))),
        Some(OwnOrder::Pending(activity, record)) => {
            Ok(HttpResponse::Ok().json(pending(&gate, activity, user, &record).await?))
        }
        None => Err(ApiError::OrderNotFound),
    }
}

/// An order of the caller, wherever it is now.
enum OwnOrder {
    /// In MySQL: its status is the truth.
    Stored(order::Model),
    /// Accepted by the gate, not yet stored by the writer.
    Pending(ActivityId, OrderRecord),
}

/// The caller's order with this id: MySQL first, then the gate's record in Redis.
async fn own_order(
    gate: &Gate,
    db: &DatabaseConnection,
    user: UserId,
    order_id: u64,
) -> Result<Option<OwnOrder>, ApiError> {
    let row = order::Entity::find_by_id(order_id)
        .filter(order::Column::UserId.eq(user.get()))
        .one(db)
        .await?;
    if let Some(row) = row {
        return Ok(Some(OwnOrder::Stored(row)));
    }
    Ok(gate
        .find_order(user, order_id)
        .await?
        .map(|(activity, record)| OwnOrder::Pending(activity, record)))
}

/// The caller's order in this activity.
#[utoipa::path(
    get,
    path = "/api/v1/activities/{activity_id}/purchase",
    params(
        ("activity_id" = String, Path, description = "The activity id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
    ),
    responses(
        (status = 200, description = "The caller's order in this activity.", body = OrderView),
        (status = 400, description = "`invalid_request` — the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`order_not_found` — the caller has no order in this activity (or there is no such activity).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("buyer_jwt" = []))
)]
pub async fn get_purchase(
    path: web::Path<String>,
    Buyer(user): Buyer,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let activity = ActivityId::parse(&path).ok_or(ApiError::OrderNotFound)?;
    let row = order::Entity::find()
        .filter(order::Column::ActivityId.eq(activity.get()))
        .filter(order::Column::UserId.eq(user.get()))
        .one(db.get_ref())
        .await?;
    if let Some(row) = row {
        return Ok(HttpResponse::Ok().json(stored(row)));
    }
    match gate.buyer_record(activity, user).await? {
        Some(record) => Ok(HttpResponse::Ok().json(pending(&gate, activity, user, &record).await?)),
        None => Err(ApiError::OrderNotFound),
    }
}

pub(super) fn stored(row: order::Model) -> OrderView {
    OrderView {
        order_id: row.id,
        activity_id: row.activity_id,
        user_id: row.user_id,
        quantity: row.quantity.max(0) as u32,
        status: row.status,
        created_at: Some(utc(row.created_at)),
        amount_cents: Some(row.amount_cents),
        payment_deadline: Some(utc(row.payment_deadline)),
        paid_at: row.paid_at.map(utc),
    }
}

/// A pending order, with the amount and deadline it will be stored with (the writer
/// computes them from the same terms and the same creation time).
async fn pending(
    gate: &Gate,
    activity: ActivityId,
    user: UserId,
    record: &OrderRecord,
) -> Result<OrderView, ApiError> {
    let terms = gate.payment_terms(activity).await?;
    let created_at = from_ms(record.created_ms);
    Ok(OrderView {
        order_id: record.order_id,
        activity_id: activity.get(),
        user_id: user.get(),
        quantity: record.quantity,
        status: "pending".into(),
        created_at: Some(created_at),
        amount_cents: terms.map(|(price, _)| price.saturating_mul(record.quantity.into())),
        payment_deadline: terms.map(|(_, window)| created_at + chrono::Duration::seconds(window)),
        paid_at: None,
    })
}

/// The caller's stored order; for an order not stored yet, `order_not_ready` (it is
/// `pending` in Redis: retry in a moment) or `order_not_found`.
pub(super) async fn own_stored_order(
    gate: &Gate,
    db: &DatabaseConnection,
    user: UserId,
    order_id: u64,
) -> Result<order::Model, ApiError> {
    match own_order(gate, db, user, order_id).await? {
        Some(OwnOrder::Stored(row)) => Ok(row),
        Some(OwnOrder::Pending(..)) => Err(ApiError::OrderNotReady),
        None => Err(ApiError::OrderNotFound),
    }
}

/// Cancel the caller's order: its units go back to the sale.
///
/// Idempotent: cancelling a cancelled order answers it again. The buyer keeps their place
/// in the activity (they cannot buy there again).
#[utoipa::path(
    post,
    path = "/api/v1/orders/{order_id}/cancel",
    params(
        ("order_id" = String, Path, description = "The order id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
    ),
    responses(
        (status = 200, description = "The order, now `cancelled` (also when it was cancelled before).", body = OrderView),
        (status = 400, description = "`invalid_request` — the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`order_not_found` — no order with this id belongs to the caller.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_ready`, `order_paid`, `order_closed`, `payment_in_progress` — the order is `pending`, not stored yet (retry after `Retry-After`); it is paid; it is `expired` or `rejected`, or past its payment deadline (the sweeper expires it within seconds); a payment of it waits for the provider.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("buyer_jwt" = []))
)]
pub async fn cancel_order(
    path: web::Path<String>,
    Buyer(user): Buyer,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_decimal_u64(&path).ok_or(ApiError::OrderNotFound)?;
    own_stored_order(&gate, &db, user, order_id).await?;
    let row = lifecycle::cancel(&db, order_id, user).await?;
    crate::crash_point::hit("cancel.after_commit");
    if row.stock_returned_at.is_none() {
        // The units back on sale now; if Redis fails here, the sweeper repairs it.
        if let Err(e) = lifecycle::finish_close(&gate, &db, &row).await {
            tracing::warn!(order_id, error = %e, "cancelled; units to be returned by the sweeper");
        }
    }
    Ok(HttpResponse::Ok().json(stored(row)))
}
