//! "Acknowledged means replicated": confirming an accept on the replicas, many at a time.
//!
//! With `redis.replica_acks = N` a purchase is answered `201` only once N replicas have it,
//! and so is a replay of it, or an `already_purchased` that names it (each shows the buyer
//! an order). One confirmation is a pipeline of two commands on a connection of its own:
//! `lua/replica_check.lua` (is the buyer's order on this master? plus one write) and
//! `WAIT N timeout`.
//!
//! Why the write: `WAIT` waits for the last write of *its own connection*. An accept
//! reaches the master over the request path's connection, or another process's, or one that
//! was since replaced; the check script's write comes after all of them in the master's
//! replication stream, so a replica that has it has them all. Why the check: after a
//! failover the pipeline may reach the promoted replica, which may never have received the
//! accept; its buyer is told 503 (the retry with the same key then gets the truth) instead
//! of `201` for an order that is gone.
//!
//! Why a connection of its own: Redis reads no further command from a client blocked in
//! `WAIT`, so on the shared connection every other command of the process to that master
//! (purchases, the instance lease) would queue behind it.
//!
//! Why many at a time: accepts of one activity group-commit. At most one confirmation per
//! activity is in flight; the buyers who arrive meanwhile are confirmed together by the
//! next one (one script call and one `WAIT` for all of them). A confirmation that fails or
//! times out answers `503` to the buyers of its batch only; the next batch starts afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::ActivityKeys;
use crate::domain::UserId;
use crate::redis_conn::RedisConn;

/// How many replicas must confirm an accept, how long to wait, and the batches in flight.
pub struct ReplicaAcks {
    replicas: u32,
    timeout_ms: u64,
    /// The confirmations' own connection; `None` when `replicas` is 0.
    conn: Option<RedisConn>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

/// The buyers of one activity waiting for a confirmation.
#[derive(Default)]
struct Group {
    pending: Mutex<Vec<Waiter>>,
    /// Held by the one confirmation in flight.
    flight: tokio::sync::Mutex<()>,
}

struct Waiter {
    /// (user id, order id)
    order: (u64, u64),
    answer: oneshot::Sender<redis::RedisResult<u32>>,
}

impl ReplicaAcks {
    /// No confirmation: every accept is answered at once.
    pub fn off() -> Self {
        Self {
            replicas: 0,
            timeout_ms: 0,
            conn: None,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Confirmations by `replicas` replicas, waiting up to `timeout_ms`, sent over `conn`
    /// (a connection used for nothing else: `WAIT` blocks it).
    pub fn new(replicas: u32, timeout_ms: u64, conn: RedisConn) -> Self {
        Self {
            replicas,
            timeout_ms,
            conn: (replicas > 0).then_some(conn),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// How many replicas an accept needs (0: none, answered at once).
    pub fn required(&self) -> u32 {
        self.replicas
    }

    /// How many replicas have `user`'s order `order_id` in this activity: 0 when the master
    /// does not have it (any more). Call after the purchase script answered.
    pub async fn confirm(
        &self,
        keys: &ActivityKeys,
        user: UserId,
        order_id: u64,
    ) -> redis::RedisResult<u32> {
        let order = (user.get(), order_id);
        let group = self.group(&keys.buyers);
        let (tx, mut rx) = oneshot::channel();
        push(&group, order, tx);
        let _flight = group.flight.lock().await;
        match rx.try_recv() {
            // A confirmation sent after this buyer arrived has answered while we queued.
            Ok(answer) => return answer,
            Err(oneshot::error::TryRecvError::Empty) => {}
            // The confirmation that took this buyer was cancelled (its request went away):
            // queue again, and lead the next one.
            Err(oneshot::error::TryRecvError::Closed) => {
                let (tx, again) = oneshot::channel();
                push(&group, order, tx);
                rx = again;
            }
        }
        let batch = std::mem::take(&mut *lock(&group.pending));
        let orders: Vec<(u64, u64)> = batch.iter().map(|w| w.order).collect();
        let answers = self.check(keys, &orders).await;
        for (i, waiter) in batch.into_iter().enumerate() {
            let answer = match &answers {
                Ok((found, reached)) if found.get(i) == Some(&true) => Ok(*reached),
                Ok(_) => Ok(0),
                Err(e) => Err(e.clone()),
            };
            // A waiter whose request went away has dropped its receiver: nothing to do.
            let _ = waiter.answer.send(answer);
        }
        rx.try_recv().unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "replica confirmation lost its answer",
            )))
        })
    }

    /// One confirmation of `orders` (user id, order id): which of them this master holds,
    /// and how many replicas have everything it held when asked. The check script and
    /// `WAIT`, pipelined on the activity's master.
    pub async fn check(
        &self,
        keys: &ActivityKeys,
        orders: &[(u64, u64)],
    ) -> redis::RedisResult<(Vec<bool>, u32)> {
        let Some(conn) = &self.conn else {
            return Ok((vec![true; orders.len()], 0));
        };
        metrics::counter!("seckill_replica_waits_total").increment(1);
        let mut pipe = redis::pipe();
        // EVAL with the source, not EVALSHA: a pipeline cannot fall back to loading the
        // script, and this runs once per batch, not per purchase.
        pipe.cmd("EVAL")
            .arg(super::script_source("replica_check").unwrap_or_default())
            .arg(2)
            .arg(&keys.buyers)
            .arg(&keys.replicated);
        for (user, order_id) in orders {
            pipe.arg(user).arg(order_id);
        }
        pipe.cmd("WAIT").arg(self.replicas).arg(self.timeout_ms);
        // The connection's own response timeout (a little above the WAIT's) bounds this: a
        // timeout there also makes a cluster connection look for a new master.
        let reply = conn.clone().pipeline_on(&keys.buyers, &pipe).await?;
        match reply.as_slice() {
            [found, reached] => Ok((
                redis::from_redis_value_ref::<Vec<i64>>(found)?
                    .into_iter()
                    .map(|f| f == 1)
                    .collect(),
                redis::from_redis_value_ref(reached)?,
            )),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "replica confirmation: unexpected reply",
                format!("{reply:?}"),
            ))),
        }
    }

    fn group(&self, key: &str) -> Arc<Group> {
        lock(&self.groups)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }
}

fn push(group: &Group, order: (u64, u64), answer: oneshot::Sender<redis::RedisResult<u32>>) {
    lock(&group.pending).push(Waiter { order, answer });
}

/// These locks are never held across an await or a call that can panic; a poisoned one
/// still holds a valid value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
