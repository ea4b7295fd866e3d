//! `GET /api/v1/activities/{activity_id}`: the public view, served from Redis during the
//! sale (it is polled by every waiting buyer), from MySQL when Redis holds no state.

use actix_web::{web, HttpResponse};
use sea_orm::{DatabaseConnection, EntityTrait};

use super::views::{from_ms, ActivityView};
use crate::domain::ActivityId;
use crate::error::ApiError;
use crate::gate::Gate;
use crate::store::entity::{activity, utc};

/// Public view of an activity.
///
/// Served from Redis during the sale, from MySQL when Redis holds no state for it.
#[utoipa::path(
    get,
    path = "/api/v1/activities/{activity_id}",
    params(
        ("activity_id" = String, Path, description = "The activity id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$"),
    ),
    responses(
        (status = 200, description = "The activity.", body = ActivityView),
        (status = 404, description = "`activity_not_found` — no activity with this id (also any id that is not decimal without a leading zero).", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub async fn get_activity(
    path: web::Path<String>,
    gate: web::Data<Gate>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, ApiError> {
    let id = ActivityId::parse(&path).ok_or(ApiError::ActivityNotFound)?;
    let view = match gate.snapshot(id).await? {
        Some(s) => ActivityView {
            activity_id: id.get(),
            name: s.name,
            starts_at: from_ms(s.starts_ms),
            ends_at: from_ms(s.ends_ms),
            per_user_limit: s.per_user_limit,
            remaining_stock: s.remaining_stock.unwrap_or(0),
            price_cents: s.price_cents,
        },
        None => {
            let row = activity::Entity::find_by_id(id.get())
                .one(db.get_ref())
                .await?
                .ok_or(ApiError::ActivityNotFound)?;
            ActivityView {
                activity_id: id.get(),
                name: row.name,
                starts_at: utc(row.starts_at),
                ends_at: utc(row.ends_at),
                per_user_limit: row.per_user_limit.into(),
                remaining_stock: row.total_stock - row.sold,
                price_cents: row.price_cents,
            }
        }
    };
    Ok(HttpResponse::Ok().json(view))
}
