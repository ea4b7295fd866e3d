//! Operations endpoints: liveness, readiness, Prometheus metrics.

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use serde_json::json;

use crate::gate::Gate;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive.", body = super::views::Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: Redis and MySQL both answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Redis and MySQL both answer.", body = super::views::Readiness),
        (status = 503, description = "Redis or MySQL does not answer (a plain JSON body, not a problem document: it tells which).", body = super::views::Readiness),
    )
)]
pub async fn readyz(gate: web::Data<Gate>, db: web::Data<DatabaseConnection>) -> HttpResponse {
    let redis_ok = redis::cmd("PING")
        .query_async::<String>(&mut gate.connection())
        .await
        .is_ok();
    let mysql_ok = db.ping().await.is_ok();
    let body = json!({
        "status": if redis_ok && mysql_ok { "ready" } else { "degraded" },
        "redis": if redis_ok { "up" } else { "down" },
        "mysql": if mysql_ok { "up" } else { "down" },
    });
    if redis_ok && mysql_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain"))
)]
pub async fn metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}
