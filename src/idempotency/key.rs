use crate::error::ApiError;

/// A validated `Idempotency-Key`: 1–64 characters of `[A-Za-z0-9_.:-]`.
///
/// The character set excludes `|`, which separates the fingerprint from the record in
/// Redis, and anything that could confuse a Redis key or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 64;

    /// The key of a request's headers. Sent twice, even with the same value, it is refused:
    /// "the first one wins" would let a proxy and a client disagree on which request this is.
    pub fn from_headers(headers: &actix_web::http::header::HeaderMap) -> Result<Self, ApiError> {
        let mut values = headers.get_all("idempotency-key");
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::IdempotencyKeyInvalid(
                "the Idempotency-Key header must be sent once",
            ));
        }
        Self::from_header(first.map(|v| v.as_bytes()))
    }

    /// Parses the header value; `None` means the header was absent.
    pub fn from_header(value: Option<&[u8]>) -> Result<Self, ApiError> {
        let value = value.ok_or(ApiError::IdempotencyKeyMissing)?;
        let ok = (1..=Self::MAX_LEN).contains(&value.len())
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if !ok {
            return Err(ApiError::IdempotencyKeyInvalid(
                "the Idempotency-Key header must be 1 to 64 characters of [A-Za-z0-9_.:-]",
            ));
        }
        // Every byte was checked to be ASCII above.
        Ok(Self(String::from_utf8_lossy(value).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys_parse() {
        for k in ["a", "retry-1", "A.b:c_d-9", &"x".repeat(64)] {
            assert_eq!(
                IdempotencyKey::from_header(Some(k.as_bytes()))
                    .unwrap()
                    .as_str(),
                k
            );
        }
    }

    #[test]
    fn missing_and_malformed_keys_are_told_apart() {
        assert!(matches!(
            IdempotencyKey::from_header(None),
            Err(ApiError::IdempotencyKeyMissing)
        ));
        for k in ["", "a b", "a|b", "ключ", "{a}", &"x".repeat(65)] {
            assert!(
                matches!(
                    IdempotencyKey::from_header(Some(k.as_bytes())),
                    Err(ApiError::IdempotencyKeyInvalid(_))
                ),
                "{k:?}"
            );
        }
    }
}
