//! The order writer: drains the activity streams into MySQL (invariant I4).
//!
//! The gate answers `201` as soon as the order intent is in the activity's Redis Stream. From
//! there the writer, a member of the consumer group [`WRITER_GROUP`], reads entries in
//! batches, persists each activity's batch in one MySQL transaction ([`persist`]) and acks
//! the entries only after the commit. So an entry is acked only when its row is durable:
//!
//! - a crash before the commit leaves the entries pending in the group; any writer reclaims
//!   them (`XAUTOCLAIM`) once they have been idle for `writer.claim_idle_ms`;
//! - a crash between commit and ack re-delivers entries already stored: the batch finds their
//!   users already present and inserts nothing, and the entries are acked;
//! - MySQL down: the batch fails, nothing is acked, the writer backs off and re-reads its own
//!   pending entries first when MySQL is back;
//! - an entry that can never be stored (malformed, unknown activity) is moved to the
//!   activity's dead-letter stream with the reason, so it does not block the others.
//!
//! Consumer names are unique per process, so two writers never share a pending list.
//!
//! The writer reads with `XREADGROUP … BLOCK` on a connection of its own: a blocking read
//! would hold up every request queued behind it on the shared multiplexed connection.

mod intent;
mod persist;

pub use intent::OrderIntent;
pub use persist::{persist_batch, BatchOutcome, PersistError};

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::AsyncCommands;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::configuration::WriterSettings;
use crate::domain::ActivityId;
use crate::gate::{stream_backlog, ActivityKeys, KeySpace, WRITER_GROUP};

/// How often the writer re-reads the set of activities (new sales start mid-run).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// One activity stream the writer drains.
struct Source {
    id: ActivityId,
    keys: ActivityKeys,
}

/// The writer of one process.
pub struct Writer {
    client: redis::Client,
    conn: MultiplexedConnection,
    db: DatabaseConnection,
    keys: KeySpace,
    consumer: String,
    settings: WriterSettings,
    sources: Vec<Source>,
    last_refresh: Option<Instant>,
    last_claim: Instant,
    /// After a failed batch: re-read our own pending entries (id `0`) before new ones.
    reread_own: bool,
}

impl Writer {
    /// Opens the writer's own Redis connection (no response timeout: it blocks on reads).
    pub async fn new(
        client: &redis::Client,
        db: DatabaseConnection,
        keys: KeySpace,
        settings: WriterSettings,
    ) -> Result<Self, redis::RedisError> {
        let conn = connect(client).await?;
        let consumer = format!(
            "writer-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Ok(Self {
            client: client.clone(),
            conn,
            db,
            keys,
            consumer,
            settings,
            sources: Vec::new(),
            last_refresh: None,
            last_claim: Instant::now(),
            reread_own: true,
        })
    }

    /// This process's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs until `shutdown` fires. The batch in hand when it fires is committed and acked
    /// before returning; entries read but not committed stay pending and are reclaimed.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(consumer = %self.consumer, "order writer started");
        let mut delay = Duration::from_millis(self.settings.retry_min_ms);
        while !shutdown.is_cancelled() {
            match self.step().await {
                Ok(_) => delay = Duration::from_millis(self.settings.retry_min_ms),
                Err(e) => {
                    metrics::counter!("seckill_writer_errors_total").increment(1);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "writer batch failed");
                    self.reread_own = true;
                    if e.downcast_ref::<redis::RedisError>().is_some() {
                        // A multiplexed connection does not come back by itself once its
                        // socket is gone: open a new one (a failure here is retried).
                        match connect(&self.client).await {
                            Ok(conn) => self.conn = conn,
                            Err(e) => {
                                tracing::warn!(error = %e, "writer cannot reconnect to redis")
                            }
                        }
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_millis(self.settings.retry_max_ms));
                }
            }
        }
        tracing::info!(consumer = %self.consumer, "order writer stopped");
    }

    /// One cycle: refresh the stream list, reclaim idle entries, read and persist a batch.
    /// Returns the number of entries acked.
    pub async fn step(&mut self) -> anyhow::Result<usize> {
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
        {
            self.refresh().await?;
        }
        if self.sources.is_empty() {
            tokio::time::sleep(Duration::from_millis(self.settings.block_ms)).await;
            return Ok(0);
        }
        let mut acked = 0;
        let claim_every = Duration::from_millis((self.settings.claim_idle_ms / 2).max(100));
        if self.last_claim.elapsed() >= claim_every {
            self.last_claim = Instant::now();
            acked += self.reclaim().await?;
        }
        acked += self.read_and_persist().await?;
        Ok(acked)
    }

    /// Re-reads the set of seeded activities and makes sure each stream has the group.
    async fn refresh(&mut self) -> redis::RedisResult<()> {
        let mut ids: Vec<u64> = self.conn.smembers(self.keys.activities()).await?;
        ids.sort_unstable();
        let mut backlog_total = 0;
        let mut sources = Vec::with_capacity(ids.len());
        for id in ids {
            let id = ActivityId::new(id);
            let keys = self.keys.activity(id);
            if !self.sources.iter().any(|s| s.id == id) {
                ensure_group(&mut self.conn, &keys.stream).await?;
            }
            let backlog = stream_backlog(&mut self.conn, &keys).await?;
            backlog_total += backlog.pending + backlog.undelivered;
            sources.push(Source { id, keys });
        }
        metrics::gauge!("seckill_writer_backlog").set(backlog_total as f64);
        self.sources = sources;
        self.last_refresh = Some(Instant::now());
        Ok(())
    }

    /// Reads up to a batch from every stream and persists each stream's entries.
    async fn read_and_persist(&mut self) -> anyhow::Result<usize> {
        let start = if self.reread_own { "0" } else { ">" };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(WRITER_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.settings.batch_size);
        if !self.reread_own {
            cmd.arg("BLOCK").arg(self.settings.block_ms);
        }
        cmd.arg("STREAMS");
        for s in &self.sources {
            cmd.arg(&s.keys.stream);
        }
        for _ in &self.sources {
            cmd.arg(start);
        }
        let reply: Option<StreamReadReply> = match cmd.query_async(&mut self.conn).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost the group (restart without persistence): recreate and go on.
                self.last_refresh = None;
                self.sources.clear();
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let mut acked = 0;
        let mut any = false;
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(idx) = self
                .sources
                .iter()
                .position(|s| s.keys.stream == stream.key)
            else {
                continue;
            };
            if stream.ids.is_empty() {
                continue;
            }
            any = true;
            acked += self.handle(idx, &stream.ids).await?;
        }
        if self.reread_own && !any {
            // Our own pending list is empty: go back to reading new entries.
            self.reread_own = false;
        }
        Ok(acked)
    }

    /// Claims entries left pending by dead consumers and persists them.
    async fn reclaim(&mut self) -> anyhow::Result<usize> {
        let mut acked = 0;
        for idx in 0..self.sources.len() {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.sources[idx].keys.stream)
                .arg(WRITER_GROUP)
                .arg(&self.consumer)
                .arg(self.settings.claim_idle_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(self.settings.batch_size)
                .query_async(&mut self.conn)
                .await?;
            if !reply.claimed.is_empty() {
                tracing::info!(
                    activity = %self.sources[idx].id,
                    entries = reply.claimed.len(),
                    "reclaimed entries of a dead consumer"
                );
                acked += self.handle(idx, &reply.claimed).await?;
            }
        }
        Ok(acked)
    }

    /// Persists one stream's entries, dead-letters the poison ones, acks after commit.
    async fn handle(&mut self, idx: usize, entries: &[StreamId]) -> anyhow::Result<usize> {
        let (id, keys) = (self.sources[idx].id, self.sources[idx].keys.clone());
        let mut intents = Vec::with_capacity(entries.len());
        let mut poison = Vec::new();
        for entry in entries {
            match OrderIntent::parse(entry) {
                Ok(i) => intents.push(i),
                Err(reason) => poison.push((entry, reason)),
            }
        }
        if !intents.is_empty() {
            let started = Instant::now();
            match persist_batch(&self.db, id, &intents).await {
                Ok(outcome) => {
                    record_batch(&outcome, started.elapsed(), &intents);
                    let ids: Vec<&str> = intents.iter().map(|i| i.entry_id.as_str()).collect();
                    let _: () = self.conn.xack(&keys.stream, WRITER_GROUP, &ids).await?;
                }
                Err(PersistError::Poison(reason)) => {
                    let ids: Vec<&String> = intents.iter().map(|i| &i.entry_id).collect();
                    poison.extend(
                        entries
                            .iter()
                            .filter(|e| ids.contains(&&e.id))
                            .map(|e| (e, reason.clone())),
                    );
                }
                Err(PersistError::Db(e)) => return Err(e.into()),
            }
        }
        for (entry, reason) in &poison {
            self.dead_letter(&keys, entry, reason).await?;
        }
        Ok(entries.len())
    }

    /// Moves one entry to the dead-letter stream with its reason, atomically with its ack.
    async fn dead_letter(
        &mut self,
        keys: &ActivityKeys,
        entry: &StreamId,
        reason: &str,
    ) -> redis::RedisResult<()> {
        tracing::error!(entry = %entry.id, stream = %keys.stream, reason, "dead-lettering order intent");
        metrics::counter!("seckill_writer_orders_total", "result" => "dead_letter").increment(1);
        let mut fields: Vec<(String, Vec<u8>)> = vec![
            ("entry".into(), entry.id.clone().into_bytes()),
            ("reason".into(), reason.as_bytes().to_vec()),
        ];
        // Keep the original fields as they were, whatever their type.
        fields.extend(entry.map.iter().map(|(k, v)| {
            let raw = match v {
                redis::Value::BulkString(b) => b.clone(),
                other => format!("{other:?}").into_bytes(),
            };
            (format!("orig_{k}"), raw)
        }));
        redis::pipe()
            .atomic()
            .xadd(&keys.dead, "*", &fields)
            .ignore()
            .xack(&keys.stream, WRITER_GROUP, &[&entry.id])
            .ignore()
            .query_async(&mut self.conn)
            .await
    }
}

/// The writer's own connection: no response timeout, since `XREADGROUP … BLOCK` waits.
async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Creates the consumer group at the start of the stream unless it exists.
async fn ensure_group(conn: &mut MultiplexedConnection, stream: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> =
        conn.xgroup_create_mkstream(stream, WRITER_GROUP, "0").await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
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
