//! Reads of the gate's state: the public activity view, a buyer's pending order, the
//! writer's backlog for admin stats.

use redis::AsyncCommands;

use super::{ActivityKeys, Gate, OrderRecord, WRITER_GROUP};
use crate::domain::{ActivityId, UserId};

/// An activity as Redis holds it during the sale.
#[derive(Debug, Clone)]
pub struct ActivitySnapshot {
    pub name: String,
    pub total_stock: i64,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub per_user_limit: i64,
    /// 0 for a state seeded before prices existed.
    pub price_cents: i64,
    /// `None` when the stock key is missing (not sellable).
    pub remaining_stock: Option<i64>,
    /// Orders accepted by the gate.
    pub accepted_orders: i64,
}

/// Stream entries of one activity that are not in MySQL yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamBacklog {
    /// Delivered to a writer, not acknowledged.
    pub pending: u64,
    /// Not delivered to any writer yet.
    pub undelivered: u64,
    /// Moved to the dead-letter stream.
    pub dead_letters: u64,
}

/// Why a lookup shows no order.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// With `redis.replica_acks`: the buyer's order is on the master, but not yet on enough
    /// replicas (a failover could still lose it), so it is not shown, as its purchase was
    /// not answered `201`.
    #[error("the order reached {reached} Redis replica(s), fewer than required")]
    NotReplicated { reached: u32 },
}

type MetaFields = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl Gate {
    /// The activity's sale state, or `None` when Redis holds none.
    pub async fn snapshot(
        &self,
        id: ActivityId,
    ) -> Result<Option<ActivitySnapshot>, redis::RedisError> {
        let k = self.keys.activity(id);
        let ((name, total, starts, ends, limit, price), remaining, accepted): (
            MetaFields,
            Option<i64>,
            i64,
        ) = redis::pipe()
            .hmget(
                &k.meta,
                &["name", "total", "starts_ms", "ends_ms", "limit", "price"],
            )
            .get(&k.stock)
            .hlen(&k.buyers)
            .query_async(&mut self.conn.clone())
            .await?;
        let (Some(name), Some(total), Some(starts), Some(ends), Some(limit)) =
            (name, total, starts, ends, limit)
        else {
            return Ok(None);
        };
        Ok(Some(ActivitySnapshot {
            name,
            total_stock: total,
            starts_ms: starts,
            ends_ms: ends,
            per_user_limit: limit,
            price_cents: price.unwrap_or(0),
            remaining_stock: remaining,
            accepted_orders: accepted,
        }))
    }

    /// The order the gate recorded for this buyer in this activity.
    pub async fn buyer_record(
        &self,
        activity: ActivityId,
        user: UserId,
    ) -> Result<Option<OrderRecord>, LookupError> {
        let k = self.keys.activity(activity);
        let raw: Option<String> = self.conn.clone().hget(&k.buyers, user.get()).await?;
        let Some(record) = raw.as_deref().and_then(OrderRecord::parse) else {
            return Ok(None);
        };
        self.replicated(&k, user, record.order_id).await?;
        Ok(Some(record))
    }

    /// With `redis.replica_acks`: an order only Redis holds is shown only once enough
    /// replicas have it, like its purchase's `201`.
    async fn replicated(
        &self,
        k: &ActivityKeys,
        user: UserId,
        order_id: u64,
    ) -> Result<(), LookupError> {
        let required = self.replica_acks.required();
        if required == 0 {
            return Ok(());
        }
        let reached = self.replica_acks.confirm(k, user, order_id).await?;
        if reached < required {
            return Err(LookupError::NotReplicated { reached });
        }
        Ok(())
    }

    /// Finds an accepted order of this buyer by id across every seeded activity: an order
    /// id alone does not name its activity, and a pending order is only in Redis.
    pub async fn find_order(
        &self,
        user: UserId,
        order_id: u64,
    ) -> Result<Option<(ActivityId, OrderRecord)>, LookupError> {
        let mut conn = self.conn.clone();
        let ids: Vec<u64> = conn.smembers(self.keys.activities()).await?;
        if ids.is_empty() {
            return Ok(None);
        }
        // One command per activity, sent together: on a cluster each activity's buyers
        // live in a slot of their own, and one pipeline goes to one node.
        let records: Vec<Option<String>> =
            futures_util::future::try_join_all(ids.iter().map(|&id| {
                let mut conn = conn.clone();
                let buyers = self.keys.activity(ActivityId::new(id)).buyers;
                async move { conn.hget(buyers, user.get()).await }
            }))
            .await?;
        let found = ids.into_iter().zip(records).find_map(|(id, raw)| {
            let record = OrderRecord::parse(raw.as_deref()?)?;
            (record.order_id == order_id).then_some((ActivityId::new(id), record))
        });
        if let Some((activity, _)) = &found {
            self.replicated(&self.keys.activity(*activity), user, order_id)
                .await?;
        }
        Ok(found)
    }

    /// The activity's price and payment window as seeded (`None` for a state seeded before
    /// they existed): the terms a pending order will be stored with.
    pub async fn payment_terms(
        &self,
        id: ActivityId,
    ) -> Result<Option<(i64, i64)>, redis::RedisError> {
        let (price, window): (Option<i64>, Option<i64>) = self
            .conn
            .clone()
            .hmget(self.keys.activity(id).meta, &["price", "window"])
            .await?;
        Ok(price.zip(window))
    }

    /// The writer's backlog on this activity's stream.
    pub async fn backlog(&self, id: ActivityId) -> Result<StreamBacklog, redis::RedisError> {
        stream_backlog(&mut self.conn.clone(), &self.keys.activity(id)).await
    }

    /// How long the oldest order waiting for the writer has waited (ms, on Redis' clock, which
    /// stamped its entry id `<ms>-<seq>`), or `None` when none waits.
    pub async fn writer_lag_ms(&self, id: ActivityId) -> Result<Option<u64>, redis::RedisError> {
        let (oldest, (secs, micros)): (redis::streams::StreamRangeReply, (u64, u64)) =
            redis::pipe()
                .cmd("XRANGE")
                .arg(&self.keys.activity(id).stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("TIME")
                .query_async(&mut self.conn.clone())
                .await?;
        let now_ms = secs * 1000 + micros / 1000;
        Ok(oldest
            .ids
            .first()
            .and_then(|e| e.id.split('-').next()?.parse::<u64>().ok())
            .map(|appended| now_ms.saturating_sub(appended)))
    }
}

/// The writer's backlog on one activity's stream (also used by the writer for its gauge).
pub async fn stream_backlog<C: redis::aio::ConnectionLike + Send + Sync>(
    conn: &mut C,
    k: &ActivityKeys,
) -> Result<StreamBacklog, redis::RedisError> {
    // The writer's ack trims what the group is done with (lua/ack.lua), so the stream holds
    // the backlog: delivered-not-acked (the group's pending count) plus never delivered
    // (plus, counted as undelivered for a moment, batches acked behind an older pending
    // one). (XINFO's `lag` is not used: Redis reports it as unknown in some states after
    // deletions.)
    let (len, dead_letters): (u64, u64) = redis::pipe()
        .xlen(&k.stream)
        .xlen(&k.dead)
        .query_async(conn)
        .await?;
    if len == 0 {
        return Ok(StreamBacklog {
            dead_letters,
            ..Default::default()
        });
    }
    let info: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(&k.stream).await?;
    let pending = info
        .groups
        .iter()
        .find(|g| g.name == WRITER_GROUP)
        .map_or(0, |g| g.pending as u64);
    Ok(StreamBacklog {
        pending,
        undelivered: len.saturating_sub(pending),
        dead_letters,
    })
}
