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

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
