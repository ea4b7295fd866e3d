//! Snowflake ids for orders and activities, and the lease that keeps instance ids unique.
//!
//! A snowflake is `41 bits of milliseconds | 10 bits of instance | 12 bits of sequence`: ids
//! from one instance are unique as long as its clock does not run backwards, and ids of two
//! instances are unique as long as their instance ids differ. Both conditions are enforced
//! here instead of assumed:
//!
//! - the clock: `snowflaked` panics when the clock moves backwards. [`IdGenerator::next_id`]
//!   checks the clock against the last id first and answers an error (the request gets a
//!   `503`, the client retries) instead of panicking;
//! - the instance id: each process takes a lease on `<prefix>:instance:<id>` in Redis
//!   ([`InstanceLease`]) and refuses to start while another live process holds it. Two
//!   processes configured with the same `ids.instance_id` therefore cannot both run. A
//!   killed process's lease expires after 15 s (a restart waits that long at most); a
//!   graceful stop releases it at once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;

/// Custom epoch 2024-01-01T00:00:00Z: 41 bits of milliseconds last until 2093.
const EPOCH_MS: u64 = 1_704_067_200_000;
/// Bits below the timestamp in a snowflake.
const TIMESTAMP_SHIFT: u32 = 22;

/// The clock is behind the last id issued.
#[derive(Debug, thiserror::Error)]
#[error("clock moved backwards by {0} ms; refusing to issue ids")]
pub struct ClockWentBackwards(pub u64);

/// Lock-free snowflake generator for one process.
pub struct IdGenerator {
    inner: snowflaked::sync::Generator,
    /// Timestamp (ms since our epoch) of the newest id issued.
    last_ms: AtomicU64,
}

impl IdGenerator {
    pub fn new(instance: u16) -> Self {
        let epoch = UNIX_EPOCH + Duration::from_millis(EPOCH_MS);
        Self {
            inner: snowflaked::Builder::new()
                .instance(instance)
                .epoch(epoch)
                .build(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// The next id, or an error if the clock is behind the last id issued.
    pub fn next_id(&self) -> Result<u64, ClockWentBackwards> {
        // The newest timestamp first, the clock second: read the other way round, an id that
        // another thread issues in between would look like the clock going backwards.
        let last = self.last_ms.load(Ordering::Acquire);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(EPOCH_MS);
        if now < last {
            return Err(ClockWentBackwards(last - now));
        }
        // The check above leaves a window of a few nanoseconds in which the clock could
        // still step back; the generator's panic is caught rather than taking the worker.
        let id: u64 = catch_unwind(AssertUnwindSafe(|| self.inner.generate()))
            .map_err(|_| ClockWentBackwards(1))?;
        self.last_ms
            .fetch_max(id >> TIMESTAMP_SHIFT, Ordering::Relaxed);
        Ok(id)
    }
}

/// Another live process holds the lease on this instance id.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "snowflake instance id {0} is already held by another live process ({1}); give each \
         process its own ids.instance_id (SECKILL__IDS__INSTANCE_ID)"
    )]
    Taken(u16, String),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// A lease on an instance id, renewed in the background until dropped.
pub struct InstanceLease {
    task: tokio::task::JoinHandle<()>,
    conn: redis::aio::ConnectionManager,
    key: String,
    holder: String,
}

/// How long a lease outlives its holder (a killed process frees its id after this).
const LEASE_TTL_SECS: u64 = 15;

impl InstanceLease {
    /// Takes the lease or fails when another process holds it.
    pub async fn acquire(
        mut conn: redis::aio::ConnectionManager,
        key: String,
        instance: u16,
    ) -> Result<Self, LeaseError> {
        let holder = format!(
            "pid {} on {} ({})",
            std::process::id(),
            std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
            uuid::Uuid::new_v4().simple()
        );
        let opts = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(LEASE_TTL_SECS));
        // A process killed without a graceful stop leaves its lease to expire: wait that long
        // before calling the id taken, so that a restart after a crash goes through.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(LEASE_TTL_SECS + 1);
        loop {
            let taken: Option<String> = conn.set_options(&key, &holder, opts.clone()).await?;
            if taken.is_some() {
                break;
            }
            let other: Option<String> = conn.get(&key).await?;
            if tokio::time::Instant::now() >= deadline {
                return Err(LeaseError::Taken(instance, other.unwrap_or_default()));
            }
            tracing::warn!(%key, holder = ?other, "instance id lease held; waiting for it to expire");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (release_conn, release_key, release_holder) =
            (conn.clone(), key.clone(), holder.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(LEASE_TTL_SECS / 3));
            loop {
                tick.tick().await;
                // Renew only if still ours; a lost lease is logged loudly (ids may clash).
                let still: Option<String> = conn.get(&key).await.unwrap_or(None);
                match still {
                    Some(h) if h == holder => {
                        let _: redis::RedisResult<()> =
                            conn.expire(&key, LEASE_TTL_SECS as i64).await;
                    }
                    None => {
                        // Redis lost the key (restart): take it back unless someone else did.
                        let _: redis::RedisResult<Option<String>> =
                            conn.set_options(&key, &holder, opts.clone()).await;
                    }
                    Some(other) => {
                        tracing::error!(%key, %other, "instance id lease taken by another process: ids may collide");
                    }
                }
            }
        });
        Ok(Self {
            task,
            conn: release_conn,
            key: release_key,
            holder: release_holder,
        })
    }

    /// Gives the id back at a graceful stop (only if still ours), so a restart needs no wait.
    pub async fn release(mut self) {
        self.task.abort();
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        );
        let released: redis::RedisResult<i64> = script
            .key(&self.key)
            .arg(&self.holder)
            .invoke_async(&mut self.conn)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release the instance id lease; it expires by itself");
        }
    }
}

impl Drop for InstanceLease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_increasing_and_carry_the_instance() {
        let g = IdGenerator::new(7);
        let ids: Vec<u64> = (0..10_000).map(|_| g.next_id().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| (id >> 12) & 0x3ff == 7));
    }

    #[test]
    fn concurrent_callers_never_see_a_false_clock_regression() {
        let g = std::sync::Arc::new(IdGenerator::new(3));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    (0..50_000)
                        .map(|_| g.next_id().expect("no error"))
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "ids are unique across threads");
    }

    #[test]
    fn a_clock_behind_the_last_id_is_an_error_not_a_panic() {
        let g = IdGenerator::new(1);
        g.next_id().unwrap();
        g.last_ms.fetch_add(60_000, Ordering::Relaxed);
        assert!(g.next_id().is_err());
    }
}
