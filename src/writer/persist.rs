//! One batch of one activity's intents into MySQL, in one transaction.
//!
//! Two paths. The **fast path** covers the normal case (no entry stored before, all of
//! them within the stock) in three statements and takes no lock before it writes:
//!
//! 1. `INSERT IGNORE` every row as `created`, and check that every one was really inserted;
//! 2. raise `sold` by their units with the conditional update `sold + n <= total_stock`
//!    (the MySQL half of I1: an `UPDATE` reads the latest committed `sold`, under the row
//!    lock it takes);
//! 3. commit.
//!
//! If a row was not inserted (a re-delivery after a crash between commit and ack, a second
//! order of one buyer after a Redis data loss) or the update refuses (Redis accepted more than
//! the stock), the transaction is rolled back and the batch takes the **careful path**, whose
//! order of statements makes it safe to run twice and keeps `sold` exact:
//!
//! 1. lock the activity row (`FOR UPDATE`): batches of one activity are serialized, so the
//!    set of orders already stored cannot change under us. This locking read comes first on
//!    purpose: InnoDB takes a transaction's read view at its first *plain* read, so the
//!    selects of step 2 see every batch committed before the lock was granted (two batches
//!    holding the same entry — a reclaim racing a slow commit — insert it once);
//! 2. select the rows that already hold one of the batch's users (in this activity) or one of
//!    its order ids: those entries are re-deliveries (or, after a Redis data loss, a second
//!    order of one buyer) and insert nothing;
//! 3. give each new order its status: `created` while `sold + quantity <= total_stock`,
//!    `rejected` beyond (Redis accepted more than the stock: kept, visible, never sold);
//! 4. `INSERT IGNORE` the new rows and check that every one was inserted;
//! 5. raise `sold` by the units inserted as `created`, with the same conditional update;
//! 6. commit. The caller acks the entries only after this returns `Ok`.
//!
//! Why the fast path takes no lock first: two batches of one activity in flight then
//! overlap — the second inserts its rows while the first updates `sold` and commits — and
//! only the short `UPDATE … COMMIT` tail is serialized by the activity row. (The first
//! version locked first on both paths; `loadtest/run` measured the writer at 0.56× a raw
//! batched `INSERT` of the same rows with it.) A batch holding an entry that another batch
//! has inserted but not committed waits on that row in its `INSERT IGNORE`, then ignores it
//! and falls back to the careful path: nothing is inserted twice.
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
use super::terms::Terms;
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

/// Persists `intents` (all of one activity) in one transaction: the fast path, and the
/// careful one if the fast path does not fit the batch (see the module docs).
pub async fn persist_batch(
    db: &DatabaseConnection,
    activity_id: ActivityId,
    terms: Terms,
    intents: &[OrderIntent],
) -> Result<BatchOutcome, PersistError> {
    if let Some(outcome) = fast_path(db, activity_id, terms, intents).await? {
        return Ok(outcome);
    }
    metrics::counter!("seckill_writer_careful_batches_total").increment(1);
    careful_path(db, activity_id, terms, intents).await
}

/// Every intent as a `created` row, no lock before the writes; `None` (rolled back) when
/// the batch needs the careful path.
async fn fast_path(
    db: &DatabaseConnection,
    activity_id: ActivityId,
    terms: Terms,
    intents: &[OrderIntent],
) -> Result<Option<BatchOutcome>, PersistError> {
    let mut users = HashSet::with_capacity(intents.len());
    let mut rows = Vec::with_capacity(intents.len());
    let mut units = 0i64;
    for intent in intents {
        if !users.insert(intent.user_id) {
            // Two entries of one buyer in a batch: only the careful path sorts them out.
            return Ok(None);
        }
        units += i64::from(intent.quantity);
        rows.push((intent, order::STATUS_CREATED, created_at(intent)?));
    }
    let txn = db.begin().await?;
    let inserted = insert_ignore(&txn, activity_id, terms, &rows).await?;
    if inserted != rows.len() as u64 || !add_sold(&txn, activity_id, units).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    txn.commit().await?;
    Ok(Some(BatchOutcome {
        created: rows.len() as u64,
        ..BatchOutcome::default()
    }))
}

fn created_at(intent: &OrderIntent) -> Result<NaiveDateTime, PersistError> {
    DateTime::<Utc>::from_timestamp_millis(intent.created_ms)
        .map(naive)
        .ok_or_else(|| PersistError::Poison(format!("bad timestamp in {}", intent.entry_id)))
}

/// `sold += units` if that stays within `total_stock`; `false` if refused (or no such
/// activity). The `UPDATE` reads the latest committed row under its lock, whatever the
/// transaction's read view.
async fn add_sold(
    txn: &DatabaseTransaction,
    activity_id: ActivityId,
    units: i64,
) -> Result<bool, DbErr> {
    if units == 0 {
        return Ok(true);
    }
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
        .exec(txn)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// The careful path, one transaction.
async fn careful_path(
    db: &DatabaseConnection,
    activity_id: ActivityId,
    terms: Terms,
    intents: &[OrderIntent],
) -> Result<BatchOutcome, PersistError> {
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
    let (mut taken, mut taken_ids) = stored(&txn, activity_id, intents).await?;

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
        rows.push((intent, status, created_at(intent)?));
    }

    let inserted = insert_ignore(&txn, activity_id, terms, &rows).await?;
    if inserted != rows.len() as u64 {
        txn.rollback().await?;
        // Looked up under the row lock and still not inserted: something else refuses these
        // rows; retried (and, if it persists, visible in the writer's errors).
        return Err(PersistError::Db(DbErr::Custom(format!(
            "{} of {} new rows of activity {activity_id} were not inserted",
            rows.len() as u64 - inserted,
            rows.len()
        ))));
    }
    if !add_sold(&txn, activity_id, sold - activity.sold).await? {
        // Cannot happen while the row lock is held; refuse rather than oversell.
        return Err(PersistError::Db(DbErr::Custom(format!(
            "conditional update of sold refused for activity {activity_id}"
        ))));
    }
    txn.commit().await?;
    Ok(outcome)
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

/// The row counts one `INSERT` statement may have: 1 to 15, and multiples of 16 up to 512.
/// A batch goes in at most `⌈n / 512⌉ + 1` statements of these sizes (a batch of 92: 80 + 12).
///
/// Why: sqlx prepares each statement text once per connection and keeps the last 100 in its
/// cache; one text per batch size (up to `writer.batch_size`) overflowed it, and most
/// batches paid a `PREPARE` first — a round trip, and one column definition for each of
/// the statement's up to 5,000 parameters to decode (a compare run: 909 prepares for 1,440
/// inserts, the definitions a visible part of the writer's profile). 47 texts stay cached.
fn chunk_len(rows: usize) -> usize {
    const STEP: usize = 16;
    const MAX: usize = 32 * STEP;
    if rows < STEP {
        rows
    } else {
        (rows / STEP * STEP).min(MAX)
    }
}

/// `INSERT IGNORE`s of every row (duplicates on the primary or the unique key are skipped),
/// in chunks of [`chunk_len`]; returns the number of rows really inserted.
async fn insert_ignore(
    txn: &DatabaseTransaction,
    activity_id: ActivityId,
    terms: Terms,
    mut rows: &[(&OrderIntent, &str, NaiveDateTime)],
) -> Result<u64, DbErr> {
    let now = naive(Utc::now());
    let mut inserted = 0;
    while !rows.is_empty() {
        let (chunk, rest) = rows.split_at(chunk_len(rows.len()));
        let n = insert_chunk(txn, activity_id, terms, now, chunk).await?;
        inserted += n;
        if n != chunk.len() as u64 {
            // The caller rolls back (the count falls short): no use inserting the rest.
            break;
        }
        rows = rest;
    }
    Ok(inserted)
}

/// One multi-row `INSERT IGNORE`; returns the number of rows really inserted. Written by
/// hand: sea-orm renders "ignore duplicates" on MySQL as `ON DUPLICATE KEY UPDATE id = id`,
/// whose affected-row count includes the duplicates under `CLIENT_FOUND_ROWS`.
async fn insert_chunk(
    txn: &DatabaseTransaction,
    activity_id: ActivityId,
    terms: Terms,
    now: NaiveDateTime,
    rows: &[(&OrderIntent, &str, NaiveDateTime)],
) -> Result<u64, DbErr> {
    let mut sql = String::with_capacity(200 + rows.len() * 24);
    sql.push_str(
        "INSERT IGNORE INTO seckill_order (id, activity_id, user_id, quantity, amount_cents, \
         payment_deadline, status, idempotency_key, version, created_at, updated_at) VALUES ",
    );
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 10);
    for (i, (intent, status, created_at)) in rows.iter().enumerate() {
        sql.push_str(if i == 0 {
            "(?,?,?,?,?,?,?,?,0,?,?)"
        } else {
            ",(?,?,?,?,?,?,?,?,0,?,?)"
        });
        values.extend([
            intent.order_id.into(),
            activity_id.get().into(),
            intent.user_id.into(),
            intent.quantity.into(),
            terms.amount(intent.quantity).into(),
            terms.deadline(*created_at).into(),
            (*status).into(),
            intent.idempotency_key.as_str().into(),
            (*created_at).into(),
            now.into(),
        ]);
    }
    let stmt = Statement::from_sql_and_values(txn.get_database_backend(), sql, values);
    Ok(txn.execute_raw(stmt).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::chunk_len;

    #[test]
    fn batches_split_into_few_statements_of_few_sizes() {
        let mut sizes = std::collections::BTreeSet::new();
        for n in 1..=2000 {
            let (mut left, mut statements) = (n, 0);
            while left > 0 {
                let c = chunk_len(left);
                assert!(c >= 1 && c <= left, "{n}: chunk {c} of {left}");
                sizes.insert(c);
                left -= c;
                statements += 1;
            }
            assert!(
                statements <= n.div_ceil(512) + 1,
                "{n}: {statements} statements"
            );
        }
        assert_eq!(sizes.len(), 15 + 32);
        assert_eq!(chunk_len(92), 80);
        assert_eq!(chunk_len(12), 12);
    }
}
