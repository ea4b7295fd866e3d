//! HTTP routes, in the order a request meets the system: buyer endpoints (→ the Lua gate),
//! admin endpoints (→ MySQL and the seed script), operations.

mod activities;
mod admin;
mod body;
mod health;
mod openapi;
mod orders;
mod purchase;
mod views;

pub use openapi::ApiDoc;
pub use views::{ActivityView, AdminActivityView, OrderView};

use actix_web::web;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .route("/openapi.json", web::get().to(openapi::openapi_json))
        .service(
            web::scope("/api/v1")
                .route(
                    "/activities/{activity_id}/purchase",
                    web::post().to(purchase::purchase),
                )
                .route(
                    "/activities/{activity_id}/purchase",
                    web::get().to(orders::get_purchase),
                )
                .route(
                    "/activities/{activity_id}",
                    web::get().to(activities::get_activity),
                )
                .route("/orders/{order_id}", web::get().to(orders::get_order))
                .route("/admin/activities", web::post().to(admin::create_activity))
                .route(
                    "/admin/activities/{activity_id}",
                    web::get().to(admin::get_activity_stats),
                )
                .route(
                    "/admin/activities/{activity_id}/stock",
                    web::put().to(admin::set_stock),
                ),
        );
}
