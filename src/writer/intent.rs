//! The order intent: one stream entry, as appended by `lua/purchase.lua` (its fields:
//! [`crate::gate::stream::intent`]).

use redis::streams::StreamId;

use crate::gate::stream::intent as field;

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
    /// Parses an entry; `Err` carries the reason it can never be persisted.
    pub fn parse(entry: &StreamId) -> Result<Self, String> {
        fn get<T: redis::FromRedisValue>(e: &StreamId, name: &str) -> Result<T, String> {
            e.get(name)
                .ok_or_else(|| format!("field {name:?} missing or malformed"))
        }
        let intent = Self {
            entry_id: entry.id.clone(),
            order_id: get(entry, field::ORDER_ID)?,
            user_id: get(entry, field::USER_ID)?,
            quantity: get(entry, field::QUANTITY)?,
            idempotency_key: get(entry, field::IDEMPOTENCY_KEY)?,
            created_ms: get(entry, field::CREATED_MS)?,
        };
        if intent.quantity < 1 || intent.order_id == 0 || intent.user_id == 0 {
            return Err(format!("impossible values in entry {}", entry.id));
        }
        if intent.idempotency_key.len() > 64 {
            return Err("idempotency key longer than 64 characters".into());
        }
        // Checked here, entry by entry: found later, in the batch, it would condemn the
        // batch's other entries with it.
        if chrono::DateTime::from_timestamp_millis(intent.created_ms).is_none() {
            return Err(format!("impossible timestamp in entry {}", entry.id));
        }
        Ok(intent)
    }
}
