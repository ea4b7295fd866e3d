//! The Lua gate: where a purchase is decided.
//!
//! A flash sale is decided in Redis, not in MySQL: one `EVALSHA` of `lua/purchase.lua` per
//! request checks the idempotency record, the window, the buyer and the stock, and records
//! the accepted order, atomically. MySQL sees the orders later, through the stream and the
//! writer. Keeping the decision in one script means one round trip per request and no lock:
//! Redis runs scripts one at a time.
//!
//! The scripts are compiled into the binary (`include_str!`, [`script_source`]) and invoked by SHA; when Redis
//! answers `NOSCRIPT` (it restarted or its script cache was flushed), redis-rs loads the
//! source and retries, transparently.

mod group_commit;
mod keys;
pub mod layout;
mod lookup;
mod payment_token;
mod purchase;
mod record;
mod replica_acks;
mod restore;
mod seed;
mod sold_out;
mod stock_return;
pub mod stream;
mod sweeper_lock;

pub use keys::{ActivityKeys, KeySpace};
pub use lookup::{stream_backlog, ActivitySnapshot, LookupError, StreamBacklog};
pub use payment_token::{IssuedToken, PaymentToken, TokenState, TokenUse};
pub use record::OrderRecord;
pub use replica_acks::ReplicaAcks;
pub use restore::{RestoreCounts, RestoredOrder};
pub use seed::{SeedOutcome, SeedSpec};
pub use sold_out::SoldOutCache;
pub use stock_return::ReturnOutcome;
pub use stream::WRITER_GROUP;

use std::sync::Arc;

use crate::redis_conn::RedisConn;
use redis::Script;

use crate::domain::{ActivityId, Quantity, UserId};
use crate::idempotency::IdempotencyKey;

/// One purchase attempt, as the gate needs it.
#[derive(Debug)]
pub struct PurchaseAttempt<'a> {
    pub activity: ActivityId,
    pub user: UserId,
    pub quantity: Quantity,
    pub key: &'a IdempotencyKey,
    /// Order id to use if the purchase is accepted (generated before the call: the script
    /// cannot generate snowflakes).
    pub candidate_order_id: u64,
}

/// What the script decided; one variant per branch of `lua/purchase.lua`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateOutcome {
    /// Stock taken, buyer and idempotency recorded, intent appended to the stream.
    Accepted {
        order: OrderRecord,
        remaining: i64,
    },
    /// Same user, same key, same payload as an accepted purchase.
    Replay(OrderRecord),
    /// Same user, same key, another payload.
    KeyReused,
    /// No meta hash: never seeded, or Redis lost the activity's state.
    NotFound,
    /// Quantity above the activity's `per_user_limit`.
    QuantityOverLimit {
        limit: i64,
    },
    NotStarted,
    Ended,
    /// The user already holds this order in the activity.
    AlreadyPurchased(OrderRecord),
    /// Meta present but no stock key: not sellable until seeded.
    NotSeeded,
    SoldOut {
        remaining: i64,
    },
    /// The activity's stream holds `writer.max_backlog` entries not yet in MySQL: the sale
    /// pauses (503) until the writer catches up.
    BacklogFull,
    /// Accepted (or a replay of an acceptance), but fewer than `redis.replica_acks`
    /// replicas confirmed it within `redis.replica_ack_timeout_ms` (`reached` did): not
    /// answered as accepted, since a failover now could lose it. A retry with the same key
    /// gets the true answer.
    NotReplicated {
        reached: u32,
    },
}

/// Redis answered something the script never returns (a version mismatch or corruption).
fn unexpected(reply: &[String]) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected purchase script reply",
        format!("{reply:?}"),
    ))
}

impl GateOutcome {
    fn parse(reply: Vec<String>) -> Result<Self, redis::RedisError> {
        let record = |i: usize| {
            reply
                .get(i)
                .and_then(|s| OrderRecord::parse(s))
                .ok_or_else(|| unexpected(&reply))
        };
        let number = |i: usize| {
            reply
                .get(i)
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| unexpected(&reply))
        };
        Ok(match reply.first().map(String::as_str) {
            Some("accepted") => Self::Accepted {
                order: record(1)?,
                remaining: number(2)?,
            },
            Some("replay") => Self::Replay(record(1)?),
            Some("key_reused") => Self::KeyReused,
            Some("not_found") => Self::NotFound,
            Some("quantity_over_limit") => Self::QuantityOverLimit { limit: number(1)? },
            Some("not_started") => Self::NotStarted,
            Some("ended") => Self::Ended,
            Some("already_purchased") => Self::AlreadyPurchased(record(1)?),
            Some("not_seeded") => Self::NotSeeded,
            Some("sold_out") => Self::SoldOut {
                remaining: number(1)?,
            },
            Some("backlog_full") => Self::BacklogFull,
            _ => return Err(unexpected(&reply)),
        })
    }

    /// A short label for metrics and logs.
    /// Every value [`GateOutcome::label`] can take (the metrics start each at 0).
    pub const LABELS: [&'static str; 12] = [
        "accepted",
        "replay",
        "idempotency_key_reused",
        "activity_not_found",
        "invalid_request",
        "activity_not_started",
        "activity_ended",
        "already_purchased",
        "not_seeded",
        "sold_out",
        "backlog_full",
        "not_replicated",
    ];

    /// The `outcome` label of `seckill_purchase_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Replay(_) => "replay",
            Self::KeyReused => "idempotency_key_reused",
            Self::NotFound => "activity_not_found",
            Self::QuantityOverLimit { .. } => "invalid_request",
            Self::NotStarted => "activity_not_started",
            Self::Ended => "activity_ended",
            Self::AlreadyPurchased(_) => "already_purchased",
            Self::NotSeeded => "not_seeded",
            Self::SoldOut { .. } => "sold_out",
            Self::BacklogFull => "backlog_full",
            Self::NotReplicated { .. } => "not_replicated",
        }
    }
}

/// The gate: the purchase and seed scripts over a shared, auto-reconnecting multiplexed
/// connection (concurrent requests are pipelined on it).
#[derive(Clone)]
pub struct Gate {
    conn: RedisConn,
    keys: KeySpace,
    /// `lua/purchase.lua`, batched per activity.
    purchases: Arc<purchase::Purchases>,
    seed: Script,
    payment_token: Script,
    consume_payment_token: Script,
    return_stock: Script,
    sweeper_lock: Script,
    sweeper_unlock: Script,
    idempotency_ttl_secs: u64,
    sold_out: Arc<SoldOutCache>,
    /// `redis.replica_acks` and `redis.replica_ack_timeout_ms`, and the `WAIT`s in flight.
    replica_acks: Arc<ReplicaAcks>,
}

/// Every script of the gate by name (its file in `lua/`), compiled into the binary.
const SCRIPTS: [(&str, &str); 9] = [
    ("purchase", include_str!("../../lua/purchase.lua")),
    ("ack", include_str!("../../lua/ack.lua")),
    ("seed", include_str!("../../lua/seed.lua")),
    ("payment_token", include_str!("../../lua/payment_token.lua")),
    (
        "consume_payment_token",
        include_str!("../../lua/consume_payment_token.lua"),
    ),
    ("return_stock", include_str!("../../lua/return_stock.lua")),
    ("sweeper_lock", include_str!("../../lua/sweeper_lock.lua")),
    (
        "sweeper_unlock",
        include_str!("../../lua/sweeper_unlock.lua"),
    ),
    ("replica_check", include_str!("../../lua/replica_check.lua")),
];

/// A script's source as Redis runs it (the purchase script with the stream's field names
/// defined, [`stream::script_source`]), for tools that load it themselves (`seckill
/// script`, the load test's redis-benchmark baseline); `None` for an unknown name.
pub fn script_source(name: &str) -> Option<String> {
    let (_, src) = SCRIPTS.iter().find(|(n, _)| *n == name)?;
    Some(if name == "purchase" {
        stream::script_source(src)
    } else {
        (*src).to_owned()
    })
}

/// The names [`script_source`] knows.
pub fn script_names() -> impl Iterator<Item = &'static str> {
    SCRIPTS.iter().map(|(n, _)| *n)
}

fn script(name: &str) -> Script {
    // Every name passed here is one of SCRIPTS (a unit test checks each).
    Script::new(&script_source(name).unwrap_or_default())
}

impl Gate {
    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        idempotency_ttl_secs: u64,
        max_backlog: u64,
    ) -> Self {
        Self {
            purchases: Arc::new(purchase::Purchases::new(
                conn.clone(),
                keys.clone(),
                script("purchase"),
                idempotency_ttl_secs,
                max_backlog,
            )),
            conn,
            keys,
            seed: script("seed"),
            payment_token: script("payment_token"),
            consume_payment_token: script("consume_payment_token"),
            return_stock: script("return_stock"),
            sweeper_lock: script("sweeper_lock"),
            sweeper_unlock: script("sweeper_unlock"),
            idempotency_ttl_secs,
            sold_out: SoldOutCache::new(),
            replica_acks: Arc::new(ReplicaAcks::off()),
        }
    }

    /// Answers a purchase (or a replay of it, or an `already_purchased` naming it) only
    /// once `acks` says enough replicas have it, else [`GateOutcome::NotReplicated`]: see
    /// [`ReplicaAcks`].
    pub fn with_replica_acks(mut self, acks: ReplicaAcks) -> Self {
        self.replica_acks = Arc::new(acks);
        self
    }

    /// The local sold-out views; [`SoldOutCache::run_invalidator`] must run for them to be
    /// used.
    pub fn sold_out_cache(&self) -> Arc<SoldOutCache> {
        self.sold_out.clone()
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// A handle on the shared connection, for other Redis work of the request path.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Decides one attempt: from the local sold-out view when that is exact (no round trip),
    /// else by running `lua/purchase.lua` (one round trip, shared with the activity's
    /// other purchases that queued with it: [`purchase`]).
    pub async fn purchase(
        &self,
        attempt: &PurchaseAttempt<'_>,
    ) -> Result<GateOutcome, redis::RedisError> {
        if let Some(outcome) =
            self.sold_out
                .decide(attempt.activity, attempt.user, attempt.quantity)
        {
            metrics::counter!("seckill_gate_local_answers_total").increment(1);
            return Ok(outcome);
        }
        let mut outcome = self.purchases.decide(attempt).await?;
        // The activity's keys only when needed: building them is eight allocations, a
        // visible part of a purchase's CPU when every request did it.
        let keys = || self.keys.activity(attempt.activity);
        let replicas = self.replica_acks.required();
        // A replay too (its first answer may have been this very 503), and an
        // already_purchased: each shows the buyer an order.
        let shown = match &outcome {
            GateOutcome::Accepted { order, .. }
            | GateOutcome::Replay(order)
            | GateOutcome::AlreadyPurchased(order) => Some(order.order_id),
            _ => None,
        };
        if let Some(order_id) = shown.filter(|_| replicas > 0) {
            let reached = self
                .replica_acks
                .confirm(&keys(), attempt.user, order_id)
                .await?;
            if reached < replicas {
                metrics::counter!("seckill_replica_ack_timeouts_total").increment(1);
                outcome = GateOutcome::NotReplicated { reached };
            }
        }
        if matches!(outcome, GateOutcome::SoldOut { remaining } if remaining <= 0) {
            self.sold_out
                .load_in_background(self.conn.clone(), attempt.activity, keys());
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn replies_parse_into_outcomes() {
        assert_eq!(
            GateOutcome::parse(v(&["accepted", "5:1:9", "3"])).unwrap(),
            GateOutcome::Accepted {
                order: OrderRecord {
                    order_id: 5,
                    quantity: 1,
                    created_ms: 9
                },
                remaining: 3
            }
        );
        assert_eq!(
            GateOutcome::parse(v(&["sold_out", "0"])).unwrap(),
            GateOutcome::SoldOut { remaining: 0 }
        );
        assert!(GateOutcome::parse(v(&["accepted", "garbage", "3"])).is_err());
        assert!(GateOutcome::parse(v(&["what"])).is_err());
        assert!(GateOutcome::parse(vec![]).is_err());
    }

    #[test]
    fn every_script_has_its_source() {
        for name in script_names() {
            let src = script_source(name).unwrap_or_default();
            assert!(src.starts_with("#!lua\n"), "{name}");
        }
        assert!(script_source("purchase")
            .unwrap_or_default()
            .contains("local F_INTENT"));
        assert_eq!(script_source("nope"), None);
    }
}
