//! Admin endpoints: create an activity, re-seed its stock, read its figures.
//!
//! MySQL holds the activity row (the durable truth); Redis holds the sale state seeded from
//! it by `lua/seed.lua`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, TransactionTrait,
};

use super::body::{json_body, ADMIN_BODY_LIMIT};
use super::views::AdminActivityView;
use crate::auth::Admin;
use crate::domain::{ActivityId, NewActivity, NewActivityRequest, StockRequest};
use crate::error::ApiError;
use crate::gate::{Gate, SeedOutcome, SeedSpec};
use crate::ids::IdGenerator;
use crate::store::entity::{activity, naive, order, utc};

/// Create an activity and seed its stock.
#[utoipa::path(
    post,
    path = "/api/v1/admin/activities",
    request_body = NewActivityRequest,
    responses(
        (status = 201, body = AdminActivityView),
        (status = 400, description = "invalid_request"),
        (status = 401, description = "unauthorized"),
    ),
    security(("admin_token" = []))
)]
pub async fn create_activity(
    req: HttpRequest,
    _: Admin,
    payload: web::Payload,
    gate: web::Data<Gate>,
    ids: web::Data<IdGenerator>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let request: NewActivityRequest = json_body(&req, payload, ADMIN_BODY_LIMIT).await?;
    let new = NewActivity::try_from(request).map_err(ApiError::InvalidRequest)?;
    let id = ids
        .next_id()
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let now = Utc::now();
    let row = activity::ActiveModel {
        id: Set(id),
        name: Set(new.name),
        total_stock: Set(new.stock),
        sold: Set(0),
        per_user_limit: Set(new.per_user_limit as i32),
        starts_at: Set(naive(new.starts_at)),
        ends_at: Set(naive(new.ends_at)),
        version: Set(0),
        created_at: Set(naive(now)),
        updated_at: Set(naive(now)),
    }
    .insert(db.get_ref())
    .await?;
    // MySQL first: an activity seeded in Redis but absent from MySQL would sell orders the
    // writer cannot store. If the seed fails, the row exists but is not sellable until a
    // `PUT …/stock` seeds it.
    gate.seed(&SeedSpec::from_row(&row, row.total_stock))
        .await?;
    let view = admin_view(&gate, &db, ActivityId::new(id)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/admin/activities/{id}")))
        .json(view))
}

/// Set the activity's total stock and re-seed what remains in Redis.
#[utoipa::path(
    put,
    path = "/api/v1/admin/activities/{activity_id}/stock",
    params(("activity_id" = String, Path, description = "activity id")),
    request_body = StockRequest,
    responses(
        (status = 200, body = AdminActivityView),
        (status = 400, description = "invalid_request"),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "activity_not_found"),
        (status = 409, description = "stock_below_sold"),
    ),
    security(("admin_token" = []))
)]
pub async fn set_stock(
    req: HttpRequest,
    _: Admin,
    path: web::Path<String>,
    payload: web::Payload,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let id = ActivityId::parse(&path).ok_or(ApiError::ActivityNotFound)?;
    let StockRequest { stock } = json_body(&req, payload, ADMIN_BODY_LIMIT).await?;
    let stock = crate::domain::parse_stock(stock).map_err(ApiError::InvalidRequest)?;
    let mut row = find(&db, id).await?;
    if gate.is_paused(id).await? {
        return Err(rebuild_in_progress());
    }
    if gate.snapshot(id).await?.is_none() {
        // Redis lost the sale state: seeding the bare stock would forget who bought (they
        // could buy again) and their idempotency records. Rebuild them from MySQL first.
        crate::recovery::rebuild(&gate, &db, id)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        row = find(&db, id).await?;
    }
    if stock < row.sold {
        return Err(ApiError::StockBelowSold { accepted: row.sold });
    }
    // The writer's oversell guard compares with MySQL's total, Redis sells against its own
    // remaining stock. Order the two writes so that neither ever allows less than the other:
    // raise MySQL before Redis, lower Redis (which refuses below its accepted count) before
    // MySQL.
    if stock >= row.total_stock {
        update_total(&db, id, stock).await?;
        if let Err(e) = seed_or_conflict(&gate, &SeedSpec::from_row(&row, stock)).await {
            // Refused (a rebuild started since the check above, or Redis failed): put the
            // old total back, so that an error changes nothing. Nothing can have been sold
            // against the raise: Redis never saw it.
            update_total(&db, id, row.total_stock).await?;
            return Err(e);
        }
    } else {
        seed_or_conflict(&gate, &SeedSpec::from_row(&row, stock)).await?;
        update_total(&db, id, stock).await?;
    }
    Ok(HttpResponse::Ok().json(admin_view(&gate, &db, id).await?))
}

/// Figures of one activity: Redis (remaining, accepted), MySQL (persisted, sold), stream.
#[utoipa::path(
    get,
    path = "/api/v1/admin/activities/{activity_id}",
    params(("activity_id" = String, Path, description = "activity id")),
    responses(
        (status = 200, body = AdminActivityView),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "activity_not_found"),
    ),
    security(("admin_token" = []))
)]
pub async fn get_activity_stats(
    _: Admin,
    path: web::Path<String>,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let id = ActivityId::parse(&path).ok_or(ApiError::ActivityNotFound)?;
    Ok(HttpResponse::Ok().json(admin_view(&gate, &db, id).await?))
}

async fn find(db: &DatabaseConnection, id: ActivityId) -> Result<activity::Model, ApiError> {
    activity::Entity::find_by_id(id.get())
        .one(db)
        .await?
        .ok_or(ApiError::ActivityNotFound)
}

/// `total_stock = stock`, only while `sold <= stock` (a writer may have raised `sold`).
async fn update_total(db: &DatabaseConnection, id: ActivityId, stock: i64) -> Result<(), ApiError> {
    let updated = activity::Entity::update_many()
        .col_expr(activity::Column::TotalStock, Expr::value(stock))
        .col_expr(
            activity::Column::Version,
            Expr::col(activity::Column::Version).add(1),
        )
        .filter(activity::Column::Id.eq(id.get()))
        .filter(activity::Column::Sold.lte(stock))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        let sold = find(db, id).await?.sold;
        return Err(ApiError::StockBelowSold { accepted: sold });
    }
    Ok(())
}

fn rebuild_in_progress() -> ApiError {
    ApiError::Unavailable(
        "a rebuild of this activity's sale state is in progress; try again when it is done".into(),
    )
}

async fn seed_or_conflict(gate: &Gate, spec: &SeedSpec) -> Result<(), ApiError> {
    match gate.seed(spec).await? {
        SeedOutcome::Seeded { .. } => Ok(()),
        SeedOutcome::BelowSold { accepted } => Err(ApiError::StockBelowSold { accepted }),
        SeedOutcome::Paused => Err(rebuild_in_progress()),
    }
}

async fn admin_view(
    gate: &Gate,
    db: &DatabaseConnection,
    id: ActivityId,
) -> Result<AdminActivityView, ApiError> {
    // Redis first, then MySQL: an order can only move from "accepted" to "persisted", so
    // reading in this order never shows more persisted than accepted.
    let snapshot = gate.snapshot(id).await?;
    let backlog = gate.backlog(id).await?;
    // `sold` and the row count from one snapshot (InnoDB repeatable read), so that a batch
    // committing in between cannot show one without the other.
    let txn = db.begin().await?;
    let row = activity::Entity::find_by_id(id.get())
        .one(&txn)
        .await?
        .ok_or(ApiError::ActivityNotFound)?;
    let persisted = order::Entity::find()
        .filter(order::Column::ActivityId.eq(row.id))
        .count(&txn)
        .await?;
    txn.commit().await?;
    Ok(AdminActivityView {
        activity_id: row.id,
        name: row.name,
        starts_at: utc(row.starts_at),
        ends_at: utc(row.ends_at),
        per_user_limit: row.per_user_limit.into(),
        total_stock: row.total_stock,
        remaining_stock: snapshot.as_ref().and_then(|s| s.remaining_stock),
        accepted: snapshot.map_or(0, |s| s.accepted_orders),
        persisted,
        sold: row.sold,
        pending: backlog.pending + backlog.undelivered,
        dead_letters: backlog.dead_letters,
    })
}
