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
//! - the instance id: each process holds a lease on `<prefix>:instance:<id>` in Redis
//!   ([`InstanceLease`], in [`lease`]) and refuses to start while another live process holds
//!   it. The generator issues ids only while its lease is confirmed ([`LeaseFence`]): a
//!   process that could not renew its lease stops issuing ids before the lease can expire
//!   and pass to another process, so two live processes never issue ids of one instance.

mod lease;

pub use lease::{InstanceLease, LeaseError, LeaseFence};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Custom epoch 2024-01-01T00:00:00Z: 41 bits of milliseconds last until 2093.
const EPOCH_MS: u64 = 1_704_067_200_000;
/// Bits below the timestamp in a snowflake.
const TIMESTAMP_SHIFT: u32 = 22;

/// Why no id can be issued now (answered `503`; the client retries).
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// The clock is behind the last id issued.
    #[error("clock moved backwards by {0} ms; refusing to issue ids")]
    ClockWentBackwards(u64),
    /// The instance id's lease is not confirmed (Redis unreachable, or the lease lost).
    #[error("the lease on this process's instance id is not confirmed; refusing to issue ids")]
    LeaseNotConfirmed,
}

/// Lock-free snowflake generator for one process.
pub struct IdGenerator {
    inner: snowflaked::sync::Generator,
    /// Timestamp (ms since our epoch) of the newest id issued.
    last_ms: AtomicU64,
    /// `None`: no lease to check (unit tests, tools that issue no ids to others).
    fence: Option<LeaseFence>,
}

impl IdGenerator {
    /// A generator bound to a held lease: it issues ids only while the lease is confirmed.
    pub fn new(instance: u16, fence: LeaseFence) -> Self {
        Self {
            fence: Some(fence),
            ..Self::unfenced(instance)
        }
    }

    /// A generator that trusts its instance id without a lease (tests only).
    pub fn unfenced(instance: u16) -> Self {
        let epoch = UNIX_EPOCH + Duration::from_millis(EPOCH_MS);
        Self {
            inner: snowflaked::Builder::new()
                .instance(instance)
                .epoch(epoch)
                .build(),
            last_ms: AtomicU64::new(0),
            fence: None,
        }
    }

    /// The next id, or an error if the clock is behind the last id issued or the lease is
    /// not confirmed.
    pub fn next_id(&self) -> Result<u64, IdError> {
        if self.fence.as_ref().is_some_and(|f| !f.is_valid()) {
            return Err(IdError::LeaseNotConfirmed);
        }
        // The newest timestamp first, the clock second: read the other way round, an id that
        // another thread issues in between would look like the clock going backwards.
        let last = self.last_ms.load(Ordering::Acquire);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(EPOCH_MS);
        if now < last {
            return Err(IdError::ClockWentBackwards(last - now));
        }
        // The check above leaves a window of a few nanoseconds in which the clock could
        // still step back; the generator's panic is caught rather than taking the worker.
        let id: u64 = catch_unwind(AssertUnwindSafe(|| self.inner.generate()))
            .map_err(|_| IdError::ClockWentBackwards(1))?;
        self.last_ms
            .fetch_max(id >> TIMESTAMP_SHIFT, Ordering::Relaxed);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_increasing_and_carry_the_instance() {
        let g = IdGenerator::unfenced(7);
        let ids: Vec<u64> = (0..10_000).map(|_| g.next_id().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| (id >> 12) & 0x3ff == 7));
    }

    #[test]
    fn concurrent_callers_never_see_a_false_clock_regression() {
        let g = std::sync::Arc::new(IdGenerator::unfenced(3));
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
        let g = IdGenerator::unfenced(1);
        g.next_id().unwrap();
        g.last_ms.fetch_add(60_000, Ordering::Relaxed);
        assert!(g.next_id().is_err());
    }
}
