use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use crate::error::ApiError;

/// The admin token, shared as app data.
pub struct AdminAuth {
    token: String,
}

impl AdminAuth {
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
        }
    }
}

/// Proof that the request carries the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req))
    }
}

fn check(req: &HttpRequest) -> Result<Admin, ApiError> {
    let token = super::bearer(req)?;
    let ok = match (req.app_data::<web::Data<AdminAuth>>(), token) {
        // Constant time: the comparison must not tell how many leading bytes matched.
        (Some(auth), Some(token)) => {
            constant_time_eq::constant_time_eq(token.as_bytes(), auth.token.as_bytes())
        }
        _ => false,
    };
    if ok {
        Ok(Admin)
    } else {
        Err(ApiError::Unauthorized)
    }
}
