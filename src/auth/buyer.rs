use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::token::Verifier;
use crate::domain::UserId;
use crate::error::ApiError;

/// Buyer authentication settings, shared as app data.
pub struct BuyerAuth {
    verifier: Verifier,
    trust_user_header: bool,
}

impl BuyerAuth {
    pub fn new(jwt_secret: &str, trust_user_header: bool) -> Self {
        Self {
            verifier: Verifier::new(jwt_secret),
            trust_user_header,
        }
    }
}

/// The authenticated buyer of a request.
#[derive(Debug, Clone, Copy)]
pub struct Buyer(pub UserId);

impl FromRequest for Buyer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(Buyer))
    }
}

impl Buyer {
    /// The buyer of a request, for a handler that must do something before authenticating
    /// (the purchase checks the client address's rate limit first).
    pub fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        authenticate(req).map(Buyer)
    }
}

fn authenticate(req: &HttpRequest) -> Result<UserId, ApiError> {
    let auth = req
        .app_data::<web::Data<BuyerAuth>>()
        .ok_or(ApiError::Unauthorized)?;
    let token = super::bearer(req)?;
    if auth.trust_user_header {
        // A gateway in front already authenticated the user; it must strip this header
        // from client requests. A bearer token, if any, is still honoured below.
        if let Some(v) = super::single_header(req, "x-user-id")? {
            return std::str::from_utf8(v)
                .ok()
                .and_then(UserId::parse)
                .ok_or(ApiError::Unauthorized);
        }
    }
    token
        .and_then(|t| auth.verifier.verify(t))
        .ok_or(ApiError::Unauthorized)
}
