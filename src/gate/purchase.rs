//! The purchase call: `lua/purchase.lua` for a batch of one activity's purchases.
//!
//! Every buyer of a flash sale hits one activity, whose purchases all run on one Redis core:
//! the most orders one sale can take per second is one over Redis' CPU per purchase. Part
//! of a call's cost is fixed (reading the command, entering the script, reading the
//! activity's meta, the clock, the stock and the stream's length, writing the reply), so
//! the purchases of one activity group-commit ([`super::group_commit`]): the first goes at
//! once, those that arrive while it is in flight go together in the next call, and the
//! script decides each in turn, exactly as if it came alone. Each purchase gets its own
//! reply; a failure of the whole call (Redis unreachable) is each member's failure, as it
//! would have been alone.

use std::sync::Arc;

use redis::{Script, Value};

use super::group_commit::GroupCommit;
use super::{GateOutcome, KeySpace, PurchaseAttempt};
use crate::domain::{ActivityId, UserId};
use crate::idempotency::{self, IdempotencyKey};
use crate::redis_conn::RedisConn;

/// The most purchases one call decides: bounds the time the script holds Redis (other
/// activities' calls wait for it), about 5 µs each.
const MAX_BATCH: usize = 64;

/// Purchases batched per activity.
pub(super) struct Purchases {
    call: Arc<PurchaseCall>,
    batches: GroupCommit<ActivityId, Queued, redis::RedisResult<GateOutcome>>,
}

/// What one call needs besides its purchases.
struct PurchaseCall {
    conn: RedisConn,
    keys: KeySpace,
    script: Script,
    idempotency_ttl_secs: u64,
    max_backlog: u64,
}

/// One purchase waiting for its call.
struct Queued {
    user: UserId,
    quantity: u32,
    fingerprint: String,
    candidate_order_id: u64,
    key: IdempotencyKey,
}

impl Purchases {
    pub(super) fn new(
        conn: RedisConn,
        keys: KeySpace,
        script: Script,
        idempotency_ttl_secs: u64,
        max_backlog: u64,
    ) -> Self {
        Self {
            call: Arc::new(PurchaseCall {
                conn,
                keys,
                script,
                idempotency_ttl_secs,
                max_backlog,
            }),
            batches: GroupCommit::new(MAX_BATCH),
        }
    }

    /// Runs the script for this attempt, with the attempts of its activity that queued
    /// with it.
    pub(super) async fn decide(
        &self,
        attempt: &PurchaseAttempt<'_>,
    ) -> redis::RedisResult<GateOutcome> {
        let queued = Queued {
            user: attempt.user,
            quantity: attempt.quantity.get(),
            fingerprint: idempotency::fingerprint(attempt.quantity),
            candidate_order_id: attempt.candidate_order_id,
            key: attempt.key.clone(),
        };
        let (call, activity) = (self.call.clone(), attempt.activity);
        self.batches
            .submit(&activity, queued, move |batch| async move {
                call.run(activity, batch).await
            })
            .await
            .unwrap_or_else(|lost| Err(lost.into_redis("purchase")))
    }
}

impl PurchaseCall {
    /// One call of the script: one answer per purchase, in order.
    async fn run(
        &self,
        activity: ActivityId,
        batch: Vec<Queued>,
    ) -> Vec<redis::RedisResult<GateOutcome>> {
        let k = self.keys.activity(activity);
        let mut call = self.script.prepare_invoke();
        call.key(&k.meta)
            .key(&k.stock)
            .key(&k.buyers)
            .key(&k.stream);
        call.arg(self.idempotency_ttl_secs).arg(self.max_backlog);
        for q in &batch {
            call.key(k.idempotency(q.user, &q.key));
            call.arg(q.user.get())
                .arg(q.quantity)
                .arg(&q.fingerprint)
                .arg(q.candidate_order_id)
                .arg(q.key.as_str());
        }
        let n = batch.len();
        metrics::histogram!("seckill_gate_batch_size").record(n as f64);
        match call.invoke_async::<Value>(&mut self.conn.clone()).await {
            Ok(Value::Array(replies)) if replies.len() == n => {
                let outcomes: Vec<_> = replies.into_iter().map(parse_reply).collect();
                // The stock as the call left it, once per call (only Redis' answers carry
                // news about the stock; a local sold-out answer would repeat 0).
                let last = outcomes.iter().rev().find_map(|o| match o {
                    Ok(
                        GateOutcome::Accepted { remaining, .. }
                        | GateOutcome::SoldOut { remaining },
                    ) => Some(*remaining),
                    _ => None,
                });
                if let Some(remaining) = last {
                    metrics::gauge!("seckill_stock_remaining", "activity" => activity.to_string())
                        .set(remaining as f64);
                }
                outcomes
            }
            Ok(other) => {
                let e = redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "purchase script: one reply per purchase expected",
                    format!("{n} purchases, reply {other:?}"),
                ));
                vec![Err(e); n]
            }
            Err(e) => vec![Err(e); n],
        }
    }
}

/// One purchase's reply: an outcome, or the error the script met deciding it.
fn parse_reply(reply: Value) -> redis::RedisResult<GateOutcome> {
    let fields: Vec<String> = redis::from_redis_value(reply)?;
    if fields.first().map(String::as_str) == Some("error") {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "purchase script",
            fields.get(1).cloned().unwrap_or_default(),
        )));
    }
    GateOutcome::parse(fields)
}
