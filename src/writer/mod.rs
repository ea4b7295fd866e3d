//! The order writer: drains the activity streams into MySQL (invariant I4).
//!
//! The gate answers `201` as soon as the order intent is in the activity's Redis Stream. From
//! there the writer, a member of the consumer group [`WRITER_GROUP`], reads entries in
//! batches, persists each activity's batch in one MySQL transaction ([`persist`]) and acks
//! the entries only after the commit. So an entry is acked only when its row is durable:
//!
//! - a crash before the commit leaves the entries pending in the group. Every writer keeps a
//!   heartbeat key alive (`writer.heartbeat_ms`, TTL three times that); once a second each
//!   writer looks for consumers holding entries whose heartbeat is gone and claims their
//!   entries at once (`XCLAIM`), so a killed process's orders reach MySQL within a few
//!   seconds, restarted or not. As a last resort any entry idle for `writer.claim_idle_ms`
//!   is reclaimed (`XAUTOCLAIM`) whoever holds it. A writer that was only slow, not dead,
//!   may thus see its entries stored by another: that is the re-delivery case below, which
//!   inserts nothing twice;
//! - a crash between commit and ack re-delivers entries already stored: the batch finds their
//!   users already present and inserts nothing, and the entries are acked;
//! - MySQL down: the batch fails, nothing is acked, the writer backs off and re-reads its own
//!   pending entries first when MySQL is back;
//! - an entry that can never be stored (malformed, unknown activity, or failing
//!   `writer.max_attempts` times while MySQL is reachable) is moved to the activity's
//!   dead-letter stream with the reason, so it does not block the others;
//! - the ack trims from the stream every entry older than the oldest still pending
//!   (`lua/ack.lua`, in the same script), so the stream holds the accepted orders not yet
//!   in MySQL, plus, while an older batch is still committing, the newer ones already
//!   acked: the gate bounds that backlog (`writer.max_backlog`) and the admin stats report
//!   it with `XLEN`, a few batches high for that moment.
//!
//! Consumer names are unique per process, so two writers never share a pending list.
//!
//! The writer reads with `XREADGROUP … BLOCK` on a connection of its own: a blocking read
//! would hold up every request queued behind it on the shared multiplexed connection.

mod batch;
mod entry;
mod intent;
mod persist;
mod terms;

pub use entry::{Entry, StreamsRead};
pub use intent::OrderIntent;
pub use persist::{persist_batch, BatchOutcome, PersistError};
pub use terms::{Terms, TermsCache};

use std::time::{Duration, Instant};

use crate::redis_conn::{RedisClient, RedisConn};
use redis::streams::{StreamInfoConsumersReply, StreamPendingCountReply};
use redis::AsyncCommands;
use sea_orm::DatabaseConnection;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::configuration::WriterSettings;
use crate::domain::ActivityId;
use crate::gate::stream::StreamAck;
use crate::gate::{stream_backlog, ActivityKeys, KeySpace, ReplicaAcks, WRITER_GROUP};
use batch::{Attempts, Batch};
use entry::{AutoClaimed, Claimed};

/// How often the writer re-reads the set of activities (new sales start mid-run) and looks
/// for dead consumers' entries.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// A consumer without a heartbeat and without entries, idle this long, is removed from the
/// group (every process start adds a consumer name).
const FORGET_IDLE_MS: usize = 60_000;

/// Deletes a consumer only if it holds no entry: atomic, so entries a slow (not dead)
/// writer reads meanwhile are never dropped from the pending list.
const FORGET_CONSUMER: &str =
    "if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then \
     return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end return -1";

/// One activity stream the writer drains.
struct Source {
    id: ActivityId,
    keys: ActivityKeys,
}

/// The writer of one process.
pub struct Writer {
    client: RedisClient,
    /// Reads (blocking); acks and dead letters go through `ack_conn`.
    conn: RedisConn,
    ack_conn: RedisConn,
    db: DatabaseConnection,
    keys: KeySpace,
    consumer: String,
    settings: WriterSettings,
    sources: Vec<Source>,
    last_refresh: Option<Instant>,
    /// Look for dead consumers' entries at the next read (set by each refresh).
    dead_scan_due: bool,
    last_claim: Instant,
    /// After a failed batch: re-read our own pending entries (id `0`) before new ones.
    reread_own: bool,
    /// Whether the last read filled a batch (`batch_size` entries of one stream): a backlog
    /// to catch up on, read on while batches commit. After a read that did not, the next
    /// waits for a batch in flight to commit first (up to `block_ms`), so that it finds
    /// everything that arrived meanwhile: while the writer keeps up, each read would
    /// otherwise take the one or few entries of the latest purchase call, and each batch
    /// would pay a transaction and a round of acks for them (the writer's group commit).
    last_read_full: bool,
    attempts: std::sync::Arc<Attempts>,
    terms: std::sync::Arc<TermsCache>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// Set while draining at a graceful stop: reads return at once instead of blocking.
    draining: bool,
    /// With `redis.replica_acks`: entries are stored only once the replicas have them.
    replica_acks: Option<std::sync::Arc<ReplicaAcks>>,
    stream_ack: std::sync::Arc<StreamAck>,
}

impl Writer {
    /// Opens the writer's own Redis connection (no response timeout: it blocks on reads).
    pub async fn new(
        client: &RedisClient,
        db: DatabaseConnection,
        keys: KeySpace,
        settings: WriterSettings,
    ) -> Result<Self, redis::RedisError> {
        let conn = client.dedicated().await?;
        let ack_conn = client.dedicated().await?;
        let permits = settings.max_in_flight.max(1);
        let consumer = format!(
            "writer-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Ok(Self {
            client: client.clone(),
            conn,
            ack_conn,
            db,
            keys,
            consumer,
            settings,
            sources: Vec::new(),
            last_refresh: None,
            dead_scan_due: false,
            last_claim: Instant::now(),
            reread_own: true,
            last_read_full: true,
            attempts: Default::default(),
            terms: Default::default(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(permits)),
            draining: false,
            replica_acks: None,
            stream_ack: Default::default(),
        })
    }

    /// Stores an entry only once `replicas` replicas have its order ([`ReplicaAcks`]): an
    /// accept the master had not yet passed on can vanish in a failover, and the buyer's
    /// retry then makes another order, which MySQL must be free to take.
    pub fn with_replica_acks(mut self, acks: ReplicaAcks) -> Self {
        self.replica_acks = (acks.required() > 0).then(|| std::sync::Arc::new(acks));
        self
    }

    /// This process's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs until `shutdown` fires, then drains: stores what the streams hold until they
    /// are empty or `drain_for` has passed (see [`Writer::drain`]), and waits for the batches
    /// in flight to be committed and acked. Entries read but not committed stay pending and
    /// are reclaimed by the next writer.
    pub async fn run(mut self, shutdown: CancellationToken, drain_for: Duration) {
        tracing::info!(consumer = %self.consumer, "order writer started");
        // The heartbeat exists before the first read, so nobody takes our entries for a dead
        // consumer's; it stops with the process (or expires after a kill).
        let heartbeat = self.heartbeat_key();
        let beat = Duration::from_millis(self.settings.heartbeat_ms.max(10));
        let beating = CancellationToken::new();
        if let Err(e) = send_heartbeat(&mut self.ack_conn, &heartbeat, beat).await {
            tracing::warn!(error = %e, "writer heartbeat not written");
        }
        tokio::spawn(run_heartbeat(
            self.client.clone(),
            heartbeat.clone(),
            beat,
            beating.clone(),
        ));
        let min_delay = Duration::from_millis(self.settings.retry_min_ms);
        let mut delay = min_delay;
        let mut in_flight: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let max_in_flight = self.settings.max_in_flight.max(1);
        while !shutdown.is_cancelled() {
            // Collect finished batches. Until a failure shows up, wait for one when the
            // pipeline is full, and for all of them before re-reading our own pending
            // entries (after a failure: one round at a time; a read from `0` returns every
            // entry not yet acked, including those of batches still in flight, which would
            // run the same entries several times at once). The backoff starts again from
            // its minimum once a batch is stored.
            let mut failure = None;
            loop {
                let wait = failure.is_none()
                    && (in_flight.len() >= max_in_flight
                        || (self.reread_own && !in_flight.is_empty()));
                let done = if wait {
                    in_flight.join_next().await
                } else {
                    in_flight.try_join_next()
                };
                let Some(done) = done else { break };
                match flatten(done) {
                    Ok(()) => delay = min_delay,
                    Err(e) => failure = Some(e),
                }
            }
            // After a read that filled no batch, give the batches in flight up to
            // `block_ms` to commit before reading again (see `last_read_full`): at most
            // that long, so that a slow batch (a lock wait, a lagging replica) does not hold
            // up the other activities' reads.
            if failure.is_none() && !self.last_read_full && !in_flight.is_empty() {
                let linger = Duration::from_millis(self.settings.block_ms);
                if let Ok(Some(done)) = tokio::time::timeout(linger, in_flight.join_next()).await {
                    match flatten(done) {
                        Ok(()) => delay = min_delay,
                        Err(e) => failure = Some(e),
                    }
                }
            }
            let result = match failure {
                Some(e) => Err(e),
                None => self.fetch().await.map(|batches| {
                    for batch in batches {
                        in_flight.spawn(batch.persist_and_ack());
                    }
                }),
            };
            let Err(e) = result else {
                continue;
            };
            // A failure: let the other batches finish, then re-read our own pending entries
            // (they include the failed batch) after a pause.
            while let Some(done) = in_flight.join_next().await {
                if let Err(e) = flatten(done) {
                    tracing::warn!(error = %e, "writer batch failed");
                }
            }
            metrics::counter!("seckill_writer_errors_total").increment(1);
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "writer batch failed");
            self.reread_own = true;
            if e.downcast_ref::<redis::RedisError>().is_some() {
                self.reconnect().await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_millis(self.settings.retry_max_ms));
        }
        self.drain(&mut in_flight, max_in_flight, drain_for).await;
        // Gone at once rather than after its TTL: whatever this writer could not commit is
        // claimed by the other writers now.
        beating.cancel();
        let _: redis::RedisResult<()> = self.ack_conn.del(&heartbeat).await;
        tracing::info!(consumer = %self.consumer, "order writer stopped");
    }

    fn heartbeat_key(&self) -> String {
        self.keys.writer_heartbeat(&self.consumer)
    }

    /// At a graceful stop, this process accepts no more orders; the orders it (or others)
    /// accepted may still be in the streams. If this is the last writer to stop, they would
    /// wait in Redis — inside its loss window — until a writer runs again. So: read without
    /// blocking and store, until a read finds nothing or the deadline passes (other
    /// instances may still be accepting). A failure ends the drain: its entries stay pending.
    async fn drain(
        &mut self,
        in_flight: &mut JoinSet<anyhow::Result<()>>,
        max_in_flight: usize,
        drain_for: Duration,
    ) {
        let deadline = Instant::now() + drain_for;
        self.draining = true;
        let mut failed = false;
        while !failed && Instant::now() < deadline && !self.sources.is_empty() {
            match self.read().await {
                Ok(batches) if batches.is_empty() && in_flight.is_empty() => break,
                Ok(batches) => {
                    for batch in batches {
                        in_flight.spawn(batch.persist_and_ack());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "writer drain stopped");
                    break;
                }
            }
            // Bounded in flight; and before the next read, let the entries read so far be
            // acked (a read with `>` never returns them again, but an empty read must mean
            // "nothing left", not "all in flight").
            while let Some(done) = in_flight.join_next().await {
                if let Err(e) = flatten(done) {
                    tracing::warn!(error = %e, "writer batch failed during shutdown; entries stay pending");
                    failed = true;
                }
                if in_flight.len() < max_in_flight / 2 {
                    break;
                }
            }
        }
        while let Some(done) = in_flight.join_next().await {
            if let Err(e) = flatten(done) {
                tracing::warn!(error = %e, "writer batch failed during shutdown; entries stay pending");
            }
        }
    }

    /// A multiplexed connection does not come back by itself once its socket is gone: open
    /// new ones (a failure here is retried on the next error).
    async fn reconnect(&mut self) {
        match (self.client.dedicated().await, self.client.dedicated().await) {
            (Ok(read), Ok(ack)) => {
                self.conn = read;
                self.ack_conn = ack;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "writer cannot reconnect to redis")
            }
        }
    }

    /// One cycle of reading: refresh the stream list, reclaim idle entries, read new ones.
    /// Returns the batches to persist (one per stream with entries).
    async fn fetch(&mut self) -> anyhow::Result<Vec<Batch>> {
        let mut batches = Vec::new();
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
        {
            self.refresh().await?;
            self.dead_scan_due = true;
        }
        // Not while re-reading our own pending list: a read from `0` would return the
        // entries just claimed a second time.
        if self.dead_scan_due && !self.reread_own {
            self.dead_scan_due = false;
            batches.extend(self.claim_from_dead().await?);
        }
        if self.sources.is_empty() {
            tokio::time::sleep(Duration::from_millis(self.settings.block_ms)).await;
            return Ok(Vec::new());
        }
        let claim_every = Duration::from_millis((self.settings.claim_idle_ms / 2).max(100));
        if self.last_claim.elapsed() >= claim_every {
            self.last_claim = Instant::now();
            batches.extend(self.reclaim().await?);
        }
        batches.extend(self.read().await?);
        Ok(batches)
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

    /// Reads up to a batch from every stream: new entries, or after a failure our own
    /// pending ones (id `0`) until none are left.
    async fn read(&mut self) -> anyhow::Result<Vec<Batch>> {
        let reply = if self.client.is_cluster() {
            self.read_each().await?
        } else {
            self.read_all().await?
        };
        let mut batches = Vec::new();
        self.last_read_full = reply
            .iter()
            .any(|(_, entries)| entries.len() >= self.settings.batch_size);
        for (key, entries) in reply {
            if let Some(idx) = self.sources.iter().position(|s| s.keys.stream == key) {
                if !entries.is_empty() {
                    batches.push(self.batch(idx, entries));
                }
            }
        }
        if self.reread_own && batches.is_empty() {
            // Our own pending list is empty: go back to reading new entries.
            self.reread_own = false;
        }
        Ok(batches)
    }

    /// Whether a read that finds nothing may wait for new entries (not while re-reading
    /// our own pending ones, nor while draining at a stop).
    fn may_wait(&self) -> bool {
        !self.reread_own && !self.draining
    }

    /// On one Redis: one `XREADGROUP` over every stream, blocking up to `block_ms`.
    async fn read_all(&mut self) -> anyhow::Result<Vec<(String, Vec<Entry>)>> {
        self.read_streams(0..self.sources.len(), self.may_wait())
            .await
    }

    /// On a cluster each activity's stream lives in a slot of its own, and one command may
    /// not span slots: one `XREADGROUP` per stream, none blocking; when none had anything,
    /// a pause of `block_ms` stands in for the blocking read.
    async fn read_each(&mut self) -> anyhow::Result<Vec<(String, Vec<Entry>)>> {
        let mut found = Vec::new();
        for i in 0..self.sources.len() {
            found.extend(self.read_streams(i..i + 1, false).await?);
        }
        if found.iter().all(|(_, entries)| entries.is_empty()) && self.may_wait() {
            tokio::time::sleep(Duration::from_millis(self.settings.block_ms)).await;
        }
        Ok(found)
    }

    /// One `XREADGROUP` of the streams of `sources[range]`: new entries, or our own pending
    /// ones (id `0`) while re-reading them; `block`: wait up to `block_ms` for some.
    async fn read_streams(
        &mut self,
        range: std::ops::Range<usize>,
        block: bool,
    ) -> anyhow::Result<Vec<(String, Vec<Entry>)>> {
        let start = if self.reread_own { "0" } else { ">" };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(WRITER_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.settings.batch_size);
        if block {
            cmd.arg("BLOCK").arg(self.settings.block_ms);
        }
        cmd.arg("STREAMS");
        for s in &self.sources[range.clone()] {
            cmd.arg(&s.keys.stream);
        }
        for _ in range {
            cmd.arg(start);
        }
        let read = cmd.query_async(&mut self.conn).await;
        let StreamsRead(streams) = self.lost_group(read)?;
        Ok(streams)
    }

    /// A read's result; Redis having lost the group (restart without persistence) makes
    /// the next round recreate it.
    fn lost_group<T>(&mut self, result: redis::RedisResult<T>) -> anyhow::Result<T> {
        result.map_err(|e| {
            if e.code() == Some("NOGROUP") {
                self.last_refresh = None;
                self.sources.clear();
            }
            e.into()
        })
    }

    /// Claims entries left pending by dead consumers for longer than `claim_idle_ms`.
    async fn reclaim(&mut self) -> anyhow::Result<Vec<Batch>> {
        let mut batches = Vec::new();
        for idx in 0..self.sources.len() {
            let AutoClaimed(claimed) = redis::cmd("XAUTOCLAIM")
                .arg(&self.sources[idx].keys.stream)
                .arg(WRITER_GROUP)
                .arg(&self.consumer)
                .arg(self.settings.claim_idle_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(self.settings.batch_size)
                .query_async(&mut self.conn)
                .await?;
            if !claimed.is_empty() {
                tracing::info!(
                    activity = %self.sources[idx].id,
                    entries = claimed.len(),
                    "reclaimed entries of a dead consumer"
                );
                batches.push(self.batch(idx, claimed));
            }
        }
        Ok(batches)
    }

    /// Claims, on every stream, the entries held by consumers whose heartbeat is gone (a
    /// killed process), and forgets long-idle dead consumers that hold nothing.
    async fn claim_from_dead(&mut self) -> anyhow::Result<Vec<Batch>> {
        let mut batches = Vec::new();
        for idx in 0..self.sources.len() {
            let stream = self.sources[idx].keys.stream.clone();
            let consumers: StreamInfoConsumersReply =
                self.conn.xinfo_consumers(&stream, WRITER_GROUP).await?;
            for c in consumers.consumers {
                if c.name == self.consumer || (c.pending == 0 && c.idle < FORGET_IDLE_MS) {
                    continue;
                }
                let alive: bool = self
                    .conn
                    .exists(self.keys.writer_heartbeat(&c.name))
                    .await?;
                if alive {
                    continue;
                }
                if c.pending == 0 {
                    let _: i64 = redis::Script::new(FORGET_CONSUMER)
                        .key(&stream)
                        .arg(WRITER_GROUP)
                        .arg(&c.name)
                        .invoke_async(&mut self.conn)
                        .await?;
                    continue;
                }
                let held: StreamPendingCountReply = self
                    .conn
                    .xpending_consumer_count(
                        &stream,
                        WRITER_GROUP,
                        "-",
                        "+",
                        self.settings.batch_size,
                        &c.name,
                    )
                    .await?;
                let ids: Vec<String> = held.ids.into_iter().map(|p| p.id).collect();
                if ids.is_empty() {
                    continue;
                }
                let Claimed(claimed) = self
                    .conn
                    .xclaim(&stream, WRITER_GROUP, &self.consumer, 0, &ids)
                    .await?;
                if !claimed.is_empty() {
                    tracing::info!(
                        activity = %self.sources[idx].id,
                        dead = %c.name,
                        entries = claimed.len(),
                        "claimed the entries of a dead writer"
                    );
                    batches.push(self.batch(idx, claimed));
                }
            }
        }
        Ok(batches)
    }

    fn batch(&self, idx: usize, entries: Vec<Entry>) -> Batch {
        Batch {
            activity: self.sources[idx].id,
            keys: self.sources[idx].keys.clone(),
            entries,
            db: self.db.clone(),
            conn: self.ack_conn.clone(),
            attempts: self.attempts.clone(),
            terms: self.terms.clone(),
            max_attempts: self.settings.max_attempts.max(1),
            permits: self.permits.clone(),
            replica_acks: self.replica_acks.clone(),
            stream_ack: self.stream_ack.clone(),
        }
    }
}

/// Writes the heartbeat with a TTL of three periods.
async fn send_heartbeat(
    conn: &mut RedisConn,
    key: &str,
    period: Duration,
) -> redis::RedisResult<()> {
    conn.pset_ex(key, "1", (period * 3).as_millis() as u64)
        .await
}

/// Renews the heartbeat every period until `stop`, on a connection of its own (reopened
/// after an error: a multiplexed connection does not come back by itself).
async fn run_heartbeat(
    client: RedisClient,
    key: String,
    period: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    let mut conn = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if conn.is_none() {
            conn = client.dedicated().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        if let Err(e) = send_heartbeat(c, &key, period).await {
            tracing::warn!(error = %e, "writer heartbeat not renewed");
            conn = None;
        }
    }
}

/// Creates the consumer group at the start of the stream unless it exists.
async fn ensure_group(conn: &mut RedisConn, stream: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> =
        conn.xgroup_create_mkstream(stream, WRITER_GROUP, "0").await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}

fn flatten(done: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    done.map_err(anyhow::Error::from).and_then(|r| r)
}
