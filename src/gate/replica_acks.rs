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
//! Why connections of their own: Redis reads no further command from a client blocked in
//! `WAIT`, so on the shared connection every other command of the process to that master
//! (purchases, the instance lease) would queue behind it. One per confirmation in flight
//! (a small pool): on a shared one, an activity whose replicas lag would hold up the
//! confirmations of every other activity on that master, each waiting its whole timeout
//! in turn.
//!
//! Why many at a time: accepts of one activity group-commit ([`super::group_commit`]): at
//! most one confirmation per activity is in flight, and the buyers who arrive meanwhile are
//! confirmed together by the next one (one script call and one `WAIT` for all of them). A
//! confirmation that fails or times out answers `503` to the buyers of its batch only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::group_commit::{lock, GroupCommit};
use super::ActivityKeys;
use crate::domain::UserId;
use crate::redis_conn::{RedisClient, RedisConn};

/// How many replicas must confirm an accept, how long to wait, and the batches in flight.
pub struct ReplicaAcks {
    replicas: u32,
    timeout_ms: u64,
    /// Who confirms, for the metrics: `purchase` (the gate) or `writer`.
    by: &'static str,
    /// The confirmations' own connections; `None` when `replicas` is 0.
    pool: Option<Pool>,
    /// Per activity (its buyers key): (user id, order id) to confirm -> replicas reached.
    batches: GroupCommit<String, (u64, u64), redis::RedisResult<u32>>,
}

/// Connections used for confirmations only, one per confirmation in flight.
struct Pool {
    client: RedisClient,
    /// The runtime that opened the first connection (the service's main one): the others
    /// are opened there too, so that their I/O does not live on an HTTP worker's runtime,
    /// which stops first at shutdown.
    runtime: tokio::runtime::Handle,
    response_timeout: Duration,
    idle: Mutex<Vec<RedisConn>>,
}

/// Idle confirmation connections kept open: about the activities confirming at once. More
/// are opened while more confirmations are in flight (one per activity at most).
const IDLE_KEPT: usize = 64;

/// The most buyers one confirmation checks (the script's arguments).
const MAX_BATCH: usize = 1024;

impl ReplicaAcks {
    /// No confirmation: every accept is answered at once.
    pub fn off() -> Self {
        Self {
            replicas: 0,
            timeout_ms: 0,
            by: "purchase",
            pool: None,
            batches: GroupCommit::new(MAX_BATCH),
        }
    }

    /// Confirmations by `replicas` replicas (0: [`ReplicaAcks::off`]), each waiting up to
    /// `timeout_ms`, on connections of their own opened from `client`. Opens the first one
    /// now, so that a Redis that cannot be reached fails at startup. `by` names the caller
    /// in the metrics.
    pub async fn connect(
        client: &RedisClient,
        replicas: u32,
        timeout_ms: u64,
        by: &'static str,
    ) -> redis::RedisResult<Self> {
        if replicas == 0 {
            return Ok(Self::off());
        }
        // Redis checks a blocked client's timeout about ten times a second: the response
        // timeout allows for that and the round trip.
        let response_timeout = Duration::from_millis(timeout_ms) + Duration::from_secs(2);
        let mut first = client.own(response_timeout).await?;
        match fewest_replicas(client, &mut first).await {
            Ok(have) if have < replicas => tracing::warn!(
                replica_acks = replicas,
                fewest_replicas = have,
                "redis.replica_acks exceeds the replicas of a master: its purchases will be \
                 answered 503 until it has enough"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot count the Redis replicas"),
        }
        Ok(Self {
            replicas,
            timeout_ms,
            by,
            pool: Some(Pool {
                client: client.clone(),
                runtime: tokio::runtime::Handle::current(),
                response_timeout,
                idle: Mutex::new(vec![first]),
            }),
            batches: GroupCommit::new(MAX_BATCH),
        })
    }

    /// How many replicas an accept needs (0: none, answered at once).
    pub fn required(&self) -> u32 {
        self.replicas
    }

    /// How many replicas have `user`'s order `order_id` in this activity: 0 when the master
    /// does not have it (any more). Call after the purchase script answered.
    pub async fn confirm(
        self: &Arc<Self>,
        keys: &ActivityKeys,
        user: UserId,
        order_id: u64,
    ) -> redis::RedisResult<u32> {
        let (this, k) = (self.clone(), keys.clone());
        let confirm_batch = move |orders: Vec<(u64, u64)>| async move {
            match this.check(&k, &orders).await {
                Ok((found, reached)) => (0..orders.len())
                    .map(|i| {
                        Ok(if found.get(i) == Some(&true) {
                            reached
                        } else {
                            0
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(e); orders.len()],
            }
        };
        self.batches
            .submit(&keys.buyers, (user.get(), order_id), confirm_batch)
            .await
            .unwrap_or_else(|lost| Err(lost.into_redis("replica confirmation")))
    }

    /// One confirmation of `orders` (user id, order id): which of them this master holds,
    /// and how many replicas have everything it held when asked. The check script and
    /// `WAIT`, pipelined on the activity's master.
    pub async fn check(
        &self,
        keys: &ActivityKeys,
        orders: &[(u64, u64)],
    ) -> redis::RedisResult<(Vec<bool>, u32)> {
        let Some(pool) = &self.pool else {
            return Ok((vec![true; orders.len()], 0));
        };
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
        let mut conn = pool.take().await?;
        metrics::counter!("seckill_replica_waits_total", "by" => self.by).increment(1);
        // The connection's own response timeout (a little above the WAIT's) bounds this: a
        // timeout there also makes a cluster connection look for a new master.
        let reply = conn.pipeline_on(&keys.buyers, &pipe).await?;
        // Only a connection that answered goes back: one that failed may still be blocked.
        pool.give_back(conn);
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

    /// The activities with confirmations queued or in flight (for tests).
    #[doc(hidden)]
    pub fn groups_held(&self) -> usize {
        self.batches.groups_held()
    }
}

impl Pool {
    async fn take(&self) -> redis::RedisResult<RedisConn> {
        let idle = lock(&self.idle).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let (client, timeout) = (self.client.clone(), self.response_timeout);
                self.runtime
                    .spawn(async move { client.own(timeout).await })
                    .await
                    .map_err(|e| {
                        redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "opening a confirmation connection",
                            e.to_string(),
                        ))
                    })?
            }
        }
    }

    fn give_back(&self, conn: RedisConn) {
        let mut idle = lock(&self.idle);
        if idle.len() < IDLE_KEPT {
            idle.push(conn);
        }
    }
}

/// The fewest replicas any master has now: `INFO replication` on one server, `CLUSTER
/// NODES` on a cluster.
async fn fewest_replicas(client: &RedisClient, conn: &mut RedisConn) -> redis::RedisResult<u32> {
    if client.is_cluster() {
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
        return Ok(fewest_in_cluster_nodes(&nodes));
    }
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("connected_slaves:")?.trim().parse().ok())
        .unwrap_or(0))
}

/// The fewest linked replicas of a master serving slots, from `CLUSTER NODES` (one node per
/// line: id, address, flags, master id, ping, pong, epoch, link state, slots...).
fn fewest_in_cluster_nodes(nodes: &str) -> u32 {
    let rows: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
    let flags = |r: &Vec<&str>, f: &str| r.get(2).is_some_and(|x| x.split(',').any(|g| g == f));
    rows.iter()
        .filter(|r| flags(r, "master") && !flags(r, "fail") && r.len() > 8)
        .map(|m| {
            rows.iter()
                .filter(|r| {
                    flags(r, "slave")
                        && !flags(r, "fail")
                        && r.get(3) == m.first()
                        && r.get(7) == Some(&"connected")
                })
                .count() as u32
        })
        .min()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::fewest_in_cluster_nodes;

    #[test]
    fn counts_the_linked_replicas_of_the_masters_serving_slots() {
        let nodes = "\
a1 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7102@17102 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7103@17103 master - 0 0 3 connected 10923-16383
r1 127.0.0.1:7104@17104 slave a1 0 0 1 connected
r2 127.0.0.1:7105@17105 slave a2 0 0 2 connected
r3 127.0.0.1:7106@17106 slave a3 0 0 3 connected
r4 127.0.0.1:7107@17107 slave a3 0 0 3 connected
x0 127.0.0.1:7108@17108 master - 0 0 0 connected
";
        assert_eq!(fewest_in_cluster_nodes(nodes), 1);
        let failed = nodes.replace("slave a2 0 0 2 connected", "slave,fail a2 0 0 2 connected");
        assert_eq!(fewest_in_cluster_nodes(&failed), 0);
        let unlinked = nodes.replace("slave a1 0 0 1 connected", "slave a1 0 0 1 disconnected");
        assert_eq!(fewest_in_cluster_nodes(&unlinked), 0);
        assert_eq!(fewest_in_cluster_nodes(""), 0);
    }
}
