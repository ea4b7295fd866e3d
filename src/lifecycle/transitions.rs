//! The order transitions `created → cancelled` (the buyer) and `created → expired` (the
//! sweeper): lock, check, conditional update, and `sold` lowered in the same transaction.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

use super::fence::{self, Fenced};
use super::processing_payment;
use crate::domain::UserId;
use crate::store::entity::{activity, naive, order, utc};

/// Why a transition was refused; the order is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such order of this user in MySQL (it may still be `pending` in Redis).
    NotFound,
    /// The order is paid.
    Paid,
    /// The order is `cancelled`, `expired` or `rejected` (its status).
    Closed(String),
    /// A payment of the order is waiting for the provider.
    PaymentInProgress,
}

/// What can go wrong with a transition.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("refused: {0:?}")]
    Refused(Refusal),
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<Refusal> for TransitionError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// The time left to pay an order due at `deadline`; `None` once less than a millisecond
/// is left (a token's time to live is whole milliseconds: less would be none at all).
pub fn time_left(deadline: NaiveDateTime, now: DateTime<Utc>) -> Option<Duration> {
    let left = utc(deadline) - now;
    (left >= Duration::milliseconds(1)).then_some(left)
}

/// The order row, locked for the rest of the transaction.
pub(super) async fn lock_order(
    txn: &impl ConnectionTrait,
    order_id: u64,
) -> Result<Option<order::Model>, DbErr> {
    order::Entity::find_by_id(order_id)
        .lock_exclusive()
        .one(txn)
        .await
}

/// Why an order can no longer be paid or cancelled: `None` while it is `created`.
pub fn closed_refusal(row: &order::Model) -> Option<Refusal> {
    (row.status != order::STATUS_CREATED).then(|| refusal_for(row))
}

/// The refusal for an order that is not `created` (and not in the target state).
pub(super) fn refusal_for(row: &order::Model) -> Refusal {
    if row.status == order::STATUS_PAID {
        Refusal::Paid
    } else {
        Refusal::Closed(row.status.clone())
    }
}

/// `created → to` for a locked row at version `row.version`: the conditional update, and
/// the units given back to MySQL's `sold`. Errors (and the caller rolls back) if the
/// row changed under the lock, which the lock makes impossible, or if `sold` is short.
pub(super) async fn close(
    txn: &impl ConnectionTrait,
    row: &order::Model,
    to: &'static str,
) -> Result<(), DbErr> {
    let updated = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to))
        .col_expr(
            order::Column::Version,
            Expr::col(order::Column::Version).add(1),
        )
        .filter(order::Column::Id.eq(row.id))
        .filter(order::Column::Status.eq(order::STATUS_CREATED))
        .filter(order::Column::Version.eq(row.version))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(DbErr::Custom(format!(
            "order {} changed under its row lock (status/version)",
            row.id
        )));
    }
    let units = i64::from(row.quantity);
    let lowered = activity::Entity::update_many()
        .col_expr(
            activity::Column::Sold,
            Expr::col(activity::Column::Sold).sub(units),
        )
        .col_expr(
            activity::Column::Version,
            Expr::col(activity::Column::Version).add(1),
        )
        .filter(activity::Column::Id.eq(row.activity_id))
        .filter(activity::Column::Sold.gte(units))
        .exec(txn)
        .await?;
    if lowered.rows_affected != 1 {
        return Err(DbErr::Custom(format!(
            "activity {}: sold is below the {units} units of order {} being closed",
            row.activity_id, row.id
        )));
    }
    metrics::counter!("seckill_orders_closed_total", "status" => to).increment(1);
    Ok(())
}

/// The buyer cancels their order. Idempotent: an order already cancelled is answered as it
/// is. Returns the row as it now is; the caller then gives the units back to Redis
/// ([`super::finish_close`]) if `stock_returned_at` is not set.
pub async fn cancel(
    db: &DatabaseConnection,
    order_id: u64,
    user: UserId,
) -> Result<order::Model, TransitionError> {
    let txn = db.begin().await?;
    let row = lock_order(&txn, order_id)
        .await?
        .filter(|r| r.user_id == user.get())
        .ok_or(Refusal::NotFound)?;
    match row.status.as_str() {
        order::STATUS_CANCELLED => {
            txn.commit().await?;
            return Ok(row);
        }
        order::STATUS_CREATED => {}
        _ => return Err(refusal_for(&row).into()),
    }
    if processing_payment(&txn, order_id).await?.is_some() {
        return Err(Refusal::PaymentInProgress.into());
    }
    // Past its deadline the order is the sweeper's to expire (within seconds): answered
    // as expired, as a payment token or a payment would be.
    // (The time is read under the lock: a cancel that waited for it must not act on a
    // clock read before the wait.)
    if time_left(row.payment_deadline, Utc::now()).is_none() {
        return Err(Refusal::Closed(order::STATUS_EXPIRED.into()).into());
    }
    close(&txn, &row, order::STATUS_CANCELLED).await?;
    txn.commit().await?;
    Ok(order::Model {
        status: order::STATUS_CANCELLED.into(),
        version: row.version + 1,
        ..row
    })
}

/// The sweeper expires one order, if it is still `created` past its deadline and has no
/// payment in progress younger than `grace`. `Ok(None)`: nothing to do (paid, cancelled,
/// not due, in its grace). The fencing `token` of the lock's `owner` is checked first, in
/// the same transaction.
pub async fn expire(
    db: &DatabaseConnection,
    order_id: u64,
    (token, owner): (u64, &str),
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Option<order::Model>, TransitionError> {
    let txn = db.begin().await?;
    fence::check(&txn, token, owner).await??;
    let Some(row) = lock_order(&txn, order_id).await? else {
        return Ok(None);
    };
    if row.status != order::STATUS_CREATED || utc(row.payment_deadline) > now {
        return Ok(None);
    }
    if let Some(p) = processing_payment(&txn, order_id).await? {
        if utc(p.created_at) + grace > now {
            return Ok(None);
        }
    }
    close(&txn, &row, order::STATUS_EXPIRED).await?;
    txn.commit().await?;
    Ok(Some(order::Model {
        status: order::STATUS_EXPIRED.into(),
        version: row.version + 1,
        updated_at: naive(now),
        ..row
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn less_than_a_millisecond_left_is_no_time_left() {
        let deadline = chrono::NaiveDate::from_ymd_opt(2026, 12, 4)
            .and_then(|d| d.and_hms_milli_opt(12, 0, 0, 500))
            .expect("a valid time");
        let at = |micros_before: i64| utc(deadline) - Duration::microseconds(micros_before);
        assert_eq!(
            time_left(deadline, at(1_000)),
            Some(Duration::milliseconds(1))
        );
        assert_eq!(time_left(deadline, at(999)), None);
        assert_eq!(time_left(deadline, at(1)), None);
        assert_eq!(time_left(deadline, at(0)), None);
        assert_eq!(time_left(deadline, at(-5_000)), None);
        assert_eq!(
            time_left(deadline, at(2_500_000)),
            Some(Duration::microseconds(2_500_000))
        );
    }
}
