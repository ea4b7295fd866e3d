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
//!    order of one buyer) and insert nothing;
//! 3. give each new order its status: `created` while `sold + quantity <= total_stock`,
//!    `rejected` beyond (Redis accepted more than the stock: kept, visible, never sold);
//! 4. insert the new rows (duplicates on `uk_user_activity` still ignored, as a last guard);
//! 5. raise `sold` by the units really inserted as `created`, with the conditional update
//!    `sold + n <= total_stock` (the MySQL half of I1);
//! 6. commit. The caller acks the entries only after this returns `Ok`.
//!
//! Counting step 2 ourselves, instead of reading `rows_affected`, matters: sqlx connects with
//! `CLIENT_FOUND_ROWS`, so the affected-row count of an insert that ignores duplicates does
//! not say how many rows were really inserted.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait,
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
pub async fn persist_batch(
    db: &DatabaseConnection,
    activity_id: ActivityId,
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

    // Two indexed lookups (an OR of both in one query would not use the indexes): the
    // batch's users in this activity (uk_user_activity) and the batch's order ids (primary).
    let users: Vec<u64> = intents.iter().map(|i| i.user_id).collect();
    let ids: Vec<u64> = intents.iter().map(|i| i.order_id).collect();
    let stored: Vec<(u64, u64)> = order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .column(order::Column::UserId)
        .filter(order::Column::UserId.is_in(users))
        .filter(order::Column::ActivityId.eq(activity_id.get()))
        .into_tuple()
        .all(&txn)
        .await?;
    let mut taken: HashSet<u64> = stored.iter().map(|&(_, user)| user).collect();
    let mut taken_ids: HashSet<u64> = order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .filter(order::Column::Id.is_in(ids))
        .into_tuple::<u64>()
        .all(&txn)
        .await?
        .into_iter()
        .collect();

    let mut outcome = BatchOutcome::default();
    let mut sold = activity.sold;
    let mut rows = Vec::with_capacity(intents.len());
    for intent in intents {
        // `insert` is false for a user or an order id already stored or seen earlier in this
        // batch. (Snowflakes do not repeat; a stored id with another user would be
        // corruption, and inserting nothing for it keeps `sold` exact.)
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
        rows.push(order::ActiveModel {
            id: Set(intent.order_id),
            activity_id: Set(activity_id.get()),
            user_id: Set(intent.user_id),
            quantity: Set(intent.quantity),
            status: Set(status.to_owned()),
            idempotency_key: Set(intent.idempotency_key.clone()),
            version: Set(0),
            created_at: Set(naive(created_at)),
            updated_at: Set(naive(Utc::now())),
        });
    }

    if !rows.is_empty() {
        order::Entity::insert_many(rows)
            .on_conflict_do_nothing()
            .exec_without_returning(&txn)
            .await?;
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
    Ok(outcome)
}
