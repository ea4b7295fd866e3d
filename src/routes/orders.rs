//! Order lookups: MySQL first (the durable status), then the gate's record in Redis for an
//! order accepted but not yet persisted (`pending`).

use actix_web::{web, HttpResponse};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::views::{from_ms, OrderView};
use crate::auth::Buyer;
use crate::domain::{parse_decimal_u64, ActivityId, UserId};
use crate::error::ApiError;
use crate::gate::{Gate, OrderRecord};
use crate::store::entity::{order, utc};

/// The caller's own order. Another user's order answers 404, never 403.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{order_id}",
    params(("order_id" = String, Path, description = "order id")),
    responses(
        (status = 200, body = OrderView),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "order_not_found"),
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
    let row = order::Entity::find_by_id(order_id)
        .filter(order::Column::UserId.eq(user.get()))
        .one(db.get_ref())
        .await?;
    if let Some(row) = row {
        return Ok(HttpResponse::Ok().json(stored(row)));
    }
    match gate.find_order(user, order_id).await? {
        Some((activity, record)) => Ok(HttpResponse::Ok().json(pending(activity, user, &record))),
        None => Err(ApiError::OrderNotFound),
    }
}

/// The caller's order in this activity.
#[utoipa::path(
    get,
    path = "/api/v1/activities/{activity_id}/purchase",
    params(("activity_id" = String, Path, description = "activity id")),
    responses(
        (status = 200, body = OrderView),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "order_not_found"),
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
        Some(record) => Ok(HttpResponse::Ok().json(pending(activity, user, &record))),
        None => Err(ApiError::OrderNotFound),
    }
}

fn stored(row: order::Model) -> OrderView {
    OrderView {
        order_id: row.id,
        activity_id: row.activity_id,
        user_id: row.user_id,
        quantity: row.quantity.max(0) as u32,
        status: row.status,
        created_at: Some(utc(row.created_at)),
    }
}

fn pending(activity: ActivityId, user: UserId, record: &OrderRecord) -> OrderView {
    OrderView {
        order_id: record.order_id,
        activity_id: activity.get(),
        user_id: user.get(),
        quantity: record.quantity,
        status: "pending".into(),
        created_at: Some(from_ms(record.created_ms)),
    }
}
