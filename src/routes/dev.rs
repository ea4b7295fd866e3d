//! Local development only: sign in as any user id, so that a person trying the service can
//! open the sale page and buy without minting a token on the command line.
//!
//! Anyone who can call this can buy as anyone, so it answers only when both hold:
//! - the service signs buyer tokens with the shipped development secret
//!   ([`DEV_JWT_SECRET`]), which the service refuses to use on any address but loopback
//!   (`Settings::check`): a deployment with a real secret never has it;
//! - the request comes from a loopback address (the TCP peer, never a header a client can
//!   write), names a loopback host, and carries no proxy's forwarding header.
//!
//! Otherwise it is `404 not_found`, as if it did not exist.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};

use super::body::{json_body, PURCHASE_BODY_LIMIT};
use crate::auth::mint_token;
use crate::configuration::DEV_JWT_SECRET;
use crate::domain::UserId;
use crate::error::ApiError;

/// Whether this process may sign buyers in by user id (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct DevSignIn(pub bool);

impl DevSignIn {
    pub fn for_secret(jwt_secret: &str) -> Self {
        Self(jwt_secret == DEV_JWT_SECRET)
    }

    /// Whether `req` may sign in: the development secret, a loopback TCP peer, addressed to
    /// a loopback name (a web page elsewhere that rebinds its DNS name to 127.0.0.1 sends
    /// its own name as `Host`), and not passed on by a proxy on this machine (which makes
    /// every client look local).
    fn allows(&self, req: &HttpRequest) -> bool {
        let h = req.headers();
        let host = h
            .get(actix_web::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let host_name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        self.0
            && req.peer_addr().is_some_and(|a| a.ip().is_loopback())
            && matches!(host_name, "localhost" | "127.0.0.1" | "[::1]")
            && !["forwarded", "x-forwarded-for", "x-real-ip", "via"]
                .iter()
                .any(|name| h.contains_key(*name))
    }
}

/// How long a development token lives.
const TTL_SECS: u64 = 12 * 3600;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    /// The user to sign in as: a decimal string (or a JSON number), 1 to 2^64 − 1.
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "1001")]
    pub user_id: serde_json::Value,
}

impl DevTokenRequest {
    fn user(&self) -> Option<UserId> {
        match &self.user_id {
            serde_json::Value::String(s) => UserId::parse(s),
            serde_json::Value::Number(n) => n.as_u64().and_then(|v| UserId::parse(&v.to_string())),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DevTokenView {
    /// A buyer token (`Authorization: Bearer …`), signed with the development secret.
    pub token: String,
    #[schema(value_type = String, example = "1001")]
    pub user_id: String,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Sign in as a user, for local development.
#[utoipa::path(
    post,
    path = "/dev/token",
    tag = "development",
    request_body(content = DevTokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A buyer token for the user (12 h).", body = DevTokenView),
        (status = 400, description = "`invalid_request` — the body is not `{\"user_id\": …}` with a user id from 1 to 2^64 − 1.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found` — the service does not use the development JWT secret, or the request did not come from a loopback address.", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, response = super::openapi::RequestTimeout),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 500, response = super::openapi::Internal),
    )
)]
pub async fn dev_token(
    req: HttpRequest,
    payload: web::Payload,
    allowed: web::Data<DevSignIn>,
) -> Result<HttpResponse, ApiError> {
    if !allowed.allows(&req) {
        return Err(ApiError::NotFound);
    }
    let request: DevTokenRequest = json_body(&req, payload, PURCHASE_BODY_LIMIT).await?;
    let user = request.user().ok_or_else(|| {
        ApiError::InvalidRequest("user_id must be a user id from 1 to 2^64 − 1".into())
    })?;
    let token = mint_token(DEV_JWT_SECRET, user, TTL_SECS).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(DevTokenView {
        token,
        user_id: user.to_string(),
        expires_at: Utc::now() + Duration::seconds(TTL_SECS as i64),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_the_development_secret_from_loopback_may_sign_in() {
        let from = |peer: &str| {
            TestRequest::default()
                .peer_addr(peer.parse().unwrap())
                .insert_header(("Host", "127.0.0.1:8080"))
                .to_http_request()
        };
        let dev = DevSignIn::for_secret(DEV_JWT_SECRET);
        assert!(dev.allows(&from("127.0.0.1:5000")));
        assert!(dev.allows(&from("[::1]:5000")));
        assert!(!dev.allows(&from("10.0.0.7:5000")));
        assert!(!dev.allows(&from("[2001:db8::1]:5000")));
        // A header naming loopback changes nothing: only the TCP peer counts.
        let forwarded = TestRequest::default()
            .peer_addr("10.0.0.7:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "127.0.0.1"))
            .insert_header(("X-Real-IP", "127.0.0.1"))
            .to_http_request();
        assert!(!dev.allows(&forwarded));
        // Through a proxy on this machine, or a name rebound to loopback: refused.
        let via_proxy = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .insert_header(("Host", "127.0.0.1:8080"))
            .insert_header(("Via", "1.1 nginx"))
            .to_http_request();
        assert!(!dev.allows(&via_proxy));
        for host in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.evil.example",
            "",
        ] {
            let rebound = TestRequest::default()
                .peer_addr("127.0.0.1:5000".parse().unwrap())
                .insert_header(("Host", host))
                .to_http_request();
            assert!(!dev.allows(&rebound), "{host}");
        }
        for host in ["localhost:8080", "localhost", "[::1]:8080"] {
            let local = TestRequest::default()
                .peer_addr("127.0.0.1:5000".parse().unwrap())
                .insert_header(("Host", host))
                .to_http_request();
            assert!(dev.allows(&local), "{host}");
        }
        assert!(!DevSignIn::for_secret("a real secret").allows(&from("127.0.0.1:5000")));
    }
}
