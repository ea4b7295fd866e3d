//! HTTP routes, in the order a request meets the system: buyer endpoints (→ the Lua gate),
//! admin endpoints (→ MySQL and the seed script), operations.
//!
//! Every path is one actix resource with the methods it allows: any other method is answered
//! `405` with an `Allow` header (not a `404`: the path exists), and every `GET` also answers
//! `HEAD` (actix sends the headers without the body).

mod activities;
mod admin;
mod body;
mod dev;
mod health;
mod openapi;
mod orders;
mod pages;
mod payments;
mod purchase;
mod rate_limit;
mod tally;
mod views;

pub use body::BodyTimeout;
pub use dev::DevSignIn;
pub use openapi::ApiDoc;
pub use payments::PaymentContext;
pub use rate_limit::RateLimits;
pub use tally::PurchaseTally;
pub use views::{ActivityView, AdminActivityView, OrderView};

use actix_web::{guard, web, HttpResponse};

use crate::error::ApiError;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/healthz", health::healthz))
        .service(get("/readyz", health::readyz))
        .service(get("/metrics", health::metrics))
        .service(get("/openapi.json", openapi::openapi_json))
        .service(get("/sale/{activity_id}", pages::sale))
        .service(get("/admin", pages::admin))
        .service(get("/assets/{name}", pages::asset))
        .service(post("/dev/token", dev::dev_token))
        .service(
            web::scope("/api/v1")
                .service(
                    web::resource("/activities/{activity_id}/purchase")
                        .route(web::post().to(purchase::purchase))
                        .route(get_or_head().to(orders::get_purchase))
                        .default_service(not_allowed("GET, HEAD, POST")),
                )
                .service(get("/activities/{activity_id}", activities::get_activity))
                .service(get("/orders/{order_id}", orders::get_order))
                .service(post(
                    "/orders/{order_id}/payment-token",
                    payments::payment_token,
                ))
                .service(post("/orders/{order_id}/pay", payments::pay))
                .service(post("/orders/{order_id}/cancel", orders::cancel_order))
                .service(post("/payments/callback", payments::callback))
                .service(
                    web::resource("/admin/activities")
                        .route(web::post().to(admin::create_activity))
                        .route(get_or_head().to(admin::list_activities))
                        .default_service(not_allowed("GET, HEAD, POST")),
                )
                .service(get(
                    "/admin/activities/{activity_id}",
                    admin::get_activity_stats,
                ))
                .service(
                    web::resource("/admin/activities/{activity_id}/stock")
                        .route(web::put().to(admin::set_stock))
                        .default_service(not_allowed("PUT")),
                ),
        );
}

/// A resource that answers `GET` and `HEAD` with `handler`, `405` to anything else.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(get_or_head().to(handler))
        .default_service(not_allowed("GET, HEAD"))
}

/// A resource that answers `POST` with `handler`, `405` to anything else.
fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(not_allowed("POST"))
}

fn get_or_head() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The answer to a method the resource does not allow.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) })
}
