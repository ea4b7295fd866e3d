//! The Redis key layout, in one place.
//!
//! Every key starts with `redis.key_prefix`, so two deployments (or two test runs) can share
//! one Redis. The keys of one activity share the hash tag `{a:<id>}`, so the purchase script
//! touches a single Cluster slot.

use crate::domain::{ActivityId, UserId};
use crate::idempotency::IdempotencyKey;

/// The key namespace of one deployment.
#[derive(Debug, Clone)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Set of the ids of every seeded activity: the writer drains their streams, the order
    /// lookup searches their buyers for pending orders.
    pub fn activities(&self) -> String {
        format!("{}:activities", self.prefix)
    }

    /// Pub/sub channel on which the seed script announces a re-seeded activity id.
    pub fn seeded_channel(&self) -> String {
        format!("{}:seeded", self.prefix)
    }

    /// Lease on a snowflake instance id, held by one live process.
    pub fn instance_lease(&self, instance: u16) -> String {
        format!("{}:instance:{instance}", self.prefix)
    }

    /// Heartbeat of one writer consumer: present while the process runs (renewed with a
    /// short TTL). A consumer in the group without one is dead, and its unacknowledged
    /// entries are claimed by a live writer at once.
    pub fn writer_heartbeat(&self, consumer: &str) -> String {
        format!("{}:writer:{consumer}", self.prefix)
    }

    /// The sweeper lock (`owner:token`, with a lease) and the counter its fencing tokens
    /// come from: one hash tag, so the acquire script touches one Cluster slot.
    pub fn sweeper_lock(&self) -> (String, String) {
        (
            format!("{}:{{sweeper}}:lock", self.prefix),
            format!("{}:{{sweeper}}:fence", self.prefix),
        )
    }

    /// A `SCAN MATCH` / `KEYS` pattern of every activity's keys.
    pub fn every_activity_pattern(&self) -> String {
        format!("{}:{{a:*", self.prefix)
    }

    pub fn activity(&self, id: ActivityId) -> ActivityKeys {
        let base = format!("{}:{{a:{id}}}", self.prefix);
        ActivityKeys {
            meta: format!("{base}:meta"),
            stock: format!("{base}:stock"),
            buyers: format!("{base}:buyers"),
            stream: format!("{base}:stream"),
            dead: format!("{base}:dead"),
            returned: format!("{base}:returned"),
            replicated: format!("{base}:replicated"),
            base,
        }
    }
}

/// The keys of one activity.
#[derive(Debug, Clone)]
pub struct ActivityKeys {
    base: String,
    /// Hash: name, total, starts_ms, ends_ms, limit.
    pub meta: String,
    /// String: units left to sell.
    pub stock: String,
    /// Hash: user id → `order_id:quantity:created_ms`.
    pub buyers: String,
    /// Stream of accepted order intents.
    pub stream: String,
    /// Stream of entries the writer could never persist, with the reason.
    pub dead: String,
    /// Set of the order ids whose units went back to the stock (cancelled or expired): a
    /// second return of one order changes nothing.
    pub returned: String,
    /// Counter written by each replica confirmation (`lua/replica_check.lua`): a write of
    /// this connection after every accept the master had, which the `WAIT` after it covers.
    pub replicated: String,
}

impl ActivityKeys {
    /// The idempotency record of one (user, key) in this activity.
    pub fn idempotency(&self, user: UserId, key: &IdempotencyKey) -> String {
        self.idempotency_of(&user.to_string(), key.as_str())
    }

    /// The same from the user and key as text (a template's placeholders, for tools).
    pub fn idempotency_of(&self, user: &str, key: &str) -> String {
        format!("{}:idem:{user}:{key}", self.base)
    }

    /// The live payment token of one order (a string with a TTL).
    pub fn payment_token(&self, order_id: u64) -> String {
        format!("{}:paytoken:{order_id}", self.base)
    }

    /// A consumed payment token of one order: `payment_id|idempotency_key` of the pay
    /// request that consumed it, so a second use is told which payment took it. Keyed by
    /// the order too: presented for another order, the token is just invalid there.
    pub fn used_payment_token(&self, order_id: u64, token: &str) -> String {
        format!("{}:paytoken_used:{order_id}:{token}", self.base)
    }
}
