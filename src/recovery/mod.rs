//! Operator tools: compare Redis with MySQL, and rebuild an activity's sale state in Redis.
//!
//! During a sale Redis holds what the gate decides with (remaining stock, buyers,
//! idempotency records) and the stream of accepted orders not yet in MySQL; MySQL holds the
//! durable rows. After a fault the two can disagree:
//!
//! - Redis restarted empty (no persistence) or was flushed: the activity has no sale state.
//!   The gate then refuses to sell it (`503`: never "unlimited", never "zero, then seeded
//!   again from scratch") until [`rebuild`] restores it from MySQL;
//! - Redis failed over and lost its last writes: the stock may be higher than the orders
//!   say (the writer's oversell guard stores the excess as `rejected`), buyers may be
//!   missing. [`reconcile`] lists every discrepancy; [`rebuild`] repairs them.
//!
//! How a rebuild stays exact while buyers keep calling:
//! 1. pause the sale (a `paused` field in the meta hash: the script answers everything but
//!    a replay with "not sellable", `503`, and an ordinary re-seed refuses), so no order is
//!    accepted while the state is being read, and no instance keeps a sold-out view;
//! 2. read the stream (orders accepted but not yet stored) and the dead letters (accepted,
//!    never stored) *before* the rows: an entry the writer stores in between is then seen
//!    twice, and counted once by its order id, never zero times;
//! 3. count the units taken from what was read — the `created` and `paid` rows (cancelled and
//!    expired ones gave their units back), plus the stream's and
//!    the dead letters' orders that are not rows — never from the activity row's `sold`,
//!    which a commit between two reads could leave behind the rows;
//! 4. write every buyer and every idempotency record still within its TTL, from the rows
//!    (MySQL is the truth) and from those entries;
//! 5. re-seed with remaining = total − taken, which re-opens the sale.

mod reconcile;

pub use reconcile::{reconcile, Discrepancy};

use std::collections::{HashMap, HashSet};

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use crate::domain::{ActivityId, UserId};
use crate::gate::stream::dead_letter;
use crate::gate::{Gate, OrderRecord, RestoreCounts, RestoredOrder, SeedOutcome, SeedSpec};
use crate::store::entity::{activity, order, utc};
use crate::writer::{Entry, OrderIntent};

/// Why a recovery tool could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("activity {0} is not in MySQL")]
    UnknownActivity(ActivityId),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("mysql: {0}")]
    Db(#[from] DbErr),
    #[error("the seed refused: {0}")]
    Seed(String),
}

/// What [`rebuild`] restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub activity: ActivityId,
    pub restored: RestoreCounts,
    /// Accepted orders found in the stream (or dead-lettered) and not in MySQL.
    pub in_stream: u64,
    pub remaining: i64,
    /// Units accepted beyond the total (Redis oversold before the rebuild): the writer will
    /// store those orders as `rejected`.
    pub oversold: i64,
}

/// What MySQL and the stream say about one activity's orders.
struct Orders {
    row: activity::Model,
    /// Every order row, and the stream's accepted entries that are not rows yet.
    restored: Vec<RestoredOrder>,
    /// Units taken: the `created` and `paid` rows' plus those of the stream's and the dead
    /// letters' orders that are not rows.
    taken: i64,
    in_stream: u64,
    /// Units of the rows that hold theirs, `created` and `paid` (what `sold` must equal).
    held_units: i64,
}

/// Rebuilds the activity's sale state in Redis from MySQL (and the stream, if Redis kept
/// it). Safe to run on a live activity; buyers get `503` while it runs.
pub async fn rebuild(
    gate: &Gate,
    db: &DatabaseConnection,
    activity: ActivityId,
) -> Result<RebuildReport, RecoveryError> {
    // Before pausing: an unknown id must not get a meta hash. `collect` reads the row
    // again, after the pause, for the total the re-seed uses.
    find_activity(db, activity).await?;
    gate.pause(activity).await?;
    let orders = collect(gate, db, activity).await?;
    let total = orders.row.total_stock;
    let restored = gate
        .restore_orders(
            activity,
            &orders.restored,
            chrono::Utc::now().timestamp_millis(),
        )
        .await?;
    // Taken beyond the total (Redis oversold): sell nothing more; the excess orders are
    // stored as `rejected` by the writer's guard. Never leave the sale paused for it.
    let spec = SeedSpec {
        sold: orders.taken.min(total),
        ..SeedSpec::from_row(&orders.row, total)
    };
    let remaining = match gate.seed_rebuilt(&spec).await? {
        SeedOutcome::Seeded { remaining } => remaining,
        other => return Err(RecoveryError::Seed(format!("{other:?}"))),
    };
    tracing::info!(%activity, buyers = restored.buyers, idempotency = restored.idempotency_records,
        in_stream = orders.in_stream, remaining, "activity rebuilt in redis from mysql");
    Ok(RebuildReport {
        activity,
        restored,
        in_stream: orders.in_stream,
        remaining,
        oversold: (orders.taken - total).max(0),
    })
}

async fn find_activity(
    db: &DatabaseConnection,
    activity: ActivityId,
) -> Result<activity::Model, RecoveryError> {
    activity::Entity::find_by_id(activity.get())
        .one(db)
        .await?
        .ok_or(RecoveryError::UnknownActivity(activity))
}

/// Reads the stream, then the rows (in that order: see the module docs).
async fn collect(
    gate: &Gate,
    db: &DatabaseConnection,
    activity: ActivityId,
) -> Result<Orders, RecoveryError> {
    let mut intents = stream_intents(gate, activity).await?;
    intents.extend(dead_letter_intents(gate, activity).await?);
    let row = find_activity(db, activity).await?;
    let rows = order::Entity::find()
        .filter(order::Column::ActivityId.eq(activity.get()))
        .all(db)
        .await?;
    let mut users: HashSet<u64> = HashSet::with_capacity(rows.len());
    let ids: HashSet<u64> = rows.iter().map(|r| r.id).collect();
    let mut restored = Vec::with_capacity(rows.len() + intents.len());
    let mut held_units = 0;
    for r in &rows {
        if order::HOLDING.contains(&r.status.as_str()) {
            held_units += i64::from(r.quantity);
        }
        users.insert(r.user_id);
        restored.push(RestoredOrder {
            user: UserId::new(r.user_id),
            key: r.idempotency_key.clone(),
            record: OrderRecord {
                order_id: r.id,
                quantity: r.quantity.max(0) as u32,
                created_ms: utc(r.created_at).timestamp_millis(),
            },
            returned: [order::STATUS_CANCELLED, order::STATUS_EXPIRED].contains(&r.status.as_str()),
        });
    }
    let mut taken = held_units;
    let mut in_stream = 0;
    for i in intents {
        // Stored already (read before the rows), or a second order of a buyer who has a
        // row: the writer stores nothing for it, so it takes no stock.
        if ids.contains(&i.order_id) || !users.insert(i.user_id) {
            continue;
        }
        in_stream += 1;
        taken += i64::from(i.quantity);
        restored.push(RestoredOrder {
            user: UserId::new(i.user_id),
            key: i.idempotency_key,
            record: OrderRecord {
                order_id: i.order_id,
                quantity: i.quantity.max(0) as u32,
                created_ms: i.created_ms,
            },
            returned: false,
        });
    }
    Ok(Orders {
        row,
        restored,
        taken,
        in_stream,
        held_units,
    })
}

/// Every entry of the activity's stream: the writer deletes entries once stored, so these
/// are the accepted orders not yet in MySQL (or stored and not yet acked).
async fn stream_intents(
    gate: &Gate,
    activity: ActivityId,
) -> Result<Vec<OrderIntent>, redis::RedisError> {
    let entries = all_entries(gate, &gate.keys().activity(activity).stream).await?;
    Ok(entries
        .iter()
        .filter_map(|e| OrderIntent::parse(e).ok())
        .collect())
}

/// The orders of the activity's dead-letter stream (accepted, never stored), from the
/// original fields each dead letter keeps ([`dead_letter::original`]).
async fn dead_letter_intents(
    gate: &Gate,
    activity: ActivityId,
) -> Result<Vec<OrderIntent>, redis::RedisError> {
    let entries = all_entries(gate, &gate.keys().activity(activity).dead).await?;
    Ok(entries
        .into_iter()
        .filter_map(|mut e| {
            e.fields = e
                .fields
                .into_iter()
                .filter_map(|(k, v)| {
                    Some((k.strip_prefix(dead_letter::ORIGINAL_PREFIX)?.to_owned(), v))
                })
                .collect();
            OrderIntent::parse(&e).ok()
        })
        .collect())
}

async fn all_entries(gate: &Gate, stream: &str) -> Result<Vec<Entry>, redis::RedisError> {
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut gate.connection())
        .await
}

/// The per-user view of an activity in Redis, for [`reconcile`].
async fn buyers(
    gate: &Gate,
    activity: ActivityId,
) -> Result<HashMap<u64, OrderRecord>, redis::RedisError> {
    let k = gate.keys().activity(activity);
    let raw: HashMap<u64, String> = redis::cmd("HGETALL")
        .arg(&k.buyers)
        .query_async(&mut gate.connection())
        .await?;
    Ok(raw
        .into_iter()
        .filter_map(|(u, r)| Some((u, OrderRecord::parse(&r)?)))
        .collect())
}
