//! Who is calling: buyers (JWT or a trusted gateway header) and the admin (bearer token).
//!
//! Both are actix extractors, so a handler that takes a [`Buyer`] or an [`Admin`] argument
//! cannot run for an unauthenticated request: the extractor answers `401` first.

mod admin;
mod buyer;
mod token;

pub use admin::{Admin, AdminAuth};
pub use buyer::{Buyer, BuyerAuth};
pub use token::{mint_token, Claims};

use actix_web::HttpRequest;

use crate::error::ApiError;

/// The value of a header that must appear at most once: a second copy is a `400`, never
/// "the first one wins" (a proxy and the service could then authenticate different users).
fn single_header<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a [u8]>, ApiError> {
    let mut values = req.headers().get_all(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(format!(
            "the {name} header must be sent once"
        )));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header; `Ok(None)` when there is none
/// (or it is not a bearer token).
fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = single_header(req, "authorization")? else {
        return Ok(None);
    };
    let token = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    Ok(token)
}
