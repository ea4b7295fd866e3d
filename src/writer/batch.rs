//! One stream's entries on their way to MySQL: persist, then ack; dead-letter what can never
//! be stored. Runs as its own task, so the writer can read the next batch meanwhile.
//!
//! When MySQL refuses a batch for the data it carries (SQLSTATE class 22, 23 or 45: see
//! [`is_data_error`]), one entry may be at fault and would block every entry read with it,
//! forever. So the batch is retried one entry at a time: the good entries are stored and
//! acked, and an entry that keeps failing is counted ([`Attempts`]) and, after
//! `writer.max_attempts` failures, moved to the dead-letter stream with the error as its
//! reason. Every other failure (MySQL unreachable, read-only, full, deadlocked…) says
//! nothing about the entries and is never counted: the writer backs off and retries the
//! whole batch, for as long as it takes; the gate's `writer.max_backlog` pauses the sale
//! meanwhile. Dead-lettering an accepted order on such an error would lose it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redis_conn::RedisConn;
use sea_orm::{DatabaseConnection, DbErr};

use super::entry::Entry;
use super::intent::OrderIntent;
use super::persist::{persist_batch, BatchOutcome, PersistError};
use super::terms::TermsCache;
use crate::domain::ActivityId;
use crate::gate::stream::{dead_letter, StreamAck};
use crate::gate::{ActivityKeys, ReplicaAcks, WRITER_GROUP};
use crate::store::is_data_error;

/// Failed attempts per (stream, entry id) — entry ids repeat across streams — for the
/// entries failing now. Kept in memory: after a restart an entry gets `max_attempts` fresh
/// attempts, which only delays its dead letter.
#[derive(Default)]
pub(super) struct Attempts(Mutex<HashMap<(String, String), u32>>);

impl Attempts {
    /// Counts one more failure of `entry`; returns the count.
    fn bump(&self, stream: &str, entry: &str) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map
            .entry((stream.to_owned(), entry.to_owned()))
            .or_default();
        *n += 1;
        *n
    }

    fn forget(&self, stream: &str, entry: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(stream.to_owned(), entry.to_owned()));
    }
}

/// Why storing entries stopped: the commit failed, or the ack after a commit did (a Redis
/// error: the entries are re-delivered and found already stored).
enum StoreError {
    Persist(PersistError),
    Ack(redis::RedisError),
}

impl From<PersistError> for StoreError {
    fn from(e: PersistError) -> Self {
        Self::Persist(e)
    }
}

/// Entries of one activity stream, read by this writer and not yet acked.
pub(super) struct Batch {
    pub activity: ActivityId,
    pub keys: ActivityKeys,
    pub entries: Vec<Entry>,
    pub db: DatabaseConnection,
    /// A connection that never blocks (the reading one waits in `XREADGROUP … BLOCK`).
    pub conn: RedisConn,
    pub attempts: Arc<Attempts>,
    /// Price and payment window of the activities this writer stores.
    pub terms: Arc<TermsCache>,
    pub max_attempts: u32,
    /// `writer.max_in_flight` permits: one read can return a batch per stream (and reclaimed
    /// ones), more than the writer's pool has connections; they queue here rather than on
    /// the pool, whose acquire timeout would turn a wait into a failure and a backoff.
    pub permits: Arc<tokio::sync::Semaphore>,
    /// With `redis.replica_acks`: only entries the replicas have are stored.
    pub replica_acks: Option<Arc<ReplicaAcks>>,
    pub stream_ack: Arc<StreamAck>,
}

impl Batch {
    /// Commits the batch's orders, then acks its entries. Poison entries are moved to the
    /// dead-letter stream (atomically with their ack). On `Err` the entries not yet stored
    /// stay pending for a retry.
    pub async fn persist_and_ack(self) -> anyhow::Result<()> {
        let _permit = self.permits.clone().acquire_owned().await?;
        let mut intents = Vec::with_capacity(self.entries.len());
        let mut poison = Vec::new();
        for (idx, entry) in self.entries.iter().enumerate() {
            match OrderIntent::parse(entry) {
                Ok(i) => intents.push((i, idx)),
                Err(reason) => poison.push((idx, reason)),
            }
        }
        if let Some(acks) = &self.replica_acks {
            match self.replicated(acks, intents).await? {
                Some(kept) => intents = kept,
                // Not on the replicas yet: these entries stay pending (XAUTOCLAIM hands them
                // back after `writer.claim_idle_ms`), and the other activities go on.
                None => return Ok(()),
            }
        }
        let mut result = Ok(());
        if !intents.is_empty() {
            let all: Vec<OrderIntent> = intents.iter().map(|(i, _)| i.clone()).collect();
            match self.persist(&all).await {
                Ok(()) => {}
                Err(StoreError::Ack(e)) => return Err(e.into()),
                Err(StoreError::Persist(PersistError::Poison(reason))) => {
                    // The whole batch can never be stored (e.g. its activity is not in MySQL).
                    poison.extend(intents.iter().map(|&(_, idx)| (idx, reason.clone())));
                }
                Err(StoreError::Persist(PersistError::Db(e))) if !is_data_error(&e) => {
                    return Err(e.into())
                }
                Err(StoreError::Persist(PersistError::Db(e))) if intents.len() == 1 => {
                    result = self.count_failure(&intents[0], e).await;
                }
                Err(StoreError::Persist(PersistError::Db(e))) => {
                    tracing::warn!(error = %e, entries = intents.len(), activity = %self.activity,
                        "batch failed with MySQL reachable; retrying its entries one by one");
                    result = self.one_by_one(&intents).await;
                }
            }
        }
        for (idx, reason) in poison {
            self.dead_letter(&self.entries[idx], &reason).await?;
        }
        result
    }

    /// The intents whose orders the replicas have, or `None` while the replicas lag (this
    /// batch waits; one shard without its replica must not hold up the others). An order the
    /// master does not hold is dropped from the stream, never stored: a failover lost the
    /// accept before a replica had it, its buyer was answered 503, and a retry may have made
    /// another order. (Not a dead letter: `seckill recover` restores dead letters as
    /// accepted orders.)
    async fn replicated(
        &self,
        acks: &ReplicaAcks,
        intents: Vec<(OrderIntent, usize)>,
    ) -> anyhow::Result<Option<Vec<(OrderIntent, usize)>>> {
        if intents.is_empty() {
            return Ok(Some(intents));
        }
        let orders: Vec<(u64, u64)> = intents
            .iter()
            .map(|(i, _)| (i.user_id, i.order_id))
            .collect();
        let (found, reached) = acks.check(&self.keys, &orders).await?;
        if reached < acks.required() {
            metrics::counter!("seckill_writer_orders_total", "result" => "not_replicated")
                .increment(intents.len() as u64);
            tracing::debug!(activity = %self.activity, entries = intents.len(), reached,
                "entries not on enough replicas yet: left pending");
            return Ok(None);
        }
        let mut kept = Vec::with_capacity(intents.len());
        for ((intent, idx), on_master) in intents.into_iter().zip(found) {
            if on_master {
                kept.push((intent, idx));
            } else {
                tracing::warn!(activity = %self.activity, order_id = intent.order_id,
                    user_id = intent.user_id,
                    "order dropped: its master no longer holds it (lost in a failover before a \
                     replica had it; its buyer was answered 503)");
                metrics::counter!("seckill_writer_orders_total", "result" => "lost").increment(1);
                self.ack(&[intent.entry_id.as_str()]).await?;
            }
        }
        Ok(Some(kept))
    }

    /// Persists and acks `intents` in one transaction.
    async fn persist(&self, intents: &[OrderIntent]) -> Result<(), StoreError> {
        let started = Instant::now();
        let terms = self
            .terms
            .get(&self.db, self.activity)
            .await
            .map_err(PersistError::Db)?
            .ok_or_else(|| {
                PersistError::Poison(format!("activity {} is not in MySQL", self.activity))
            })?;
        let outcome = persist_batch(&self.db, self.activity, terms, intents).await?;
        record_batch(&outcome, started.elapsed(), intents);
        let ids: Vec<&str> = intents.iter().map(|i| i.entry_id.as_str()).collect();
        self.ack(&ids).await.map_err(StoreError::Ack)?;
        for id in ids {
            self.attempts.forget(&self.keys.stream, id);
        }
        Ok(())
    }

    /// Each entry in its own transaction; `Err` if some entry is still failing.
    async fn one_by_one(&self, intents: &[(OrderIntent, usize)]) -> anyhow::Result<()> {
        let mut result = Ok(());
        for pair in intents {
            match self.persist(std::slice::from_ref(&pair.0)).await {
                Ok(()) => {}
                Err(StoreError::Ack(e)) => return Err(e.into()),
                Err(StoreError::Persist(PersistError::Poison(reason))) => {
                    self.dead_letter(&self.entries[pair.1], &reason).await?
                }
                Err(StoreError::Persist(PersistError::Db(e))) if !is_data_error(&e) => {
                    return Err(e.into())
                }
                Err(StoreError::Persist(PersistError::Db(e))) => {
                    if let Err(e) = self.count_failure(pair, e).await {
                        result = Err(e);
                    }
                }
            }
        }
        result
    }

    /// One more failed attempt of one entry: dead-lettered at `max_attempts`, else `Err`
    /// (the writer backs off and retries).
    async fn count_failure(&self, pair: &(OrderIntent, usize), e: DbErr) -> anyhow::Result<()> {
        let (intent, idx) = pair;
        let n = self.attempts.bump(&self.keys.stream, &intent.entry_id);
        if n >= self.max_attempts {
            self.dead_letter(
                &self.entries[*idx],
                &format!("failed {n} times with MySQL reachable: {e}"),
            )
            .await?;
            self.attempts.forget(&self.keys.stream, &intent.entry_id);
            return Ok(());
        }
        tracing::warn!(error = %e, entry = %intent.entry_id, attempt = n, "order intent failed");
        Err(e.into())
    }

    /// Acks entries and trims from the stream what the group is done with, atomically
    /// (`lua/ack.lua`): the stream then holds the orders not yet in MySQL (what
    /// `writer.max_backlog` bounds), and for a moment the batches acked after an older one
    /// still committing.
    async fn ack(&self, ids: &[&str]) -> redis::RedisResult<()> {
        self.stream_ack
            .run(&mut self.conn.clone(), &self.keys.stream, ids)
            .await
            .map(drop)
    }

    /// Moves one entry to the dead-letter stream with its reason, atomically with its ack.
    async fn dead_letter(&self, entry: &Entry, reason: &str) -> redis::RedisResult<()> {
        let keys = &self.keys;
        tracing::error!(entry = %entry.id, stream = %keys.stream, reason, "dead-lettering order intent");
        metrics::counter!("seckill_writer_orders_total", "result" => "dead_letter").increment(1);
        let mut fields: Vec<(String, Vec<u8>)> = vec![
            (dead_letter::ENTRY.into(), entry.id.clone().into_bytes()),
            (dead_letter::REASON.into(), reason.as_bytes().to_vec()),
        ];
        // Keep the original fields as they were, whatever their type.
        fields.extend(entry.fields.iter().map(|(k, v)| {
            let raw = match v {
                redis::Value::BulkString(b) => b.clone(),
                other => format!("{other:?}").into_bytes(),
            };
            (dead_letter::original(k), raw)
        }));
        redis::pipe()
            .atomic()
            .xadd(&keys.dead, "*", &fields)
            .ignore()
            .xack(&keys.stream, WRITER_GROUP, &[&entry.id])
            .ignore()
            .xdel(&keys.stream, &[&entry.id])
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        // Entries acked while this one was pending can go now: no ack may follow to trim them.
        self.ack(&[]).await
    }
}

fn record_batch(outcome: &BatchOutcome, took: Duration, intents: &[OrderIntent]) {
    metrics::histogram!("seckill_writer_batch_seconds").record(took.as_secs_f64());
    metrics::histogram!("seckill_writer_batch_size").record(intents.len() as f64);
    for (result, n) in [
        ("created", outcome.created),
        ("rejected", outcome.rejected),
        ("duplicate", outcome.duplicates),
    ] {
        metrics::counter!("seckill_writer_orders_total", "result" => result).increment(n);
    }
    // Acceptance-to-commit lag of the oldest order in the batch.
    if let Some(oldest) = intents.iter().map(|i| i.created_ms).min() {
        let lag_ms = chrono::Utc::now().timestamp_millis() - oldest;
        metrics::histogram!("seckill_writer_lag_seconds").record(lag_ms.max(0) as f64 / 1000.0);
    }
}
