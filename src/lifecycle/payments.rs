//! Recording a pay request: the payment attempt, in the order's transaction.
//!
//! The token has been consumed in Redis by then (I8); this writes the attempt under the
//! order's row lock, so a cancel or the sweeper either ran before (and the order is no
//! longer `created`) or runs after (and sees the payment `processing`). Recording bumps the
//! order's `version`, like every transition: a concurrent writer holding the old version
//! changes nothing.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, TransactionTrait,
};

use super::processing_payment;
use super::transitions::{lock_order, refusal_for, time_left, Refusal, TransitionError};
use crate::domain::UserId;
use crate::payment::ProviderClient;
use crate::store::entity::{naive, order, payment};

/// What [`record_payment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentRecorded {
    /// A new payment, `processing`: the provider must now be asked to charge it.
    New(payment::Model),
    /// This order already has a payment for this idempotency key: the same answer again.
    Replay(payment::Model),
}

/// The payment of this order made by the pay request with this idempotency key, if any.
pub async fn payment_for_key(
    db: &impl ConnectionTrait,
    order_id: u64,
    key: &str,
) -> Result<Option<payment::Model>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

/// Records payment `payment_id` of the caller's order for the pay request `key`.
pub async fn record_payment(
    db: &DatabaseConnection,
    order_id: u64,
    user: UserId,
    payment_id: u64,
    key: &str,
) -> Result<PaymentRecorded, TransitionError> {
    let txn = db.begin().await?;
    let row = lock_order(&txn, order_id)
        .await?
        .filter(|r| r.user_id == user.get())
        .ok_or(Refusal::NotFound)?;
    // The time is read once the lock is held: a request that waited for a cancel or an
    // expiry to commit must not start a payment on a clock read before the wait.
    let now = Utc::now();
    if let Some(p) = payment_for_key(&txn, order_id, key).await? {
        txn.commit().await?;
        return Ok(PaymentRecorded::Replay(p));
    }
    if row.status != order::STATUS_CREATED {
        return Err(refusal_for(&row).into());
    }
    if time_left(row.payment_deadline, now).is_none() {
        // Past its deadline: the sweeper expires it within seconds.
        return Err(Refusal::Closed(order::STATUS_EXPIRED.into()).into());
    }
    if processing_payment(&txn, order_id).await?.is_some() {
        return Err(Refusal::PaymentInProgress.into());
    }
    let touched = order::Entity::update_many()
        .col_expr(
            order::Column::Version,
            Expr::col(order::Column::Version).add(1),
        )
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::Status.eq(order::STATUS_CREATED))
        .filter(order::Column::Version.eq(row.version))
        .exec(&txn)
        .await?;
    if touched.rows_affected != 1 {
        return Err(DbErr::Custom(format!("order {order_id} changed under its row lock")).into());
    }
    let p = payment::ActiveModel {
        id: Set(payment_id),
        order_id: Set(order_id),
        amount_cents: Set(row.amount_cents),
        status: Set(payment::STATUS_PROCESSING.into()),
        provider_txn_id: Set(None),
        idempotency_key: Set(Some(key.to_owned())),
        provider_accepted_at: Set(None),
        version: Set(0),
        created_at: Set(naive(now)),
        updated_at: Set(naive(now)),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    metrics::counter!("seckill_payments_total", "outcome" => "started").increment(1);
    Ok(PaymentRecorded::New(p))
}

/// Records that the provider took the charge request of payment `payment_id`: the sweeper
/// stops asking again.
pub async fn mark_charge_accepted(
    db: &impl ConnectionTrait,
    payment_id: u64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    payment::Entity::update_many()
        .col_expr(payment::Column::ProviderAcceptedAt, Expr::value(naive(now)))
        .filter(payment::Column::Id.eq(payment_id))
        .filter(payment::Column::ProviderAcceptedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Asks the provider to charge a new payment until it takes the request (run as a task by
/// the pay request), then records that it did. A refusal is logged: the payment stays
/// `processing`, and after its grace the order expires like any unpaid one.
pub async fn charge(
    provider: &ProviderClient,
    db: &DatabaseConnection,
    payment_id: u64,
    amount_cents: i64,
) {
    match provider
        .charge_until_accepted(payment_id, amount_cents)
        .await
    {
        Ok(_) => {
            if let Err(e) = mark_charge_accepted(db, payment_id, Utc::now()).await {
                // The sweeper asks again (harmless: the provider charges once per payment id).
                tracing::warn!(payment_id, error = %e, "could not record the provider's acceptance");
            }
        }
        Err(e) => {
            metrics::counter!("seckill_charge_refused_total").increment(1);
            tracing::error!(payment_id, error = %e, "the payment provider refused a charge request");
        }
    }
}
