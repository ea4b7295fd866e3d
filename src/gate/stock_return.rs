//! The Redis half of giving a closed order's units back to the sale (I7):
//! `lua/return_stock.lua`, at most once per order id.

use super::Gate;
use crate::domain::{ActivityId, UserId};

/// What the return script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnOutcome {
    /// The units are for sale again.
    Returned { remaining: i64 },
    /// Returned before (a second run changes nothing).
    Already,
    /// Redis does not hold this order (its state was lost and seeded again from MySQL,
    /// whose `sold` already counts the return): nothing to do.
    NoState,
    /// A rebuild is in progress; retry later (the sweeper repairs it).
    Paused,
}

impl ReturnOutcome {
    /// Whether the order's return is settled (nothing left to do in Redis).
    pub fn is_settled(self) -> bool {
        !matches!(self, Self::Paused)
    }
}

impl Gate {
    /// Returns `units` of `order_id` (bought by `user`) to the activity's stock, once.
    pub async fn return_units(
        &self,
        activity: ActivityId,
        order_id: u64,
        user: UserId,
        units: i64,
    ) -> Result<ReturnOutcome, redis::RedisError> {
        let k = self.keys.activity(activity);
        let reply: Vec<String> = self
            .return_stock
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.buyers)
            .key(&k.returned)
            .arg(order_id)
            .arg(user.get())
            .arg(units)
            .arg(self.keys.seeded_channel())
            .arg(activity.get())
            .invoke_async(&mut self.conn.clone())
            .await?;
        // This process's view goes at once; the others' when the script's PUBLISH reaches
        // them (on a cluster it travels the cluster bus first).
        self.sold_out.invalidate(activity);
        let outcome = match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("returned"), Some(left)) => left
                .parse()
                .ok()
                .map(|remaining| ReturnOutcome::Returned { remaining }),
            (Some("already"), _) => Some(ReturnOutcome::Already),
            (Some("no_state"), _) => Some(ReturnOutcome::NoState),
            (Some("paused"), _) => Some(ReturnOutcome::Paused),
            _ => None,
        };
        let outcome = outcome.ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected return script reply",
                format!("{reply:?}"),
            ))
        })?;
        if let ReturnOutcome::Returned { remaining } = outcome {
            metrics::gauge!("seckill_stock_remaining", "activity" => activity.to_string())
                .set(remaining as f64);
        }
        Ok(outcome)
    }
}
