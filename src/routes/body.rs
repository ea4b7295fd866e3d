//! Reading request bodies with a hard size limit and turning JSON errors into `400`s.
//!
//! Handlers read the raw payload themselves instead of using `web::Json`, so that every
//! failure (too large, not JSON, unknown field, wrong type) is an [`ApiError`] with the
//! spec's code, and so that an empty purchase body can mean "quantity 1".

use actix_web::{http::header, web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest purchase body (spec: 1 KiB).
pub const PURCHASE_BODY_LIMIT: usize = 1024;
/// Largest admin body.
pub const ADMIN_BODY_LIMIT: usize = 16 * 1024;

/// Reads at most `limit` bytes; more is a `413` (checked against `Content-Length` first, so
/// an oversized upload is refused without reading it).
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
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidRequest(format!("reading body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON object body; `Ok(None)` for an empty (or all-whitespace) body.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(None),
        // serde's derived structs also accept a JSON array (fields by position): refuse it,
        // every body of this API is an object.
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "the body must be a JSON object".into(),
            ))
        }
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

/// Reads and parses a JSON body that must be present.
pub async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    parse_json(&read_limited(req, payload, limit).await?)?
        .ok_or_else(|| ApiError::InvalidRequest("a JSON body is required".into()))
}
