//! One-time payment tokens (I8), in Redis under the order's activity hash tag.
//!
//! A token is issued for one order (`lua/payment_token.lua`: the live one again while it
//! lives) and consumed by one pay request (`lua/consume_payment_token.lua`: compare and
//! delete in one script). The token is bound to the order by its key, and to the user by
//! the caller, which only issues and consumes tokens of the caller's own order.

use super::{ActivityKeys, Gate};
use crate::domain::ActivityId;
use crate::idempotency::IdempotencyKey;

/// Prefix of every payment token: `pt_` and 32 hex digits (a v4 UUID, 122 random bits).
const TOKEN_PREFIX: &str = "pt_";

/// A token as presented in a `Payment-Token` header, checked for its shape only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentToken(String);

impl PaymentToken {
    /// A new random token.
    pub fn generate() -> Self {
        Self(format!("{TOKEN_PREFIX}{}", uuid::Uuid::new_v4().simple()))
    }

    /// `None` for anything that is not the shape of a token we issue: such a token cannot be
    /// live, and it never reaches a Redis key.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(TOKEN_PREFIX)?;
        (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The answer to a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: PaymentToken,
    /// Milliseconds it still lives.
    pub ttl_ms: i64,
    /// `false`: the live token issued earlier (the same answer again).
    pub new: bool,
}

/// Who consumed a token: the payment it started and the pay request's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    pub payment_id: u64,
    pub idempotency_key: String,
}

impl TokenUse {
    fn encode(&self) -> String {
        format!("{}|{}", self.payment_id, self.idempotency_key)
    }

    fn parse(s: &str) -> Option<Self> {
        let (id, key) = s.split_once('|')?;
        Some(Self {
            payment_id: id.parse().ok()?,
            idempotency_key: key.to_owned(),
        })
    }
}

/// What Redis knows about a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    /// The order's live token (peek), or consumed just now by this request (consume).
    Live,
    /// Consumed before, by this use.
    Used(TokenUse),
    /// Unknown, expired, or another order's.
    Invalid,
}

fn unexpected(what: &str, reply: &[String]) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected payment token script reply",
        format!("{what}: {reply:?}"),
    ))
}

impl Gate {
    /// The order's live token, or a new one living `ttl_ms`.
    pub async fn issue_payment_token(
        &self,
        activity: ActivityId,
        order_id: u64,
        ttl_ms: i64,
    ) -> Result<IssuedToken, redis::RedisError> {
        let k = self.keys.activity(activity);
        let reply: Vec<String> = self
            .payment_token
            .key(k.payment_token(order_id))
            .arg(PaymentToken::generate().as_str())
            .arg(ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let parsed = match (
            reply.first().map(String::as_str),
            reply.get(1),
            reply.get(2),
        ) {
            (Some(kind @ ("new" | "live")), Some(token), Some(ttl)) => PaymentToken::parse(token)
                .zip(ttl.parse::<i64>().ok())
                .map(|(token, ttl_ms)| IssuedToken {
                    token,
                    ttl_ms,
                    new: kind == "new",
                }),
            _ => None,
        };
        parsed.ok_or_else(|| unexpected("issue", &reply))
    }

    /// What the token is, without consuming it: the pay request reports a used or invalid
    /// token before it looks at the order's state (SPEC order of checks).
    pub async fn peek_payment_token(
        &self,
        activity: ActivityId,
        order_id: u64,
        token: &PaymentToken,
    ) -> Result<TokenState, redis::RedisError> {
        let k = self.keys.activity(activity);
        let (used, live): (Option<String>, Option<String>) = redis::pipe()
            .get(k.used_payment_token(order_id, token.as_str()))
            .get(k.payment_token(order_id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(match (used, live) {
            (Some(used), _) => TokenState::Used(
                TokenUse::parse(&used)
                    .ok_or_else(|| unexpected("peek", std::slice::from_ref(&used)))?,
            ),
            (None, Some(live)) if live == token.as_str() => TokenState::Live,
            _ => TokenState::Invalid,
        })
    }

    /// Consumes the token for `payment_id` (at most once); `Live` means this call consumed
    /// it. The used-token record lives `ttl_secs`.
    pub async fn consume_payment_token(
        &self,
        activity: ActivityId,
        order_id: u64,
        token: &PaymentToken,
        payment_id: u64,
        key: &IdempotencyKey,
        ttl_secs: u64,
    ) -> Result<TokenState, redis::RedisError> {
        let k = self.keys.activity(activity);
        let used = TokenUse {
            payment_id,
            idempotency_key: key.as_str().to_owned(),
        };
        let reply: Vec<String> = self
            .consume_payment_token
            .key(k.payment_token(order_id))
            .key(k.used_payment_token(order_id, token.as_str()))
            .arg(token.as_str())
            .arg(used.encode())
            .arg(ttl_secs)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("consumed"), _) => Ok(TokenState::Live),
            (Some("used"), Some(first)) => Ok(TokenState::Used(
                TokenUse::parse(first).ok_or_else(|| unexpected("consume", &reply))?,
            )),
            (Some("invalid"), _) => Ok(TokenState::Invalid),
            _ => Err(unexpected("consume", &reply)),
        }
    }

    /// Forgets that the token was consumed, after the pay request that consumed it could
    /// not record its payment (the order was closed, or another payment started first):
    /// that payment will never exist, so no later request may be told the token took it.
    /// The token stays consumed (it is invalid from now on).
    pub async fn forget_payment_token_use(
        &self,
        activity: ActivityId,
        order_id: u64,
        token: &PaymentToken,
    ) -> Result<(), redis::RedisError> {
        let k = self.keys.activity(activity);
        redis::cmd("DEL")
            .arg(k.used_payment_token(order_id, token.as_str()))
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Drops the order's live token (the order was closed or paid: nothing may start a
    /// payment for it any more).
    pub async fn drop_payment_token(
        &self,
        activity: ActivityId,
        order_id: u64,
    ) -> Result<(), redis::RedisError> {
        let k: ActivityKeys = self.keys.activity(activity);
        redis::cmd("DEL")
            .arg(k.payment_token(order_id))
            .query_async(&mut self.conn.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_one_shape() {
        let t = PaymentToken::generate();
        assert_eq!(PaymentToken::parse(t.as_str()), Some(t.clone()));
        assert_eq!(t.as_str().len(), 35);
        for bad in [
            "",
            "pt_",
            "pt_XYZ",
            "pt_0123456789abcdef0123456789abcdeF",
            "xx_0123456789abcdef0123456789abcdef",
            "pt_0123456789abcdef0123456789abcdef0",
        ] {
            assert_eq!(PaymentToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn token_uses_round_trip() {
        let u = TokenUse {
            payment_id: 7,
            idempotency_key: "k:1|x".into(),
        };
        assert_eq!(TokenUse::parse(&u.encode()), Some(u));
        assert_eq!(TokenUse::parse("x|k"), None);
    }
}
