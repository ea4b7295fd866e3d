//! Group commit: the calls for one key (an activity) that arrive while that key's previous
//! call is in flight go together in the next one.
//!
//! Why: in a flash sale every buyer hits one activity, whose calls all run on one Redis
//! core, and each call costs Redis (and the service) a fixed part — reading the command,
//! finding and entering the script, writing the reply — besides its real work. Sending the
//! calls that queued up during a round trip as one call pays the fixed part once for all of
//! them. No call waits for company: the first of a key goes at once; the others wait only
//! for the call in flight, as they would queue behind it anyway.
//!
//! The rules that keep a batch from hurting its members:
//! - at most one call per key is in flight, and it runs as a task of its own: a caller who
//!   goes away (an HTTP client hanging up) leaves the others of its batch their answers;
//! - a request whose caller went away before its batch was formed is left out (it is never
//!   run for nobody);
//! - the batch function answers each request on its own (one answer per request, in order),
//!   so one request's failure is its own; a failure of the whole call (Redis unreachable)
//!   is every member's answer, as it would have been for each of them alone;
//! - a batch holds at most `max_batch` requests; the rest go in the next call.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Batches of requests `Req` per key `K`, answered `Resp` each.
pub struct GroupCommit<K, Req, Resp> {
    max_batch: usize,
    groups: Mutex<HashMap<K, Arc<Group<Req, Resp>>>>,
}

/// The requests of one key waiting for a call.
struct Group<Req, Resp> {
    pending: Mutex<Vec<Waiter<Req, Resp>>>,
    /// Numbers the waiters, so a caller can find its own.
    next_ticket: std::sync::atomic::AtomicU64,
    /// Held by the one call in flight (and by a caller forming the next batch).
    flight: Arc<tokio::sync::Mutex<()>>,
}

struct Waiter<Req, Resp> {
    ticket: u64,
    request: Req,
    answer: oneshot::Sender<Resp>,
}

/// The call of a batch lost its answer (its task panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batched call lost its answer")]
pub struct Lost;

impl Lost {
    /// As the Redis error its callers answer with (a `503` on the request path); `what`
    /// names the call.
    pub fn into_redis(self, what: &'static str) -> redis::RedisError {
        redis::RedisError::from((redis::ErrorKind::Client, what, self.to_string()))
    }
}

impl<K, Req, Resp> GroupCommit<K, Req, Resp>
where
    K: Hash + Eq + Clone,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    /// Batches of at most `max_batch` requests (at least 1).
    pub fn new(max_batch: usize) -> Self {
        Self {
            max_batch: max_batch.max(1),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Submits `request` under `key`; `call` runs a batch (this request and those queued
    /// with it) and must return one answer per request, in the order given. Which caller's
    /// `call` runs a batch is not defined: every caller of one key must pass an equivalent
    /// one.
    pub async fn submit<F, Fut>(&self, key: &K, request: Req, call: F) -> Result<Resp, Lost>
    where
        F: FnOnce(Vec<Req>) -> Fut,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let group = self.group(key);
        let (tx, mut rx) = oneshot::channel();
        let ticket = group
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&group.pending).push(Waiter {
            ticket,
            request,
            answer: tx,
        });
        // Answered by a call in flight, or this caller's turn to send one. The answer first:
        // an answered caller must not queue behind the next call for the lock.
        let flight = tokio::select! {
            biased;
            answer = &mut rx => return answer.map_err(|_| Lost),
            flight = group.flight.clone().lock_owned() => flight,
        };
        match rx.try_recv() {
            // A call sent after this request arrived has answered while we queued.
            Ok(answer) => return Ok(answer),
            Err(oneshot::error::TryRecvError::Closed) => return Err(Lost),
            // Still queued: this caller sends the next call, for the requests queued.
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = {
            let mut pending = lock(&group.pending);
            // Requests whose callers went away are dropped here, never run.
            pending.retain(|w| !w.answer.is_closed());
            // Ours first (its caller sends this call; nobody might send one for it later),
            // then the oldest others.
            let ours = pending.iter().position(|w| w.ticket == ticket);
            let mut batch: Vec<_> = ours.map(|i| pending.remove(i)).into_iter().collect();
            let take = pending.len().min(self.max_batch - batch.len());
            batch.extend(pending.drain(..take));
            batch
        };
        let (requests, answers): (Vec<Req>, Vec<_>) =
            batch.into_iter().map(|w| (w.request, w.answer)).unzip();
        let running = call(requests);
        // The task holds the group while its call is in flight: a group only the map holds
        // is dropped when another key's is made, and a new one (a new lock) would let a
        // second call of this key go at the same time.
        tokio::spawn(async move {
            let replies = running.await;
            for (answer, reply) in answers.into_iter().zip(replies) {
                // A caller who went away has dropped its receiver: nothing to do.
                let _ = answer.send(reply);
            }
            drop(flight);
            drop(group);
        });
        rx.await.map_err(|_| Lost)
    }

    /// The key's group; groups nobody is in (only the map holds them) are dropped whenever
    /// one is added, so the map holds about the keys in use.
    fn group(&self, key: &K) -> Arc<Group<Req, Resp>> {
        let mut groups = lock(&self.groups);
        if let Some(group) = groups.get(key) {
            return group.clone();
        }
        // Safe under the map's lock: a group is only handed out from here.
        groups.retain(|_, g| Arc::strong_count(g) > 1);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Group {
                    pending: Mutex::new(Vec::new()),
                    next_ticket: Default::default(),
                    flight: Arc::new(tokio::sync::Mutex::new(())),
                })
            })
            .clone()
    }

    /// The groups held now (for tests).
    #[doc(hidden)]
    pub fn groups_held(&self) -> usize {
        lock(&self.groups).len()
    }
}

/// These locks are never held across an await or a call that can panic; a poisoned one
/// still holds a valid value.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    type Echo = std::pin::Pin<Box<dyn Future<Output = Vec<(u32, usize)>> + Send>>;

    /// A call that takes 20 ms and answers each request with (its value, the batch's size).
    fn slow_echo(calls: Arc<AtomicUsize>) -> impl FnOnce(Vec<u32>) -> Echo {
        move |batch| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let n = batch.len();
                batch.into_iter().map(|v| (v, n)).collect()
            })
        }
    }

    #[tokio::test]
    async fn requests_queued_during_a_call_share_the_next_one() {
        let gc = Arc::new(GroupCommit::<u64, u32, (u32, usize)>::new(64));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50u32)
            .map(|v| {
                let (gc, calls) = (gc.clone(), calls.clone());
                tokio::spawn(async move { gc.submit(&7, v, slow_echo(calls)).await })
            })
            .collect();
        for (v, task) in tasks.into_iter().enumerate() {
            let (echo, _) = task.await.unwrap().unwrap();
            assert_eq!(echo, v as u32, "each request gets its own answer");
        }
        // The first goes alone, the 49 that queued meanwhile go together.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_batch() {
        let gc = Arc::new(GroupCommit::<u64, u32, (u32, usize)>::new(8));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..30u32)
            .map(|v| {
                let (gc, calls) = (gc.clone(), calls.clone());
                tokio::spawn(async move { gc.submit(&1, v, slow_echo(calls)).await })
            })
            .collect();
        for task in tasks {
            // A request left out of every batch would wait for ever: the timeout fails it.
            let answer = tokio::time::timeout(Duration::from_secs(5), task).await;
            let (_, size) = answer.expect("every request is answered").unwrap().unwrap();
            assert!(size <= 8, "a batch of {size}");
        }
        assert!(calls.load(Ordering::SeqCst) >= 4);
    }

    #[tokio::test]
    async fn keys_do_not_wait_for_each_other_and_idle_groups_go() {
        let gc = Arc::new(GroupCommit::<u64, u32, (u32, usize)>::new(64));
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, b) = tokio::join!(
            gc.submit(&1, 1, slow_echo(calls.clone())),
            gc.submit(&2, 2, slow_echo(calls.clone()))
        );
        assert_eq!((a.unwrap(), b.unwrap()), ((1, 1), (2, 1)));
        gc.submit(&3, 3, slow_echo(calls.clone())).await.unwrap();
        assert_eq!(gc.groups_held(), 1);
    }

    #[tokio::test]
    async fn a_key_with_a_call_in_flight_keeps_its_group() {
        let gc = Arc::new(GroupCommit::<u64, u32, usize>::new(64));
        // Calls of key 1 in flight now, and the most ever at once.
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let key1 = |now: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
            move |batch: Vec<u32>| async move {
                most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                vec![0; batch.len()]
            }
        };
        let first = {
            let (gc, call) = (gc.clone(), key1(now.clone(), most.clone()));
            tokio::spawn(async move { gc.submit(&1, 0, call).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Another key's group is made while key 1's call is in flight and its only caller
        // waits for the answer: key 1 must keep its group (and its lock), so that its next
        // request waits for the call in flight instead of sending a second one alongside.
        gc.submit(&2, 0, |b: Vec<u32>| async move { vec![0; b.len()] })
            .await
            .unwrap();
        gc.submit(&1, 1, key1(now.clone(), most.clone()))
            .await
            .unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two calls of one key at once"
        );
    }

    #[tokio::test]
    async fn the_leader_going_away_leaves_its_batch_answered() {
        let gc = Arc::new(GroupCommit::<u64, u32, (u32, usize)>::new(64));
        let calls = Arc::new(AtomicUsize::new(0));
        // A call in flight, so that the next two queue and go together.
        let first = {
            let (gc, calls) = (gc.clone(), calls.clone());
            tokio::spawn(async move { gc.submit(&1, 0, slow_echo(calls)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let leader = {
            let (gc, calls) = (gc.clone(), calls.clone());
            tokio::spawn(async move { gc.submit(&1, 1, slow_echo(calls)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let member = {
            let (gc, calls) = (gc.clone(), calls.clone());
            tokio::spawn(async move { gc.submit(&1, 2, slow_echo(calls)).await })
        };
        first.await.unwrap().unwrap();
        // The second call (1 and 2) is in flight: its leader hangs up.
        tokio::time::sleep(Duration::from_millis(5)).await;
        leader.abort();
        assert_eq!(member.await.unwrap().unwrap(), (2, 2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_whose_caller_went_away_before_its_call_is_never_run() {
        let gc = Arc::new(GroupCommit::<u64, u32, (u32, usize)>::new(64));
        let calls = Arc::new(AtomicUsize::new(0));
        let first = {
            let (gc, calls) = (gc.clone(), calls.clone());
            tokio::spawn(async move { gc.submit(&1, 0, slow_echo(calls)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Queued behind the call in flight, then gone.
        let gone = {
            let (gc, calls) = (gc.clone(), calls.clone());
            tokio::spawn(async move { gc.submit(&1, 1, slow_echo(calls)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        gone.abort();
        let _ = gone.await;
        let stays = gc.submit(&1, 2, slow_echo(calls.clone()));
        first.await.unwrap().unwrap();
        // Request 1 was not run: the next batch holds 2 alone.
        assert_eq!(stays.await.unwrap(), (2, 1));
    }
}
