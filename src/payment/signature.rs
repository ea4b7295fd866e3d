//! The `Seckill-Signature` header of payment callbacks (the Stripe scheme).
//!
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`. The signature covers the raw
//! bytes as sent, so the receiver verifies before it parses any JSON; the timestamp inside
//! the signed text bounds how long a captured callback can be replayed ([`TOLERANCE_SECS`]).
//! Several `v1=` entries may be sent (a secret being rotated): one match is enough. Both the
//! provider (signing) and the callback endpoint (verifying) use this module, so the two can
//! never disagree on the format.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the header.
pub const HEADER: &str = "Seckill-Signature";
/// Largest distance between `t` and the receiver's clock, either way (seconds).
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused (all answered `401 invalid_signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Seckill-Signature header is missing")]
    Missing,
    #[error("the Seckill-Signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is more than 300 s away from now")]
    Stale,
    #[error("no v1 signature matches the body")]
    Mismatch,
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value signing `body` at unix time `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

/// Checks a header value against the raw body at unix time `now`.
pub fn verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" if t.is_none() => {
                // Digits only: `+5` or ` 5` are not what a signer writes.
                if value.is_empty()
                    || value.len() > 12
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(SignatureError::Malformed);
                }
                t = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "t" => return Err(SignatureError::Malformed),
            "v1" => candidates.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?),
            _ => {} // other schemes (v0, …) are ignored, as Stripe does
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, body);
    // `verify_slice` compares in constant time.
    if candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec";

    #[test]
    fn a_signed_body_verifies_and_any_change_does_not() {
        let body = br#"{"payment_id":"1"}"#;
        let h = sign(SECRET, 1_700_000_000, body);
        assert_eq!(verify(SECRET, Some(&h), body, 1_700_000_000), Ok(()));
        assert_eq!(verify(SECRET, Some(&h), body, 1_700_000_300), Ok(()));
        assert_eq!(
            verify(SECRET, Some(&h), body, 1_700_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(&h), body, 1_699_999_699),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(&h), br#"{"payment_id":"2"}"#, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("other", Some(&h), body, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = h.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(SECRET, Some(&moved), body, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_rotated_secret_is_accepted_among_several_v1() {
        let body = b"{}";
        let good = sign(SECRET, 10, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        let h = format!("t=10,v1={},v1={v1},v0=abc", "00".repeat(32));
        assert_eq!(verify(SECRET, Some(&h), body, 10), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for h in [
            "",
            "t=10",
            "v1=00",
            "t=,v1=00",
            "t=+10,v1=00",
            "t=10,v1=zz",
            "t=10,t=10,v1=00",
            "garbage",
        ] {
            assert_eq!(
                verify(SECRET, Some(h), b"{}", 10),
                Err(SignatureError::Malformed),
                "{h}"
            );
        }
        assert_eq!(
            verify(SECRET, None, b"{}", 10),
            Err(SignatureError::Missing)
        );
    }
}
