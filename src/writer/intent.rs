//! The order intent: one stream entry, as appended by `lua/purchase.lua` (its field and
//! format: [`crate::gate::stream::intent`]).

use std::str::FromStr;

use redis::{FromRedisValue, Value};

use super::entry::Entry;
use crate::gate::stream::intent::{legacy, FIELD};
use crate::idempotency::IdempotencyKey;

/// An accepted order waiting to be persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderIntent {
    /// Stream entry id, acked once the order is committed.
    pub entry_id: String,
    pub order_id: u64,
    pub user_id: u64,
    pub quantity: i32,
    pub idempotency_key: String,
    /// Redis clock at acceptance, ms since the Unix epoch.
    pub created_ms: i64,
}

impl OrderIntent {
    /// Parses an entry, of the one-field format or of the five-field one written before it;
    /// `Err` carries the reason it can never be persisted.
    pub fn parse(entry: &Entry) -> Result<Self, String> {
        let intent = match entry.field(FIELD) {
            Some(Value::BulkString(packed)) => Self::unpack(&entry.id, packed)?,
            Some(other) => return Err(format!("field {FIELD:?} malformed: {other:?}")),
            None => Self::from_fields(entry)?,
        };
        if intent.quantity < 1 || intent.order_id == 0 || intent.user_id == 0 {
            return Err(format!("impossible values in entry {}", entry.id));
        }
        if intent.idempotency_key.is_empty()
            || intent.idempotency_key.len() > IdempotencyKey::MAX_LEN
        {
            return Err(format!(
                "idempotency key empty or longer than {} characters",
                IdempotencyKey::MAX_LEN
            ));
        }
        // Checked here, entry by entry: found later, in the batch, it would condemn the
        // batch's other entries with it.
        if chrono::DateTime::from_timestamp_millis(intent.created_ms).is_none() {
            return Err(format!("impossible timestamp in entry {}", entry.id));
        }
        Ok(intent)
    }

    /// `order_id:quantity:created_ms:user_id:idempotency_key`; the key, last, may hold `:`.
    fn unpack(entry_id: &str, packed: &[u8]) -> Result<Self, String> {
        let bad = || format!("field {FIELD:?} malformed in entry {entry_id}");
        let text = std::str::from_utf8(packed).map_err(|_| bad())?;
        let mut parts = text.splitn(5, ':');
        let mut next = || parts.next().ok_or_else(bad);
        fn number<T: FromStr>(s: &str, bad: impl Fn() -> String) -> Result<T, String> {
            s.parse().map_err(|_| bad())
        }
        Ok(Self {
            entry_id: entry_id.to_owned(),
            order_id: number(next()?, bad)?,
            quantity: number(next()?, bad)?,
            created_ms: number(next()?, bad)?,
            user_id: number(next()?, bad)?,
            idempotency_key: next()?.to_owned(),
        })
    }

    /// The five fields of [`legacy`].
    fn from_fields(entry: &Entry) -> Result<Self, String> {
        fn get<T: FromRedisValue>(e: &Entry, name: &str) -> Result<T, String> {
            e.field(name)
                .and_then(|v| T::from_redis_value_ref(v).ok())
                .ok_or_else(|| format!("field {name:?} missing or malformed"))
        }
        Ok(Self {
            entry_id: entry.id.clone(),
            order_id: get(entry, legacy::ORDER_ID)?,
            user_id: get(entry, legacy::USER_ID)?,
            quantity: get(entry, legacy::QUANTITY)?,
            idempotency_key: get(entry, legacy::IDEMPOTENCY_KEY)?,
            created_ms: get(entry, legacy::CREATED_MS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::stream::intent::encode;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: "7-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
                .collect(),
        }
    }

    fn expected(key: &str) -> OrderIntent {
        OrderIntent {
            entry_id: "7-0".into(),
            order_id: 991,
            user_id: 42,
            quantity: 2,
            idempotency_key: key.into(),
            created_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn the_one_field_format_round_trips_even_with_colons_in_the_key() {
        for key in ["k", "a:b:c", "x-1.y_2"] {
            let packed = encode(991, 2, 1_700_000_000_123, 42, key);
            assert_eq!(
                OrderIntent::parse(&entry(&[(FIELD, &packed)])),
                Ok(expected(key))
            );
        }
    }

    #[test]
    fn the_five_field_format_of_earlier_versions_is_still_read() {
        let e = entry(&[
            (legacy::ORDER_ID, "991"),
            (legacy::USER_ID, "42"),
            (legacy::QUANTITY, "2"),
            (legacy::IDEMPOTENCY_KEY, "k"),
            (legacy::CREATED_MS, "1700000000123"),
        ]);
        assert_eq!(OrderIntent::parse(&e), Ok(expected("k")));
    }

    #[test]
    fn malformed_entries_are_refused_with_a_reason() {
        for packed in [
            "991:2:1700000000123:42",          // no key
            "991:2:1700000000123:42:",         // empty key
            "x:2:1700000000123:42:k",          // order id not a number
            "991:0:1700000000123:42:k",        // no units
            "0:2:1700000000123:42:k",          // order id 0
            "991:2:99999999999999999999:42:k", // timestamp beyond i64
            "991:2:9000000000000000000:42:k",  // beyond chrono's range
            "991:-2:1700000000123:42:k",       // negative quantity
        ] {
            assert!(
                OrderIntent::parse(&entry(&[(FIELD, packed)])).is_err(),
                "{packed} accepted"
            );
        }
        let long = encode(991, 2, 1_700_000_000_123, 42, &"k".repeat(65));
        assert!(OrderIntent::parse(&entry(&[(FIELD, &long)])).is_err());
        let missing = OrderIntent::parse(&entry(&[(legacy::ORDER_ID, "991")])).unwrap_err();
        assert!(missing.contains("missing or malformed"), "{missing}");
    }
}
