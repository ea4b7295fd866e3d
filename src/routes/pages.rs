//! The sale page (`/sale/{activity_id}`) and the operator's dashboard (`/admin`): static
//! files from `web/`, compiled into the binary, so the service needs no file system, CDN or
//! build step to serve them, and works offline.
//!
//! The pages are plain HTML, CSS and JavaScript that talk to the same JSON API as any client
//! (no server-side rendering, no template: one asset is the same bytes for everyone). Every
//! answer carries a Content-Security-Policy that allows only this origin's scripts, styles
//! and requests: a value shown on a page (an activity's name, say) can never run as code,
//! and the pages set text, never HTML.

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};

use crate::domain::ActivityId;
use crate::error::ApiError;

/// One embedded file: its name under `/assets/`, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

const SALE_PAGE: &str = include_str!("../../web/sale.html");
const ADMIN_PAGE: &str = include_str!("../../web/admin.html");

/// The files the pages load, by name.
const ASSETS: [Asset; 5] = [
    Asset {
        name: "app.css",
        media_type: "text/css; charset=utf-8",
        body: include_str!("../../web/app.css"),
    },
    Asset {
        name: "common.js",
        media_type: JS,
        body: include_str!("../../web/common.js"),
    },
    Asset {
        name: "sale.js",
        media_type: JS,
        body: include_str!("../../web/sale.js"),
    },
    Asset {
        name: "admin.js",
        media_type: JS,
        body: include_str!("../../web/admin.js"),
    },
    Asset {
        name: "chart.js",
        media_type: JS,
        body: include_str!("../../web/chart.js"),
    },
];

/// Only this origin: no inline script or style, no frame, no form posting elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(media_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(media_type)
        // Assets change with the binary: a browser revalidates rather than keep an old one.
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// The sale page of an activity (HTML; it reads the activity from the API, so an id that
/// names no activity is the page's own "no such sale": the page is the same for every id).
#[utoipa::path(
    get,
    path = "/sale/{activity_id}",
    tag = "pages",
    params(("activity_id" = String, Path, description = "The activity id: decimal, no leading zero.", pattern = "^[1-9][0-9]{0,19}$")),
    responses(
        (status = 200, description = "The sale page.", body = String, content_type = "text/html"),
        (status = 404, description = "`not_found` — the id is not decimal without a leading zero (an id that names no activity gets the page, which says so).", body = super::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sale(id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ActivityId::parse(&id).ok_or(ApiError::NotFound)?;
    Ok(page(HTML, SALE_PAGE))
}

/// The operator's dashboard (HTML; it asks for the admin token itself).
#[utoipa::path(
    get,
    path = "/admin",
    tag = "pages",
    responses((status = 200, description = "The dashboard.", body = String, content_type = "text/html"))
)]
pub async fn admin() -> HttpResponse {
    page(HTML, ADMIN_PAGE)
}

/// A file the pages load (CSS, JavaScript).
#[utoipa::path(
    get,
    path = "/assets/{name}",
    tag = "pages",
    params(("name" = String, Path, description = "The file's name, e.g. `sale.js`.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "`not_found` — no file of this name.", body = super::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == name.as_str())
        .map(|a| page(a.media_type, a.body))
        .ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file a page links to is served: a renamed asset would otherwise break the page
    /// only in a browser.
    #[test]
    fn every_asset_a_page_loads_is_embedded() {
        for html in [SALE_PAGE, ADMIN_PAGE] {
            for part in html.split("/assets/").skip(1) {
                let name = &part[..part.find('"').expect("a quoted path")];
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "/assets/{name} is linked and not embedded"
                );
            }
        }
    }
}
