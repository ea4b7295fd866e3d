//! One batch of one activity's intents into MySQL, in one transaction.
//!
//! The order of statements is what makes a batch safe to run twice (re-delivery after a
//! crash between commit and ack) and what keeps `sold` exact:
//!
//! 1. lock the activity row (`FOR UPDATE`): batches of one activity are serialized, so the
//!    set of orders already stored cannot change under us. This locking read comes first on
//!    purpose: InnoDB takes a transaction's read view at its first *plain* read, so the
//!    selects of step 2 see every batch committed before the lock was granted (two batches
//!    holding the same entry — a reclaim racing a slow commit — insert it once);
//! 2. select the rows that already hold one of the batch's users (in this activity) or one of
//!    its order ids: those entries are re-deliveries (or, after a Redis data loss, a second
//!    order of one buyer) and insert nothing. Skipped on the first, optimistic attempt;
//! 3. give each new order its status: `created` while `sold + quantity <= total_stock`,
//!    `rejected` beyond (Redis accepted more than the stock: kept, visible, never sold);
//! 4. `INSERT IGNORE` the new rows and check that every one was really inserted (if not, the
//!    optimistic attempt is rolled back and redone with step 2);
//! 5. raise `sold` by the units inserted as `created`, with the conditional update
//!    `sold + n <= total_stock` (the MySQL half of I1);
//! 6. commit. The caller acks the entries only after this returns `Ok`.
//!
//! Why not sea-orm's `on_conflict_do_nothing`: on MySQL it renders `ON DUPLICATE KEY UPDATE
//! id = id`, and sqlx connects with `CLIENT_FOUND_ROWS`, so its affected-row count includes
//! the duplicates and cannot tell how many rows were inserted. `INSERT IGNORE` counts only
//! inserted rows; the tests re-deliver whole batches to hold it to that.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QuerySelect, Statement, TransactionTrait, Value,
};

use super::intent::OrderIntent;
use crate::domain::ActivityId;
use crate::store::entity::{activity, naive, order};

/// What one committed batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New rows with status `created`.
    pub created: u64,
    /// New rows with status `rejected` by the oversell guard.
    pub rejected: u64,
    /// Entries that inserted nothing (already stored, or a second order of one buyer).
    pub duplicates: u64,
}

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Retry later: MySQL unreachable, deadlock, timeout…
    #[error(transparent)]
    Db(#[from] DbErr),
    /// Never insertable: the caller moves the entries to the dead-letter stream.
    #[error("{0}")]
    Poison(String),
}

/// Persists `intents` (all of one activity) in one transaction.
///
/// Optimistic first: assume none of the entries is stored yet (true except after a crash
/// between commit and ack) and skip the lookups of step 2; `INSERT IGNORE` reports how many
/// rows it really inserted (ignored rows count 0, `CLIENT_FOUND_ROWS` or not), and if that
/// is not every row, the transaction is rolled back and redone with the lookups.
pub async fn persist_batch(
    db: &DatabaseConnection,
    activity_id: ActivityId,
    intents: &[OrderIntent],
) -> Result<BatchOutcome, PersistError> {
    if let Some(outcome) = attempt(db, activity_id, intents, false).await? {
        return Ok(outcome);
    }
    attempt(db, activity_id, intents, true)
        .await?
        .ok_or_else(|| {
            PersistError::Db(DbErr::Custom(format!(
                "rows of activity {activity_id} not inserted although absent"
            )))
        })
}

/// One transaction; `None` when `look_up` is false and some entry turned out to be stored.
async fn attempt(
    db: &DatabaseConnection,
    activity_id: ActivityId,
    intents: &[OrderIntent],
    look_up: bool,
) -> Result<Option<BatchOutcome>, PersistError> {
    let txn = db.begin().await?;
    let Some(activity) = activity::Entity::find_by_id(activity_id.get())
        .lock_exclusive()
        .one(&txn)
        .await?
    else {
        return Err(PersistError::Poison(format!(
            "activity {activity_id} is not in MySQL"
        )));
    };
    let (mut taken, mut taken_ids) = if look_up {
        stored(&txn, activity_id, intents).await?
    } else {
        Default::default()
    };

    let mut outcome = BatchOutcome::default();
    let mut sold = activity.sold;
    let mut rows = Vec::with_capacity(intents.len());
    for intent in intents {
        // A user or an order id already stored or seen earlier in this batch inserts nothing.
        // (Snowflakes do not repeat; a stored id with another user would be corruption, and
        // inserting nothing for it keeps `sold` exact.)
        if taken.contains(&intent.user_id) || taken_ids.contains(&intent.order_id) {
            outcome.duplicates += 1;
            continue;
        }
        taken.insert(intent.user_id);
        taken_ids.insert(intent.order_id);
        let fits = sold + i64::from(intent.quantity) <= activity.total_stock;
        let status = if fits {
            sold += i64::from(intent.quantity);
            outcome.created += 1;
            order::STATUS_CREATED
        } else {
            outcome.rejected += 1;
            tracing::error!(
                order_id = intent.order_id,
                %activity_id,
                "oversell guard: Redis accepted an order beyond the stock; stored as rejected"
            );
            order::STATUS_REJECTED
        };
        let created_at = DateTime::<Utc>::from_timestamp_millis(intent.created_ms)
            .ok_or_else(|| PersistError::Poison(format!("bad timestamp in {}", intent.entry_id)))?;
        rows.push((intent, status, naive(created_at)));
    }

    let inserted = insert_ignore(&txn, activity_id, &rows).await?;
    if inserted != rows.len() as u64 {
        txn.rollback().await?;
        return if look_up {
            // Looked up under the row lock and still not inserted: something else refuses
            // these rows; retried (and, if it persists, visible in the writer's errors).
            Err(PersistError::Db(DbErr::Custom(format!(
                "{} of {} new rows of activity {activity_id} were not inserted",
                rows.len() as u64 - inserted,
                rows.len()
            ))))
        } else {
            Ok(None)
        };
    }
    let units = sold - activity.sold;
    if units > 0 {
        let updated = activity::Entity::update_many()
            .col_expr(
                activity::Column::Sold,
                Expr::col(activity::Column::Sold).add(units),
            )
            .col_expr(
                activity::Column::Version,
                Expr::col(activity::Column::Version).add(1),
            )
            .filter(activity::Column::Id.eq(activity_id.get()))
            .filter(
                Expr::col(activity::Column::Sold)
                    .add(units)
                    .lte(Expr::col(activity::Column::TotalStock)),
            )
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            // Cannot happen while the row lock is held; refuse rather than oversell.
            return Err(PersistError::Db(DbErr::Custom(format!(
                "conditional update of sold refused for activity {activity_id}"
            ))));
        }
    }
    txn.commit().await?;
    Ok(Some(outcome))
}

/// Users (of this activity) and order ids of the batch that are already stored. Two indexed
/// lookups: an OR of both in one query would not use the indexes.
async fn stored(
    txn: &DatabaseTransaction,
    activity_id: ActivityId,
    intents: &[OrderIntent],
) -> Result<(HashSet<u64>, HashSet<u64>), DbErr> {
    let users: Vec<u64> = intents.iter().map(|i| i.user_id).collect();
    let ids: Vec<u64> = intents.iter().map(|i| i.order_id).collect();
    let taken = order::Entity::find()
        .select_only()
        .column(order::Column::UserId)
        .filter(order::Column::UserId.is_in(users))
        .filter(order::Column::ActivityId.eq(activity_id.get()))
        .into_tuple::<u64>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let taken_ids = order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .filter(order::Column::Id.is_in(ids))
        .into_tuple::<u64>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    Ok((taken, taken_ids))
}

/// One multi-row `INSERT IGNORE` (duplicates on the primary or the unique key are skipped);
/// returns the number of rows really inserted. Written by hand: sea-orm renders "ignore
/// duplicates" on MySQL as `ON DUPLICATE KEY UPDATE id = id`, whose affected-row count
/// includes the duplicates under `CLIENT_FOUND_ROWS`.
async fn insert_ignore(
    txn: &DatabaseTransaction,
    activity_id: ActivityId,
    rows: &[(&OrderIntent, &str, NaiveDateTime)],
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut sql = String::with_capacity(160 + rows.len() * 24);
    sql.push_str(
        "INSERT IGNORE INTO seckill_order (id, activity_id, user_id, quantity, status, \
         idempotency_key, version, created_at, updated_at) VALUES ",
    );
    let now = naive(Utc::now());
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 8);
    for (i, (intent, status, created_at)) in rows.iter().enumerate() {
        sql.push_str(if i == 0 {
            "(?,?,?,?,?,?,0,?,?)"
        } else {
            ",(?,?,?,?,?,?,0,?,?)"
        });
        values.extend([
            intent.order_id.into(),
            activity_id.get().into(),
            intent.user_id.into(),
            intent.quantity.into(),
            (*status).into(),
            intent.idempotency_key.as_str().into(),
            (*created_at).into(),
            now.into(),
        ]);
    }
    let stmt = Statement::from_sql_and_values(txn.get_database_backend(), sql, values);
    Ok(txn.execute_raw(stmt).await?.rows_affected())
}
