//! The life of an order after the purchase: the one place that changes an order's status
//! once the writer has stored it, and a payment's status.
//!
//! ```text
//! pending ──writer──▶ created ──pay + success callback──▶ paid
//!                        │ ├──buyer cancels──▶ cancelled ─┐
//!                        │ └──deadline passed (sweeper)──▶ expired ───┴─▶ units back on sale, once
//!                        └── (rejected: stored refused by the oversell guard)
//! ```
//!
//! Every transition follows "lock, check, update" (一锁二判三更新): the order row is locked
//! (`SELECT … FOR UPDATE`), its state checked, and the change written as a conditional
//! update `WHERE id = ? AND status = <from> AND version = <v>` that bumps `version`. All
//! writers lock the order row first, then its payments, so concurrent transitions of one
//! order (pay against cancel, twenty cancels, a callback against the sweeper) run one after
//! the other, and each sees the state the previous one left (I6).
//!
//! Units of a cancelled or expired order go back to the sale exactly once (I7): `sold` is
//! lowered in the transaction of the transition; Redis' remaining stock is raised afterwards
//! by `lua/return_stock.lua`, keyed by order id; `stock_returned_at` records that the Redis
//! half is done, and the [`sweeper`] repairs an order a crash left between the two halves.

mod callbacks;
mod fence;
mod payments;
mod stock_return;
pub mod sweeper;
mod transitions;

pub use callbacks::{
    apply_callback, CallbackError, CallbackOutcome, CallbackRefusal, VerifiedCallback,
};
pub use fence::Fenced;
pub use payments::{
    charge, mark_charge_accepted, payment_for_key, record_payment, PaymentRecorded,
};
pub use stock_return::finish_close;
pub use sweeper::Sweeper;
pub use transitions::{cancel, closed_refusal, expire, time_left, Refusal, TransitionError};

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::store::entity::payment;

/// Whether a payment of the order waits for the provider.
pub async fn has_processing_payment(
    db: &impl ConnectionTrait,
    order_id: u64,
) -> Result<bool, DbErr> {
    Ok(processing_payment(db, order_id).await?.is_some())
}

/// Whether a payment with this id was recorded.
pub async fn payment_exists(db: &impl ConnectionTrait, payment_id: u64) -> Result<bool, DbErr> {
    Ok(payment::Entity::find_by_id(payment_id)
        .one(db)
        .await?
        .is_some())
}

/// The order's payment still waiting for the provider, if any.
async fn processing_payment(
    db: &impl ConnectionTrait,
    order_id: u64,
) -> Result<Option<payment::Model>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::Status.eq(payment::STATUS_PROCESSING))
        .one(db)
        .await
}
