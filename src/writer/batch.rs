//! One stream's entries on their way to MySQL: persist, then ack; dead-letter what can never
//! be stored. Runs as its own task, so the writer can read the next batch meanwhile.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamId;
use redis::AsyncCommands;
use sea_orm::DatabaseConnection;

use super::intent::OrderIntent;
use super::persist::{persist_batch, BatchOutcome, PersistError};
use crate::domain::ActivityId;
use crate::gate::{ActivityKeys, WRITER_GROUP};

/// Entries of one activity stream, read by this writer and not yet acked.
pub(super) struct Batch {
    pub activity: ActivityId,
    pub keys: ActivityKeys,
    pub entries: Vec<StreamId>,
    pub db: DatabaseConnection,
    /// A connection that never blocks (the reading one waits in `XREADGROUP … BLOCK`).
    pub conn: MultiplexedConnection,
}

impl Batch {
    /// Commits the batch's orders, then acks its entries. Poison entries are moved to the
    /// dead-letter stream (atomically with their ack). On `Err` nothing of the batch's valid
    /// entries is acked: they stay pending for a retry.
    pub async fn persist_and_ack(mut self) -> anyhow::Result<()> {
        let mut intents = Vec::with_capacity(self.entries.len());
        let mut poison = Vec::new();
        for entry in &self.entries {
            match OrderIntent::parse(entry) {
                Ok(i) => intents.push(i),
                Err(reason) => poison.push((entry, reason)),
            }
        }
        if !intents.is_empty() {
            let started = Instant::now();
            match persist_batch(&self.db, self.activity, &intents).await {
                Ok(outcome) => {
                    record_batch(&outcome, started.elapsed(), &intents);
                    let ids: Vec<&str> = intents.iter().map(|i| i.entry_id.as_str()).collect();
                    let _: () = self
                        .conn
                        .xack(&self.keys.stream, WRITER_GROUP, &ids)
                        .await?;
                }
                Err(PersistError::Poison(reason)) => {
                    // The whole batch can never be stored (e.g. its activity is not in MySQL).
                    poison = self.entries.iter().map(|e| (e, reason.clone())).collect();
                }
                Err(PersistError::Db(e)) => return Err(e.into()),
            }
        }
        for (entry, reason) in poison {
            dead_letter(&mut self.conn.clone(), &self.keys, entry, &reason).await?;
        }
        Ok(())
    }
}

/// Moves one entry to the dead-letter stream with its reason, atomically with its ack.
async fn dead_letter(
    conn: &mut MultiplexedConnection,
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
        .query_async(conn)
        .await
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
