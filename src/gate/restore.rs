//! Writing buyers and idempotency records back into Redis, for the recovery tools.
//!
//! After Redis lost an activity's state, MySQL's order rows (and any stream entries Redis
//! kept) are the only record of who bought. Before the activity is sellable again, every
//! buyer must be back in the buyers hash (or they could buy a second time) and every key
//! still within its TTL must be back as an idempotency record (or a retry after the
//! recovery would be decided afresh instead of replaying its `201`).

use std::time::Duration;

use redis::AsyncCommands;

use super::{Gate, OrderRecord};
use crate::domain::{ActivityId, Quantity, UserId};
use crate::idempotency::{self, IdempotencyKey};

/// One order to restore: who bought, under which key, and what the gate had answered.
#[derive(Debug, Clone)]
pub struct RestoredOrder {
    pub user: UserId,
    pub key: String,
    pub record: OrderRecord,
    /// The order was cancelled or expired: its units are for sale again. The buyer keeps
    /// the slot; the order id goes into the `returned` set so that a late return of it
    /// changes nothing (`lua/return_stock.lua`).
    pub returned: bool,
}

/// What a restore wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreCounts {
    pub buyers: u64,
    pub idempotency_records: u64,
}

/// Orders per pipeline: bounded round trips without one huge reply.
const CHUNK: usize = 1_000;

impl Gate {
    /// Writes each order's buyer record and, while its key's TTL has time left, its
    /// idempotency record (overwriting what is there: MySQL is the truth being restored).
    pub async fn restore_orders(
        &self,
        activity: ActivityId,
        orders: &[RestoredOrder],
        now_ms: i64,
    ) -> Result<RestoreCounts, redis::RedisError> {
        let k = self.keys.activity(activity);
        let ttl_ms = Duration::from_secs(self.idempotency_ttl_secs).as_millis() as i64;
        let mut counts = RestoreCounts::default();
        for chunk in orders.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for o in chunk {
                pipe.hset(&k.buyers, o.user.get(), o.record.encode())
                    .ignore();
                if o.returned {
                    pipe.sadd(&k.returned, o.record.order_id).ignore();
                }
                counts.buyers += 1;
                let left_ms = o.record.created_ms + ttl_ms - now_ms;
                let (Ok(key), Ok(quantity)) = (
                    IdempotencyKey::from_header(Some(o.key.as_bytes())),
                    Quantity::parse(o.record.quantity.into()),
                ) else {
                    continue; // not a key a client could send again
                };
                if left_ms <= 0 {
                    continue; // expired: a retry is decided afresh, as it would have been
                }
                let value = format!(
                    "{}|{}",
                    idempotency::fingerprint(quantity),
                    o.record.encode()
                );
                pipe.cmd("SET")
                    .arg(k.idempotency(o.user, &key))
                    .arg(value)
                    .arg("PX")
                    .arg(left_ms)
                    .ignore();
                counts.idempotency_records += 1;
            }
            let () = pipe.query_async(&mut self.conn.clone()).await?;
        }
        Ok(counts)
    }

    /// Whether a rebuild holds the activity's sale paused.
    pub async fn is_paused(&self, activity: ActivityId) -> Result<bool, redis::RedisError> {
        redis::cmd("HEXISTS")
            .arg(self.keys.activity(activity).meta)
            .arg("paused")
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Pauses the sale of an activity for a rebuild: the purchase script answers every
    /// request but a replay with "not sellable" (`503`), and an ordinary re-seed refuses,
    /// until [`Gate::seed_rebuilt`] re-opens it. The invalidation drops every instance's
    /// sold-out view, so none answers `sold_out` from the state being replaced.
    pub async fn pause(&self, activity: ActivityId) -> Result<(), redis::RedisError> {
        // Two commands, not one pipeline: the channel is no key of the activity's slot, and
        // a cluster sends one pipeline to one slot.
        let mut conn = self.conn.clone();
        let _: () = conn
            .hset(self.keys.activity(activity).meta, "paused", 1)
            .await?;
        self.sold_out.invalidate(activity);
        conn.publish(self.keys.seeded_channel(), activity.get())
            .await
    }
}
