//! "Acknowledged means replicated": one `WAIT` for many accepts.
//!
//! With `redis.replica_acks = N` a purchase is answered `201` only once N replicas have it.
//! `WAIT N timeout` answers for every write its *connection* sent before it, and the request
//! path's connection is shared (multiplexed) by every purchase of this process. Redis also
//! stops reading a client's commands while that client is blocked in `WAIT`, so one `WAIT`
//! per accept would queue every purchase behind the previous accept's replication round
//! trip. Instead, accepts group-commit: at most one `WAIT` per slot is in flight, and when
//! it returns, one new `WAIT` covers every accept whose script reply had arrived before it
//! was sent.
//!
//! Why that is sound: an accept takes its arrival number only after its script's reply came
//! back on the shared connection, so its write is in that connection's stream before any
//! `WAIT` sent after the number was taken; a `WAIT` records the highest arrival number at
//! the moment it is sent (`upto`) and its answer is valid for every arrival up to it. When
//! a `WAIT` times out, every accept it covered is answered `503` (some may have reached the
//! replicas; the retry with the same key gets the true answer).
//!
//! The group is the slot (on one server every key shares the one connection, so there is one
//! group): a `WAIT` must go to the master that ran the script, and on a cluster
//! that is the master of the activity's slot.
//!
//! The limit of `WAIT` (and so of this module): it counts what *its* connection wrote. If the
//! connection is replaced between an accept's reply and its `WAIT` (a reconnect, or the
//! cluster client following a failover to the promoted replica), the new connection has
//! written nothing and `WAIT` answers at once with the replicas the node has. With one
//! replica per master (scripts/redis-cluster.sh) the promoted master has none, so the answer
//! is `503` and the retry tells the truth; with two or more replicas per master, an accept
//! whose master died in that instant could be answered `201` and lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::cluster_routing::Slot;

use crate::redis_conn::RedisConn;

/// How many replicas must confirm an accept, how long to wait, and the `WAIT`s in flight.
pub struct ReplicaAcks {
    replicas: u32,
    timeout_ms: u64,
    cluster: bool,
    groups: Mutex<HashMap<Option<Slot>, Arc<Group>>>,
}

/// The accepts of one slot.
#[derive(Default)]
struct Group {
    /// Accepts that asked for a confirmation so far (the last arrival number handed out).
    arrivals: AtomicU64,
    /// Held while this group's `WAIT` is in flight; holds the last answer.
    wait: tokio::sync::Mutex<Covered>,
}

/// The last `WAIT` answered: it covered arrivals up to `upto`, and `reached` replicas had them.
#[derive(Default)]
struct Covered {
    upto: u64,
    reached: u32,
}

impl ReplicaAcks {
    /// `replicas == 0` turns confirmation off.
    pub fn new(replicas: u32, timeout_ms: u64, cluster: bool) -> Self {
        Self {
            replicas,
            timeout_ms,
            cluster,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// How many replicas an accept needs (0: none, answered at once).
    pub fn required(&self) -> u32 {
        self.replicas
    }

    /// How many replicas have a write that `conn` sent to `key`'s master before this call
    /// (at least: a `WAIT` sent later may have covered it). Call only after the write's
    /// reply has arrived.
    pub async fn confirm(&self, conn: &RedisConn, key: &str) -> redis::RedisResult<u32> {
        let group = self.group(key);
        let me = group.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = group.wait.lock().await;
        if covered.upto >= me {
            // A WAIT sent after this accept arrived has answered while we queued.
            return Ok(covered.reached);
        }
        let upto = group.arrivals.load(Ordering::SeqCst);
        let reached = conn
            .clone()
            .wait_replicas(key, self.replicas, self.timeout_ms)
            .await?;
        // Accepts ÷ this counter is the mean number of accepts one WAIT confirmed.
        metrics::counter!("seckill_replica_waits_total").increment(1);
        *covered = Covered { upto, reached };
        Ok(reached)
    }

    fn group(&self, key: &str) -> Arc<Group> {
        let slot = self.cluster.then(|| Slot::for_key(key));
        // The lock is never held across an await or a panic-prone call: poisoning cannot
        // happen, but a poisoned map is still a valid map.
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.entry(slot).or_default().clone()
    }
}
