//! Domain types that parse request input once, so that the rest of the code can rely on
//! them being valid (a `Quantity` is never 0, an `ActivityId` is never "abc").

mod ids;
pub mod json_int;
mod new_activity;
mod quantity;

pub use ids::{ActivityId, UserId};
pub use new_activity::{parse_stock, NewActivity, NewActivityRequest, StockRequest};
pub use quantity::Quantity;

/// An id that may arrive in JSON as a number or as a string of decimal digits, and is
/// always written back as a string (JavaScript loses precision above 2^53).
pub mod string_id {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an unsigned 64-bit id as a number or a string of digits")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                super::parse_decimal_u64(v).ok_or_else(|| E::custom("not a decimal u64"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Strict decimal parsing: digits only (no sign, no spaces, no leading `+`), and no leading
/// zero: every id has exactly one spelling, so `/activities/042` is not `/activities/42`
/// (a path naming a resource two ways would make caches and logs disagree).
pub(crate) fn parse_decimal_u64(s: &str) -> Option<u64> {
    if s.is_empty()
        || s.len() > 20
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}
