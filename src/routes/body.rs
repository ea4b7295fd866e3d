//! Reading request bodies: a size limit, a time limit, the media type, and JSON errors
//! turned into `400`s.
//!
//! Handlers read the raw payload themselves instead of using `web::Json`, so that every
//! failure (too large, too slow, not JSON, unknown field, wrong type) is an [`ApiError`]
//! with the spec's code, and so that an empty purchase body can mean "quantity 1".

use std::time::Duration;

use actix_web::{http::header, web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest purchase body (spec: 1 KiB).
pub const PURCHASE_BODY_LIMIT: usize = 1024;
/// Largest admin body.
pub const ADMIN_BODY_LIMIT: usize = 16 * 1024;

/// `server.body_timeout_ms`, shared as app data: how long a body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Reads at most `limit` bytes within the configured [`BodyTimeout`]: more is a `413`
/// (checked against `Content-Length` first, so an oversized upload is refused without
/// reading it), slower is a `408` (a client sending one byte a second must not hold a
/// connection and a worker's attention for ever).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let timeout = req
        .app_data::<web::Data<BodyTimeout>>()
        .map_or(Duration::from_secs(5), |t| t.0);
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::InvalidRequest(format!("reading body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::RequestTimeout(timeout.as_millis() as u64))?
}

/// Reads and parses a JSON object body; `Ok(None)` for an empty (or all-whitespace) body,
/// which needs no `Content-Type`. A body with content must be `application/json` (`415`).
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Option<T>, ApiError> {
    let body = read_limited(req, payload, limit).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    check_media_type(req)?;
    parse_json(&body)
}

/// Reads and parses a JSON body that must be present.
pub async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    read_json(req, payload, limit)
        .await?
        .ok_or_else(|| ApiError::InvalidRequest("a JSON body is required".into()))
}

/// `application/json`, with any parameters (`; charset=utf-8`), sent once, not compressed;
/// nothing else. (Two `Content-Type` headers are a `400`: "the first one wins" would let a
/// proxy and the service read the body differently.)
pub fn check_media_type(req: &HttpRequest) -> Result<(), ApiError> {
    let mut types = req.headers().get_all(header::CONTENT_TYPE);
    let first = types.next();
    if types.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "the Content-Type header must be sent once".into(),
        ));
    }
    if let Some(encoding) = req.headers().get(header::CONTENT_ENCODING) {
        if !encoding.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "a compressed body (Content-Encoding: {})",
                String::from_utf8_lossy(encoding.as_bytes())
            )));
        }
    }
    let value = first.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = value
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(
            value.map_or_else(|| "no Content-Type".into(), |v| format!("{v:?}")),
        )),
    }
}

/// Parses a JSON object body (the caller has checked it is not empty).
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    // serde's derived structs also accept a JSON array (fields by position): refuse it,
    // every body of this API is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidRequest(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}
