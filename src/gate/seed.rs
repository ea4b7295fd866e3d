//! Seeding an activity's sale state into Redis (`lua/seed.lua`), for the admin endpoints.

use redis::AsyncCommands;

use super::{Gate, WRITER_GROUP};
use crate::domain::ActivityId;
use crate::store::entity::{activity, utc};

/// Everything the seed script needs about an activity, read from its MySQL row.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    pub id: ActivityId,
    pub name: String,
    pub total_stock: i64,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub per_user_limit: i64,
    /// Price of one unit (shown by the public activity view).
    pub price_cents: i64,
    /// Seconds a stored order has to be paid (shown on pending orders).
    pub payment_window_secs: i64,
    /// Units already taken, used when Redis holds no state for the activity: MySQL's `sold`
    /// (plus, in a recovery, the accepted orders still waiting in the stream).
    pub sold: i64,
}

impl SeedSpec {
    /// The spec of an activity's MySQL row, with `total_stock` as the (new) total.
    pub fn from_row(row: &activity::Model, total_stock: i64) -> Self {
        Self {
            id: ActivityId::new(row.id),
            name: row.name.clone(),
            total_stock,
            starts_ms: utc(row.starts_at).timestamp_millis(),
            ends_ms: utc(row.ends_at).timestamp_millis(),
            per_user_limit: row.per_user_limit.into(),
            price_cents: row.price_cents,
            payment_window_secs: row.payment_window_secs.into(),
            sold: row.sold,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedOutcome {
    Seeded {
        remaining: i64,
    },
    /// The new total is below the units already accepted.
    BelowSold {
        accepted: i64,
    },
    /// A rebuild of the activity is in progress (it re-seeds when done).
    Paused,
}

impl Gate {
    /// Seeds or re-seeds the activity atomically, then registers it for the writer.
    pub async fn seed(&self, spec: &SeedSpec) -> Result<SeedOutcome, redis::RedisError> {
        self.run_seed(spec, false).await
    }

    /// The seed that ends a rebuild (`src/recovery`): `spec.sold` is the units taken as
    /// counted from the orders, and replaces what Redis believed; it also re-opens the sale.
    pub async fn seed_rebuilt(&self, spec: &SeedSpec) -> Result<SeedOutcome, redis::RedisError> {
        self.run_seed(spec, true).await
    }

    /// Removes every key of an activity and unregisters it: undoes the seed of an activity
    /// whose creation failed (nobody can have bought: its id was never given out).
    pub async fn unseed(&self, id: ActivityId) -> Result<(), redis::RedisError> {
        let k = self.keys.activity(id);
        let mut conn = self.conn.clone();
        // One slot (the hash tag), one command.
        let _: () = conn
            .del(&[
                &k.meta,
                &k.stock,
                &k.buyers,
                &k.stream,
                &k.dead,
                &k.returned,
            ])
            .await?;
        conn.srem(self.keys.activities(), id.get()).await
    }

    async fn run_seed(
        &self,
        spec: &SeedSpec,
        rebuild: bool,
    ) -> Result<SeedOutcome, redis::RedisError> {
        let k = self.keys.activity(spec.id);
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .seed
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.stream)
            .arg(&spec.name)
            .arg(spec.total_stock)
            .arg(spec.starts_ms)
            .arg(spec.ends_ms)
            .arg(spec.per_user_limit)
            .arg(spec.sold)
            .arg(WRITER_GROUP)
            .arg(self.keys.seeded_channel())
            .arg(spec.id.get())
            .arg(if rebuild { "1" } else { "0" })
            .arg(spec.price_cents)
            .arg(spec.payment_window_secs)
            .invoke_async(&mut conn)
            .await?;
        // This process's view goes at once; the others' when the script's PUBLISH reaches
        // them (on a cluster it travels the cluster bus first).
        self.sold_out.invalidate(spec.id);
        let number = reply.get(1).and_then(|s| s.parse::<i64>().ok());
        let outcome = match (reply.first().map(String::as_str), number) {
            (Some("ok"), Some(remaining)) => SeedOutcome::Seeded { remaining },
            (Some("below_sold"), Some(accepted)) => return Ok(SeedOutcome::BelowSold { accepted }),
            (Some("paused"), _) => return Ok(SeedOutcome::Paused),
            _ => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "unexpected seed script reply",
                    format!("{reply:?}"),
                )))
            }
        };
        // Outside the script: the set is not under the activity's hash tag.
        let _: () = conn.sadd(self.keys.activities(), spec.id.get()).await?;
        Ok(outcome)
    }
}
