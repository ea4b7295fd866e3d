//! Applying a provider's callback, once (I6).
//!
//! The provider calls back several times, late and out of order. What makes each
//! transaction count once:
//! - the order row, then the payment row, are locked before anything is read or written, so
//!   two deliveries of one callback run one after the other;
//! - the payment records the provider transaction that decided it (`provider_txn_id`,
//!   `UNIQUE`): a delivery naming the transaction already recorded is a duplicate, unless
//!   it reports a success of a transaction recorded as failed (it went through after all);
//! - a transaction id recorded on another payment is refused (409), except a second
//!   success of the same order's payment, recorded on a row of its own: already applied;
//! - two payments of different orders called back at once with one transaction id are not
//!   serialized by a lock: the `UNIQUE` key refuses the second, which runs again and sees
//!   the first;
//! - `succeeded` and `refund_required` are final: a `failed` arriving after a success changes
//!   nothing; a success arriving after a failure still counts (the money moved);
//! - a success makes the order `paid` only from `created`, as a conditional update with its
//!   version. For an order already closed (or paid by another payment) the payment becomes
//!   `refund_required`: the unit may already belong to another buyer.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use super::transitions::lock_order;
use crate::payment::wire::CallbackStatus;
use crate::snowflake::IdGenerator;
use crate::store::entity::{naive, order, payment};
use crate::store::is_unique_violation;

/// A callback whose signature was verified and whose body parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCallback {
    pub payment_id: u64,
    pub provider_txn_id: String,
    pub status: CallbackStatus,
    pub amount_cents: i64,
}

/// What a callback did (every one is answered `200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The payment succeeded and its order is now `paid`.
    Paid,
    /// The payment failed; the buyer may pay again.
    Failed,
    /// The money moved but the order was closed (or paid by another payment): the payment
    /// is `refund_required`.
    RefundRequired,
    /// This transaction was applied before.
    Duplicate,
    /// Too late to change anything (a `failed` after a final status, or a second `failed`).
    Ignored,
}

impl CallbackOutcome {
    /// The `outcome` label of `seckill_payment_callbacks_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::RefundRequired => "refund_required",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// A callback that changes nothing and is not answered `200`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackRefusal {
    UnknownPayment,
    AmountMismatch {
        expected: i64,
        got: i64,
    },
    /// The transaction id is recorded on another payment.
    TxnConflict {
        payment_id: u64,
    },
}

/// Why a callback was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("refused: {0:?}")]
    Refused(CallbackRefusal),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Id(#[from] crate::snowflake::IdError),
}

impl From<CallbackRefusal> for CallbackError {
    fn from(r: CallbackRefusal) -> Self {
        Self::Refused(r)
    }
}

/// Applies one callback; returns what it did and the payment as it now is.
pub async fn apply_callback(
    db: &DatabaseConnection,
    ids: &IdGenerator,
    cb: &VerifiedCallback,
    now: DateTime<Utc>,
) -> Result<(CallbackOutcome, payment::Model), CallbackError> {
    match apply_once(db, ids, cb, now).await {
        // Another payment (of another order, so not serialized by the order lock) recorded
        // this transaction id at the same moment, and committed first: run again, and the
        // look-up by transaction id now sees it.
        Err(CallbackError::Db(e)) if is_unique_violation(&e) => apply_once(db, ids, cb, now).await,
        other => other,
    }
}

async fn apply_once(
    db: &DatabaseConnection,
    ids: &IdGenerator,
    cb: &VerifiedCallback,
    now: DateTime<Utc>,
) -> Result<(CallbackOutcome, payment::Model), CallbackError> {
    let found = payment::Entity::find_by_id(cb.payment_id)
        .one(db)
        .await?
        .ok_or(CallbackRefusal::UnknownPayment)?;
    if found.amount_cents != cb.amount_cents {
        return Err(CallbackRefusal::AmountMismatch {
            expected: found.amount_cents,
            got: cb.amount_cents,
        }
        .into());
    }
    let txn = db.begin().await?;
    // Order first, then payment: the lock order of every transition.
    let order_row = lock_order(&txn, found.order_id).await?;
    let p = payment::Entity::find_by_id(cb.payment_id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(CallbackRefusal::UnknownPayment)?;
    let same_txn = p.provider_txn_id.as_deref() == Some(cb.provider_txn_id.as_str());
    // The one news a recorded transaction can still bring: it failed, then went through.
    let failure_overturned =
        p.status == payment::STATUS_FAILED && matches!(cb.status, CallbackStatus::Succeeded);
    if same_txn && !failure_overturned {
        txn.commit().await?;
        return Ok((CallbackOutcome::Duplicate, p));
    }
    if let Some(other) = payment::Entity::find()
        .filter(payment::Column::ProviderTxnId.eq(cb.provider_txn_id.as_str()))
        .filter(payment::Column::Id.ne(p.id))
        .one(&txn)
        .await?
    {
        // A second success of this order's payment was recorded on a row of its own
        // (below); its redelivery is already applied. Anything else is a provider bug.
        if other.order_id == p.order_id && is_settled(&other) {
            txn.commit().await?;
            let outcome = match cb.status {
                CallbackStatus::Succeeded => CallbackOutcome::Duplicate,
                CallbackStatus::Failed => CallbackOutcome::Ignored,
            };
            return Ok((outcome, other));
        }
        return Err(CallbackRefusal::TxnConflict {
            payment_id: other.id,
        }
        .into());
    }
    let is_final = is_settled(&p);
    let (outcome, now_payment) = match (cb.status, is_final) {
        (CallbackStatus::Failed, true) => (CallbackOutcome::Ignored, p),
        (CallbackStatus::Failed, false) if p.status == payment::STATUS_FAILED => {
            (CallbackOutcome::Ignored, p)
        }
        (CallbackStatus::Failed, false) => {
            let p = set_status(&txn, p, payment::STATUS_FAILED, &cb.provider_txn_id).await?;
            (CallbackOutcome::Failed, p)
        }
        (CallbackStatus::Succeeded, true) => {
            // A second transaction that took money for a payment already settled: recorded
            // on a payment of its own, to be refunded, so that it is reflected once too.
            let extra = payment::ActiveModel {
                id: Set(ids.next_id()?),
                order_id: Set(p.order_id),
                amount_cents: Set(cb.amount_cents),
                status: Set(payment::STATUS_REFUND_REQUIRED.into()),
                provider_txn_id: Set(Some(cb.provider_txn_id.clone())),
                idempotency_key: Set(None),
                provider_accepted_at: Set(Some(naive(now))),
                version: Set(0),
                created_at: Set(naive(now)),
                updated_at: Set(naive(now)),
            }
            .insert(&txn)
            .await?;
            tracing::error!(payment_id = p.id, extra_payment = extra.id, txn = %cb.provider_txn_id,
                "a second succeeded provider transaction for one payment: recorded as refund_required");
            (CallbackOutcome::RefundRequired, p)
        }
        (CallbackStatus::Succeeded, false) => {
            let payable = order_row
                .as_ref()
                .filter(|o| o.status == order::STATUS_CREATED);
            match payable {
                Some(o) => {
                    mark_paid(&txn, o, now).await?;
                    let p =
                        set_status(&txn, p, payment::STATUS_SUCCEEDED, &cb.provider_txn_id).await?;
                    (CallbackOutcome::Paid, p)
                }
                None => {
                    let p = set_status(
                        &txn,
                        p,
                        payment::STATUS_REFUND_REQUIRED,
                        &cb.provider_txn_id,
                    )
                    .await?;
                    tracing::warn!(
                        payment_id = p.id,
                        order_id = p.order_id,
                        order_status = order_row
                            .as_ref()
                            .map(|o| o.status.as_str())
                            .unwrap_or("missing"),
                        "payment succeeded for an order that is no longer payable: refund required"
                    );
                    (CallbackOutcome::RefundRequired, p)
                }
            }
        }
    };
    txn.commit().await?;
    match outcome {
        CallbackOutcome::Paid => {
            metrics::counter!("seckill_payments_total", "outcome" => "succeeded").increment(1)
        }
        CallbackOutcome::Failed => {
            metrics::counter!("seckill_payments_total", "outcome" => "failed").increment(1)
        }
        CallbackOutcome::RefundRequired => {
            metrics::counter!("seckill_payments_total", "outcome" => "refund_required")
                .increment(1);
            metrics::counter!("seckill_refunds_required_total").increment(1);
        }
        CallbackOutcome::Duplicate | CallbackOutcome::Ignored => {}
    }
    Ok((outcome, now_payment))
}

/// Whether the payment's money moved (`succeeded` or `refund_required`): final.
fn is_settled(p: &payment::Model) -> bool {
    matches!(
        p.status.as_str(),
        payment::STATUS_SUCCEEDED | payment::STATUS_REFUND_REQUIRED
    )
}

/// `processing|failed → to`, conditional on the version read under the lock.
async fn set_status(
    txn: &impl ConnectionTrait,
    p: payment::Model,
    to: &'static str,
    txn_id: &str,
) -> Result<payment::Model, DbErr> {
    let updated = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(to))
        .col_expr(payment::Column::ProviderTxnId, Expr::value(txn_id))
        .col_expr(
            payment::Column::Version,
            Expr::col(payment::Column::Version).add(1),
        )
        .filter(payment::Column::Id.eq(p.id))
        .filter(payment::Column::Status.eq(p.status.as_str()))
        .filter(payment::Column::Version.eq(p.version))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(DbErr::Custom(format!(
            "payment {} changed under its row lock",
            p.id
        )));
    }
    Ok(payment::Model {
        status: to.into(),
        provider_txn_id: Some(txn_id.to_owned()),
        version: p.version + 1,
        ..p
    })
}

/// `created → paid` for the locked order row.
async fn mark_paid(
    txn: &impl ConnectionTrait,
    o: &order::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let updated = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(order::STATUS_PAID))
        .col_expr(order::Column::PaidAt, Expr::value(naive(now)))
        .col_expr(
            order::Column::Version,
            Expr::col(order::Column::Version).add(1),
        )
        .filter(order::Column::Id.eq(o.id))
        .filter(order::Column::Status.eq(order::STATUS_CREATED))
        .filter(order::Column::Version.eq(o.version))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(DbErr::Custom(format!(
            "order {} changed under its row lock",
            o.id
        )));
    }
    Ok(())
}
