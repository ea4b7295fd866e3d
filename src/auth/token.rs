//! Buyer JWTs: HS256 only (the algorithm is pinned, so `alg: none` or an RS/HS confusion
//! token is refused), `sub` and `exp` required.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
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
    /// An audience: present, the token is meant for another service and is refused.
    #[serde(default, skip_serializing)]
    pub aud: Option<serde::de::IgnoredAny>,
}

/// Verifies buyer tokens.
///
/// Not with `jsonwebtoken::decode`: on every purchase it decoded the header twice and the
/// claims twice and checked claims we do not use — about a tenth of the service's CPU per
/// purchase in a profile. The signature is checked by the crate (`crypto::verify`, HS256
/// pinned here whatever the header says: only the holder of the secret can sign, so
/// `alg: none` and algorithm-confusion tokens fail the HMAC), then the claims are decoded
/// once and `exp` and `nbf` checked with the leeway below.
pub(crate) struct Verifier {
    key: DecodingKey,
}

/// Clock skew allowed on `exp` and `nbf`, seconds.
const LEEWAY_SECS: u64 = 5;

impl Verifier {
    pub(crate) fn new(secret: &str) -> Self {
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    pub(crate) fn verify(&self, token: &str) -> Option<UserId> {
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.split_once('.')?;
        if header.is_empty() || payload.contains('.') {
            return None;
        }
        if !jsonwebtoken::crypto::verify(signature, message.as_bytes(), &self.key, Algorithm::HS256)
            .ok()?
        {
            return None;
        }
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let claims: Claims = serde_json::from_slice(&json).ok()?;
        // A token for another audience is not a buyer token here (as jsonwebtoken's
        // validation refused any `aud` when none is configured).
        if claims.aud.is_some() {
            return None;
        }
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        if claims.exp.saturating_add(LEEWAY_SECS) < now {
            return None;
        }
        // A token minted for later must not work now.
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
        {
            return None;
        }
        UserId::parse(&claims.sub)
    }
}

/// Signs a buyer token valid for `ttl_secs` (`seckill token`, tests, load tests).
pub fn mint_token(secret: &str, user: UserId, ttl_secs: u64) -> anyhow::Result<String> {
    let exp = chrono::Utc::now().timestamp().max(0) as u64 + ttl_secs;
    let claims = Claims {
        sub: user.to_string(),
        exp,
        nbf: None,
        aud: None,
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

    fn signed(claims: &serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn expiry_has_its_leeway_and_no_more() {
        let v = Verifier::new("s");
        let now = chrono::Utc::now().timestamp() as u64;
        let with_exp = |exp: u64| signed(&serde_json::json!({"sub": "7", "exp": exp}), b"s");
        assert_eq!(v.verify(&with_exp(now + 60)), Some(UserId::new(7)));
        assert_eq!(
            v.verify(&with_exp(now - 2)),
            Some(UserId::new(7)),
            "within leeway"
        );
        assert_eq!(v.verify(&with_exp(now - 60)), None, "expired");
    }

    #[test]
    fn tokens_without_the_claims_or_the_shape_are_refused() {
        let v = Verifier::new("s");
        let exp = chrono::Utc::now().timestamp() as u64 + 60;
        for claims in [
            serde_json::json!({"exp": exp}),
            serde_json::json!({"sub": "7"}),
            serde_json::json!({"sub": "x", "exp": exp}),
            serde_json::json!({"sub": 7, "exp": exp}),
            serde_json::json!({"sub": "7", "exp": exp, "aud": "billing"}),
        ] {
            assert_eq!(v.verify(&signed(&claims, b"s")), None, "{claims}");
        }
        let good = signed(&serde_json::json!({"sub": "7", "exp": exp}), b"s");
        let (head, rest) = good.split_once('.').unwrap();
        // alg none, with and without the original signature; an extra segment.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let (payload, sig) = rest.split_once('.').unwrap();
        for t in [
            format!("{none}.{payload}."),
            format!("{none}.{payload}.{sig}"),
            format!("{head}.{payload}.{sig}.x"),
            format!(".{payload}.{sig}"),
            format!("{head}.{payload}"),
        ] {
            assert_eq!(v.verify(&t), None, "{t}");
        }
        assert_eq!(v.verify(&good), Some(UserId::new(7)));
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
                aud: None,
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
