//! `GET /openapi.json`: the API description, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{activities, admin, health, orders, purchase, views};
use crate::domain::{NewActivityRequest, StockRequest};

#[derive(OpenApi)]
#[openapi(
    info(title = "seckill", description = "Flash-sale order service"),
    paths(
        purchase::purchase,
        orders::get_purchase,
        orders::get_order,
        activities::get_activity,
        admin::create_activity,
        admin::set_stock,
        admin::get_activity_stats,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    components(schemas(
        purchase::PurchaseRequest,
        views::OrderView,
        views::ActivityView,
        views::AdminActivityView,
        NewActivityRequest,
        StockRequest
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |format: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .build(),
            )
        };
        components.add_security_scheme("buyer_jwt", bearer("JWT"));
        components.add_security_scheme("admin_token", bearer("opaque"));
    }
}

pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
