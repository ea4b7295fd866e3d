//! Answering the sold-out flood without Redis, without breaking idempotent replay.
//!
//! Most of a flash sale's traffic arrives after the stock is gone. Each of those requests
//! would cost a script run in Redis just to learn "sold out". A process-local "sold out" flag
//! would be wrong, though: a buyer whose first answer was lost must still get its `201`
//! replay after the sell-out, and the flag knows nothing about keys.
//!
//! What makes a local answer exact: once an activity's stock is 0, **the set of buyers is
//! final** (a purchase needs stock) until an admin re-seeds the stock, and it is bounded by the
//! stock. Idempotency records are written only for accepted purchases, and every accepted
//! purchase records its buyer. So for a user who is *not* among the buyers there is no
//! record under any key, and the answer is decided afresh: `sold_out` (or the window's or the
//! quantity's answer, checked in the script's order). A user who *is* a buyer goes to Redis,
//! which replays or answers `already_purchased` exactly as before.
//!
//! The view (meta, buyers) is read in one `MULTI` once the script has answered `sold_out`
//! with nothing left. It is dropped when:
//! - the seed script publishes on `<prefix>:seeded` (re-seeding can make the activity
//!   sellable again, so new buyers could appear). The invalidator subscribes to that channel;
//!   while it is not subscribed (starting, reconnecting) the cache answers nothing;
//! - it is older than [`MAX_AGE`], a safety net.
//!
//! A view whose load raced with an invalidation is not installed (per-activity generation).
//! The remaining window: an instance may answer `sold_out` from its view for the time the
//! invalidation message takes to arrive after a re-seed (sub-millisecond on a LAN).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{ActivityKeys, GateOutcome};
use crate::domain::{ActivityId, Quantity, UserId};

/// Oldest a view may be before it is re-read from Redis.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// Activities with more buyers than this are not cached (memory bound).
pub const MAX_CACHED_BUYERS: usize = 200_000;

/// What one sold-out activity looks like, frozen.
struct View {
    limit: u32,
    starts_ms: i64,
    ends_ms: i64,
    buyers: HashSet<u64>,
    loaded: Instant,
}

#[derive(Default)]
struct Inner {
    views: HashMap<ActivityId, Arc<View>>,
    /// Invalidations seen per activity: a load that straddles one is discarded.
    generations: HashMap<ActivityId, u64>,
    loading: HashSet<ActivityId>,
}

/// The process-local views of sold-out activities.
#[derive(Default)]
pub struct SoldOutCache {
    inner: RwLock<Inner>,
    /// Only while subscribed to invalidations may views be used.
    live: AtomicBool,
}

impl SoldOutCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The answer for a request that needs no Redis, if there is one.
    pub fn decide(
        &self,
        activity: ActivityId,
        user: UserId,
        quantity: Quantity,
    ) -> Option<GateOutcome> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let view = self.inner.read().ok()?.views.get(&activity).cloned()?;
        if view.loaded.elapsed() > MAX_AGE || view.buyers.contains(&user.get()) {
            return None;
        }
        // The script's order: quantity limit, window, (buyer: excluded above), stock.
        let now = chrono::Utc::now().timestamp_millis();
        Some(if quantity.get() > view.limit {
            GateOutcome::QuantityOverLimit {
                limit: view.limit.into(),
            }
        } else if now < view.starts_ms {
            GateOutcome::NotStarted
        } else if now >= view.ends_ms {
            GateOutcome::Ended
        } else {
            GateOutcome::SoldOut { remaining: 0 }
        })
    }

    /// Starts loading the view of an activity the script just reported sold out, unless a
    /// load is already running. Returns at once.
    pub fn load_in_background(
        self: &Arc<Self>,
        conn: crate::redis_conn::RedisConn,
        activity: ActivityId,
        keys: ActivityKeys,
    ) {
        let generation = {
            let Ok(mut inner) = self.inner.write() else {
                return;
            };
            let fresh = inner
                .views
                .get(&activity)
                .is_some_and(|v| v.loaded.elapsed() <= MAX_AGE);
            if fresh || !inner.loading.insert(activity) {
                return;
            }
            inner.generations.get(&activity).copied().unwrap_or(0)
        };
        let cache = self.clone();
        tokio::spawn(async move {
            let view = read_view(conn, &keys).await;
            let Ok(mut inner) = cache.inner.write() else {
                return;
            };
            inner.loading.remove(&activity);
            match view {
                Ok(Some(view))
                    if inner.generations.get(&activity).copied().unwrap_or(0) == generation =>
                {
                    inner.views.insert(activity, Arc::new(view));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, %activity, "sold-out view not loaded"),
            }
        });
    }

    /// Drops the view of one activity (it was re-seeded).
    pub fn invalidate(&self, activity: ActivityId) {
        if let Ok(mut inner) = self.inner.write() {
            inner.views.remove(&activity);
            *inner.generations.entry(activity).or_default() += 1;
        }
    }

    /// Drops every view, and every load in flight.
    pub fn invalidate_all(&self) {
        if let Ok(mut inner) = self.inner.write() {
            inner.views.clear();
            let loading: Vec<ActivityId> = inner.loading.iter().copied().collect();
            for id in loading {
                *inner.generations.entry(id).or_default() += 1;
            }
            for g in inner.generations.values_mut() {
                *g += 1;
            }
        }
    }

    fn set_live(&self, live: bool) {
        if !live {
            self.invalidate_all();
        }
        self.live.store(live, Ordering::Release);
    }

    /// Listens for re-seed notifications until `shutdown`; reconnects with a pause.
    pub async fn run_invalidator(
        self: Arc<Self>,
        clients: Vec<redis::Client>,
        channel: String,
        shutdown: CancellationToken,
    ) {
        // One client per node of a cluster (any node will do: classic pub/sub reaches every
        // node), tried in turn when one fails.
        let mut turn = 0usize;
        while !shutdown.is_cancelled() {
            let Some(client) = clients.get(turn % clients.len().max(1)) else {
                tracing::error!("sold-out invalidator has no Redis to subscribe to");
                return;
            };
            turn = turn.wrapping_add(1);
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        self.set_live(true);
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => break,
                                msg = messages.next() => match msg {
                                    Some(msg) => {
                                        let id: Option<String> = msg.get_payload().ok();
                                        match id.as_deref().and_then(ActivityId::parse) {
                                            Some(id) => self.invalidate(id),
                                            // Unreadable: drop every view to be safe.
                                            None => self.invalidate_all(),
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "sold-out invalidator cannot subscribe"),
                },
                Err(e) => tracing::warn!(error = %e, "sold-out invalidator cannot connect"),
            }
            self.set_live(false);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        self.set_live(false);
    }
}

type ViewRead = (
    (Option<i64>, Option<i64>, Option<i64>),
    Option<i64>,
    Vec<u64>,
);

/// Reads meta, stock and buyers in one transaction; `None` unless the stock is exhausted.
async fn read_view(
    mut conn: crate::redis_conn::RedisConn,
    keys: &ActivityKeys,
) -> redis::RedisResult<Option<View>> {
    let len: usize = redis::cmd("HLEN")
        .arg(&keys.buyers)
        .query_async(&mut conn)
        .await?;
    if len > MAX_CACHED_BUYERS {
        return Ok(None);
    }
    let ((limit, starts_ms, ends_ms), stock, buyers): ViewRead = redis::pipe()
        .atomic()
        .hmget(&keys.meta, &["limit", "starts_ms", "ends_ms"])
        .get(&keys.stock)
        .hkeys(&keys.buyers)
        .query_async(&mut conn)
        .await?;
    Ok(match (limit, starts_ms, ends_ms, stock) {
        (Some(limit), Some(starts_ms), Some(ends_ms), Some(stock)) if stock <= 0 => Some(View {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            starts_ms,
            ends_ms,
            buyers: buyers.into_iter().collect(),
            loaded: Instant::now(),
        }),
        _ => None,
    })
}
