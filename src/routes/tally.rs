//! Purchase answers per activity and outcome, counted by this process: the operator's live
//! figures (the dashboard's answers per second by outcome, through the admin view).
//!
//! Prometheus counts the same answers by outcome (`seckill_purchase_total`), but not per
//! activity: a label per activity would grow the series without bound. These counts are the
//! process's own since it started; with several service processes, each one's admin view
//! shows its own share (the gate's figures — accepted, remaining — are global).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::domain::ActivityId;
use crate::gate::GateOutcome;

/// Activities counted at most (the oldest process of a busy deployment does not grow
/// without bound; past this, new activities are not counted).
const MAX_ACTIVITIES: usize = 10_000;

type Counts = [AtomicU64; GateOutcome::LABELS.len()];

/// The counts, shared as app data.
#[derive(Default)]
pub struct PurchaseTally {
    activities: RwLock<HashMap<ActivityId, Counts>>,
}

impl PurchaseTally {
    /// Counts one answer; `outcome` is a [`GateOutcome::label`].
    pub fn count(&self, activity: ActivityId, outcome: &'static str) {
        let Some(i) = GateOutcome::LABELS.iter().position(|l| *l == outcome) else {
            return;
        };
        // The common case under the shared lock: the counters are atomics, so counting
        // needs no exclusive access; the write lock only to add an activity.
        {
            let read = self.activities.read().unwrap_or_else(|p| p.into_inner());
            if let Some(counts) = read.get(&activity) {
                counts[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut write = self.activities.write().unwrap_or_else(|p| p.into_inner());
        if write.len() >= MAX_ACTIVITIES && !write.contains_key(&activity) {
            return;
        }
        write.entry(activity).or_default()[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The answers given for `activity`, by outcome (only outcomes that occurred).
    pub fn of(&self, activity: ActivityId) -> BTreeMap<&'static str, u64> {
        let read = self.activities.read().unwrap_or_else(|p| p.into_inner());
        let Some(counts) = read.get(&activity) else {
            return BTreeMap::new();
        };
        GateOutcome::LABELS
            .iter()
            .zip(counts.iter())
            .map(|(l, c)| (*l, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_activity_and_outcome() {
        let t = PurchaseTally::default();
        let (a, b) = (ActivityId::new(1), ActivityId::new(2));
        t.count(a, "accepted");
        t.count(a, "accepted");
        t.count(a, "sold_out");
        t.count(b, "replay");
        t.count(b, "no such outcome");
        assert_eq!(t.of(a), BTreeMap::from([("accepted", 2), ("sold_out", 1)]));
        assert_eq!(t.of(b), BTreeMap::from([("replay", 1)]));
        assert!(t.of(ActivityId::new(3)).is_empty());
    }
}
