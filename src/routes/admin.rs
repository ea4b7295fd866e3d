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
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::body::{json_body, ADMIN_BODY_LIMIT};
use super::tally::PurchaseTally;
use super::views::{AdminActivityList, AdminActivitySummary, AdminActivityView};
use crate::auth::Admin;
use crate::domain::{ActivityId, NewActivity, NewActivityRequest, StockRequest};
use crate::error::ApiError;
use crate::gate::{Gate, SeedOutcome, SeedSpec};
use crate::snowflake::IdGenerator;
use crate::store::entity::{activity, naive, order, payment, utc};

/// Create an activity and seed its stock.
///
/// All or nothing: the row is committed in MySQL only once Redis holds the sale state.
#[utoipa::path(
    post,
    path = "/api/v1/admin/activities",
    request_body(content = NewActivityRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The activity was created and its stock seeded.", body = AdminActivityView,
            headers(("Location" = String, description = "`/api/v1/admin/activities/{activity_id}`.")),
            links(
                ("GetActivity" = (operation_id = "get_activity", parameters(("activity_id" = "$response.body#/activity_id")), description = "The public view.")),
                ("GetActivityStats" = (operation_id = "get_activity_stats", parameters(("activity_id" = "$response.body#/activity_id")), description = "The operator's figures.")),
                ("SetStock" = (operation_id = "set_stock", parameters(("activity_id" = "$response.body#/activity_id")), description = "Re-seed its stock.")),
                ("Purchase" = (operation_id = "purchase", parameters(("activity_id" = "$response.body#/activity_id")), description = "Buy in it.")),
                ("GetPurchase" = (operation_id = "get_purchase", parameters(("activity_id" = "$response.body#/activity_id")), description = "The caller's order in it.")),
            )),
        (status = 400, description = "`invalid_request` — the body is missing, not a JSON object, has unknown fields or a field of the wrong type; `name` is empty or over 128 characters after trimming, or holds a control character; `stock` is not from 0 to 1000000000; `per_user_limit` is not from 1 to 1000; `price_cents` is not from 0 to 100000000000; `payment_window_secs` is not from 1 to 2592000; a time is not RFC 3339, is a leap second, or lies outside 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z; `ends_at` is not after `starts_at` once both are truncated to the millisecond; the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 408, response = super::openapi::RequestTimeout),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
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
    tally: web::Data<PurchaseTally>,
) -> Result<HttpResponse, ApiError> {
    let request: NewActivityRequest = json_body(&req, payload, ADMIN_BODY_LIMIT).await?;
    let new = NewActivity::try_from(request).map_err(ApiError::InvalidRequest)?;
    let id = ids
        .next_id()
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let now = Utc::now();
    // All or nothing: the row is inserted in a transaction that commits only once Redis
    // holds the sale state. Nobody can buy before the commit (the id is returned only by
    // this answer), so a failed commit is undone by removing the Redis state again. A row
    // without its Redis state would answer 503 until re-seeded; Redis state without its row
    // would sell orders the writer cannot store.
    let txn = db.begin().await?;
    let row = activity::ActiveModel {
        id: Set(id),
        name: Set(new.name),
        total_stock: Set(new.stock),
        sold: Set(0),
        per_user_limit: Set(new.per_user_limit as i32),
        price_cents: Set(new.price_cents),
        payment_window_secs: Set(new.payment_window_secs as i32),
        starts_at: Set(naive(new.starts_at)),
        ends_at: Set(naive(new.ends_at)),
        version: Set(0),
        created_at: Set(naive(now)),
        updated_at: Set(naive(now)),
    }
    .insert(&txn)
    .await?;
    let spec = SeedSpec::from_row(&row, row.total_stock);
    match gate.seed(&spec).await {
        Ok(SeedOutcome::Seeded { .. }) => {}
        // A fresh id has no state to be paused or below: only a broken Redis answers so.
        Ok(other) => {
            gate.unseed(spec.id).await.ok();
            return Err(ApiError::internal(anyhow::anyhow!(
                "seeding a new activity answered {other:?}"
            )));
        }
        Err(e) => {
            // The transaction rolls back when dropped; the script wrote nothing or all.
            gate.unseed(spec.id).await.ok();
            return Err(e.into());
        }
    }
    if let Err(e) = txn.commit().await {
        if let Err(undo) = gate.unseed(spec.id).await {
            tracing::error!(activity = %spec.id, error = %undo, "could not remove the Redis state of an activity whose row was not committed");
        }
        return Err(e.into());
    }
    let view = admin_view(&gate, &db, &tally, ActivityId::new(id)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/admin/activities/{id}")))
        .json(view))
}

/// Set the activity's total stock and re-seed what remains in Redis.
///
/// When Redis lost the sale state, it is rebuilt from MySQL first (buyers, idempotency
/// records). A refused change changes nothing.
#[utoipa::path(
    put,
    path = "/api/v1/admin/activities/{activity_id}/stock",
    params(
        ("activity_id" = String, Path, description = "The activity id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
    ),
    request_body(content = StockRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The activity with its new stock.", body = AdminActivityView),
        (status = 400, description = "`invalid_request` — the body is missing, not a JSON object, has unknown fields or a `stock` that is not an integer from 0 to 1000000000; the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`activity_not_found` — no activity with this id (also any id that is not decimal without a leading zero).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, response = super::openapi::RequestTimeout),
        (status = 409, description = "`stock_below_sold` — the new stock is below the units already sold.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
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
    tally: web::Data<PurchaseTally>,
) -> Result<HttpResponse, ApiError> {
    let id = ActivityId::parse(&path).ok_or(ApiError::ActivityNotFound)?;
    let StockRequest { stock } = json_body(&req, payload, ADMIN_BODY_LIMIT).await?;
    let stock = crate::domain::parse_stock(stock).map_err(ApiError::InvalidRequest)?;
    find(&db, id).await?;
    if gate.is_paused(id).await? {
        return Err(rebuild_in_progress());
    }
    if gate.snapshot(id).await?.is_none() {
        // Redis lost the sale state: seeding the bare stock would forget who bought (they
        // could buy again) and their idempotency records. Rebuild them from MySQL first.
        crate::recovery::rebuild(&gate, &db, id)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    }
    // One change at a time per activity: the row stays locked (`FOR UPDATE`) from the
    // comparison to the commit, across the Redis seed, so two concurrent changes cannot
    // interleave into MySQL's total from one and Redis' from the other (buyers would then
    // be told 201 for orders the writer must reject). The new total is invisible to the
    // writer until the commit, and its conditional update of `sold` waits on the lock, so
    // it never judges an order against a total Redis has not seen, nor the other way round.
    let txn = db.begin().await?;
    let row = activity::Entity::find_by_id(id.get())
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(ApiError::ActivityNotFound)?;
    if stock < row.sold {
        return Err(ApiError::StockBelowSold { accepted: row.sold });
    }
    update_total(&txn, id, stock).await?;
    // Refused (below what Redis accepted, a rebuild started) or failed: the transaction
    // rolls back when dropped, and nothing changed.
    seed_or_conflict(&gate, &SeedSpec::from_row(&row, stock)).await?;
    if let Err(e) = txn.commit().await {
        // Redis has the new total, MySQL the old one: put Redis back.
        if let Err(undo) = seed_or_conflict(&gate, &SeedSpec::from_row(&row, row.total_stock)).await
        {
            tracing::error!(activity = %id, error = %undo, "stock change not committed in MySQL and not undone in Redis: run seckill reconcile --repair");
        }
        return Err(e.into());
    }
    Ok(HttpResponse::Ok().json(admin_view(&gate, &db, &tally, id).await?))
}

/// How many activities the list shows at most.
const LIST_LIMIT: u64 = 100;

/// The most recently created activities (up to 100), newest first: their settings, from
/// MySQL. Their live figures are each one's `GET /api/v1/admin/activities/{activity_id}`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/activities",
    responses(
        (status = 200, description = "The activities, newest first (at most 100).", body = AdminActivityList),
        (status = 400, description = "`invalid_request` — the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("admin_token" = []))
)]
pub async fn list_activities(
    _: Admin,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let rows = activity::Entity::find()
        // Snowflake ids grow with time: newest first by the primary key, no sort.
        .order_by_desc(activity::Column::Id)
        .limit(LIST_LIMIT)
        .all(db.get_ref())
        .await?;
    let activities = rows
        .into_iter()
        .map(|row| AdminActivitySummary {
            activity_id: row.id,
            name: row.name,
            starts_at: utc(row.starts_at),
            ends_at: utc(row.ends_at),
            per_user_limit: row.per_user_limit.into(),
            total_stock: row.total_stock,
            price_cents: row.price_cents,
            payment_window_secs: row.payment_window_secs.into(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AdminActivityList { activities }))
}

/// Figures of one activity: Redis (remaining, accepted), MySQL (persisted, sold), stream.
#[utoipa::path(
    get,
    path = "/api/v1/admin/activities/{activity_id}",
    params(
        ("activity_id" = String, Path, description = "The activity id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
    ),
    responses(
        (status = 200, description = "The activity's figures.", body = AdminActivityView),
        (status = 400, description = "`invalid_request` — the `Authorization` header was sent more than once.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "`activity_not_found` — no activity with this id (also any id that is not decimal without a leading zero).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("admin_token" = []))
)]
pub async fn get_activity_stats(
    _: Admin,
    path: web::Path<String>,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
    tally: web::Data<PurchaseTally>,
) -> Result<HttpResponse, ApiError> {
    let id = ActivityId::parse(&path).ok_or(ApiError::ActivityNotFound)?;
    Ok(HttpResponse::Ok().json(admin_view(&gate, &db, &tally, id).await?))
}

async fn find(db: &DatabaseConnection, id: ActivityId) -> Result<activity::Model, ApiError> {
    activity::Entity::find_by_id(id.get())
        .one(db)
        .await?
        .ok_or(ApiError::ActivityNotFound)
}

/// `total_stock = stock`, only while `sold <= stock` (a writer may have raised `sold`).
async fn update_total(
    db: &impl sea_orm::ConnectionTrait,
    id: ActivityId,
    stock: i64,
) -> Result<(), ApiError> {
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
        let sold = activity::Entity::find_by_id(id.get())
            .one(db)
            .await?
            .ok_or(ApiError::ActivityNotFound)?
            .sold;
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
    tally: &PurchaseTally,
    id: ActivityId,
) -> Result<AdminActivityView, ApiError> {
    // Redis first, then MySQL: an order can only move from "accepted" to "persisted", so
    // reading in this order never shows more persisted than accepted.
    let snapshot = gate.snapshot(id).await?;
    let backlog = gate.backlog(id).await?;
    let writer_lag_ms = gate.writer_lag_ms(id).await?;
    // `sold` and the row count from one snapshot (InnoDB repeatable read), so that a batch
    // committing in between cannot show one without the other.
    let txn = db.begin().await?;
    let row = activity::Entity::find_by_id(id.get())
        .one(&txn)
        .await?
        .ok_or(ApiError::ActivityNotFound)?;
    let per_status: Vec<(String, i64)> = order::Entity::find()
        .select_only()
        .column(order::Column::Status)
        .column_as(order::Column::Id.count(), "n")
        .filter(order::Column::ActivityId.eq(row.id))
        .group_by(order::Column::Status)
        .into_tuple()
        .all(&txn)
        .await?;
    let refund_required = payment::Entity::find()
        .filter(
            payment::Column::OrderId.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(order::Column::Id)
                    .from(order::Entity)
                    .and_where(order::Column::ActivityId.eq(row.id))
                    .to_owned(),
            ),
        )
        .filter(payment::Column::Status.eq(payment::STATUS_REFUND_REQUIRED))
        .count(&txn)
        .await?;
    txn.commit().await?;
    let count = |status: &str| {
        per_status
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0))
    };
    let persisted = per_status
        .iter()
        .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
        .sum();
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
        price_cents: row.price_cents,
        payment_window_secs: row.payment_window_secs.into(),
        created: count(order::STATUS_CREATED),
        paid: count(order::STATUS_PAID),
        cancelled: count(order::STATUS_CANCELLED),
        expired: count(order::STATUS_EXPIRED),
        rejected: count(order::STATUS_REJECTED),
        refund_required,
        writer_lag_ms,
        outcomes: tally.of(id),
    })
}
