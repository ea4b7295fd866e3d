//! `seckill reconcile`: every way Redis and MySQL disagree about one activity.
//!
//! Meant for a quiet moment (the sale over, or paused): during a busy sale an order moves
//! from the stream to MySQL between two reads, which the counts below tolerate (the stream
//! is read first), but the stock can change between the snapshot and the rows.

use std::fmt;

use sea_orm::DatabaseConnection;

use super::{buyers, collect, RecoveryError};
use crate::domain::ActivityId;
use crate::gate::Gate;

/// One disagreement, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discrepancy {
    /// No sale state in Redis: not sellable until rebuilt.
    NotLoaded,
    /// remaining (Redis) + taken (MySQL's sold + units waiting in the stream) ≠ total.
    Stock {
        remaining: i64,
        taken: i64,
        total: i64,
    },
    /// MySQL's `sold` differs from the units of its `created` and `paid` rows.
    Sold { sold: i64, held_units: i64 },
    /// A row (or a stream entry) whose buyer Redis does not know: that user could buy again.
    BuyerMissing { user: u64, order_id: u64 },
    /// Redis names another order for this buyer than MySQL (or the stream) does.
    BuyerOtherOrder {
        user: u64,
        redis_order: u64,
        stored_order: u64,
    },
    /// A buyer Redis accepted whose order is neither in MySQL nor in the stream: an
    /// accepted order was lost (or dead-lettered).
    OrderMissing { user: u64, order_id: u64 },
    /// Entries the writer gave up on: each is an accepted order not in MySQL.
    DeadLetters(u64),
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLoaded => write!(f, "no sale state in Redis (not sellable until rebuilt)"),
            Self::Stock { remaining, taken, total } => write!(
                f,
                "stock: remaining {remaining} (Redis) + taken {taken} (MySQL sold + stream) != total {total}"
            ),
            Self::Sold { sold, held_units } => {
                write!(f, "sold {sold} != units of created and paid orders {held_units}")
            }
            Self::BuyerMissing { user, order_id } => {
                write!(f, "user {user} has order {order_id} but no buyer record in Redis")
            }
            Self::BuyerOtherOrder { user, redis_order, stored_order } => write!(
                f,
                "user {user}: Redis names order {redis_order}, MySQL/stream order {stored_order}"
            ),
            Self::OrderMissing { user, order_id } => write!(
                f,
                "user {user}: order {order_id} accepted in Redis is neither in MySQL nor in the stream"
            ),
            Self::DeadLetters(n) => write!(f, "{n} dead-lettered entries (accepted, not stored)"),
        }
    }
}

/// Compares the activity's Redis state with MySQL. An empty list means they agree.
pub async fn reconcile(
    gate: &Gate,
    db: &DatabaseConnection,
    activity: ActivityId,
) -> Result<Vec<Discrepancy>, RecoveryError> {
    let snapshot = gate.snapshot(activity).await?;
    let buyers = buyers(gate, activity).await?;
    let backlog = gate.backlog(activity).await?;
    let orders = collect(gate, db, activity).await?;
    let mut found = Vec::new();
    match snapshot.as_ref().and_then(|s| s.remaining_stock) {
        None => found.push(Discrepancy::NotLoaded),
        Some(remaining) if remaining + orders.taken != orders.row.total_stock => {
            found.push(Discrepancy::Stock {
                remaining,
                taken: orders.taken,
                total: orders.row.total_stock,
            })
        }
        Some(_) => {}
    }
    if orders.row.sold != orders.held_units {
        found.push(Discrepancy::Sold {
            sold: orders.row.sold,
            held_units: orders.held_units,
        });
    }
    let mut stored_users = std::collections::HashSet::with_capacity(orders.restored.len());
    for o in &orders.restored {
        stored_users.insert(o.user.get());
        match buyers.get(&o.user.get()) {
            None if snapshot.is_some() => found.push(Discrepancy::BuyerMissing {
                user: o.user.get(),
                order_id: o.record.order_id,
            }),
            Some(r) if r.order_id != o.record.order_id => {
                found.push(Discrepancy::BuyerOtherOrder {
                    user: o.user.get(),
                    redis_order: r.order_id,
                    stored_order: o.record.order_id,
                })
            }
            _ => {}
        }
    }
    let mut lost: Vec<_> = buyers
        .iter()
        .filter(|(u, _)| !stored_users.contains(u))
        .map(|(&user, r)| Discrepancy::OrderMissing {
            user,
            order_id: r.order_id,
        })
        .collect();
    lost.sort_by_key(|d| match d {
        Discrepancy::OrderMissing { user, .. } => *user,
        _ => 0,
    });
    found.extend(lost);
    if backlog.dead_letters > 0 {
        found.push(Discrepancy::DeadLetters(backlog.dead_letters));
    }
    Ok(found)
}
