//! The Redis half of closing an order: the payment token dropped, the units back on sale
//! (`lua/return_stock.lua`, once per order id), then `stock_returned_at` set.
//!
//! Run right after the transition commits, and again by the sweeper for any closed order
//! still without `stock_returned_at` (a crash, Redis unreachable or a rebuild in between):
//! running it twice changes nothing the second time.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::domain::{ActivityId, UserId};
use crate::gate::{Gate, ReturnOutcome};
use crate::store::entity::{naive, order};

/// Gives a cancelled or expired order's units back to Redis and records it. Returns what
/// the script did; `Paused` leaves the order for the sweeper's next round.
pub async fn finish_close(
    gate: &Gate,
    db: &DatabaseConnection,
    row: &order::Model,
) -> anyhow::Result<ReturnOutcome> {
    let activity = ActivityId::new(row.activity_id);
    gate.drop_payment_token(activity, row.id).await?;
    let outcome = gate
        .return_units(
            activity,
            row.id,
            UserId::new(row.user_id),
            i64::from(row.quantity),
        )
        .await?;
    if let ReturnOutcome::Returned { .. } = outcome {
        metrics::counter!("seckill_stock_returned_units_total")
            .increment(row.quantity.max(0) as u64);
    }
    if outcome.is_settled() {
        order::Entity::update_many()
            .col_expr(
                order::Column::StockReturnedAt,
                Expr::value(naive(Utc::now())),
            )
            .filter(order::Column::Id.eq(row.id))
            .filter(order::Column::StockReturnedAt.is_null())
            .exec(db)
            .await?;
    }
    Ok(outcome)
}
