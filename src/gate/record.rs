/// An accepted order as the gate records it in Redis: `order_id:quantity:created_ms`.
///
/// The same text is stored in the buyers hash and (behind the fingerprint) in the
/// idempotency record, so a replay and an `already_purchased` answer name the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: u64,
    pub quantity: u32,
    /// Redis clock at acceptance, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

impl OrderRecord {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, ':');
        let order_id = parts.next()?.parse().ok()?;
        let quantity = parts.next()?.parse().ok()?;
        let created_ms = parts.next()?.parse().ok()?;
        Some(Self {
            order_id,
            quantity,
            created_ms,
        })
    }

    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.order_id, self.quantity, self.created_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::OrderRecord;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let r = OrderRecord {
            order_id: 7,
            quantity: 2,
            created_ms: 1_700_000_000_000,
        };
        assert_eq!(OrderRecord::parse(&r.encode()), Some(r));
        assert_eq!(OrderRecord::parse("7:2"), None);
        assert_eq!(OrderRecord::parse("x:2:3"), None);
    }
}
