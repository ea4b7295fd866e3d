//! Buyer JWTs: HS256 only (the algorithm is pinned, so `alg: none` or an RS/HS confusion
//! token is refused), `sub` and `exp` required.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;

/// The claims the service reads and writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, decimal.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch: honoured when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Verifies buyer tokens.
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub(crate) fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        // Off by default in jsonwebtoken: a token minted for later must not work now.
        validation.validate_nbf = true;
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub(crate) fn verify(&self, token: &str) -> Option<UserId> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).ok()?;
        UserId::parse(&data.claims.sub)
    }
}

/// Signs a buyer token valid for `ttl_secs` (`seckill token`, tests, load tests).
pub fn mint_token(secret: &str, user: UserId, ttl_secs: u64) -> anyhow::Result<String> {
    let exp = chrono::Utc::now().timestamp().max(0) as u64 + ttl_secs;
    let claims = Claims {
        sub: user.to_string(),
        exp,
        nbf: None,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_others_do_not() {
        let v = Verifier::new("s3cret");
        let t = mint_token("s3cret", UserId::new(42), 60).unwrap();
        assert_eq!(v.verify(&t), Some(UserId::new(42)));
        assert_eq!(Verifier::new("other").verify(&t), None);
        assert_eq!(v.verify("not.a.jwt"), None);
    }

    #[test]
    fn nbf_is_honoured() {
        let v = Verifier::new("s");
        let now = chrono::Utc::now().timestamp() as u64;
        let sign = |nbf: u64| {
            let claims = Claims {
                sub: "42".into(),
                exp: now + 600,
                nbf: Some(nbf),
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"s"),
            )
            .unwrap()
        };
        assert_eq!(v.verify(&sign(now + 60)), None, "not valid yet");
        assert_eq!(v.verify(&sign(now - 1)), Some(UserId::new(42)));
    }
}
