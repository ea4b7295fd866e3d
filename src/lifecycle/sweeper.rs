//! The sweeper: expires unpaid orders, repairs interrupted stock returns, and re-asks the
//! provider for charges it never acknowledged (a process died after recording a payment).
//!
//! Every `serve` process runs one, but only one acts at a time: each round first takes or
//! renews the sweeper lock in Redis (`lua/sweeper_lock.lua`: a lease and a fencing token).
//! Each expiry checks the token in MySQL in its own transaction ([`super::fence`]): a sweeper
//! that was paused past its lease and wakes up still believing it holds the lock is refused
//! as soon as the new holder has written once. Every transition is conditional anyway, so
//! even two sweepers acting at once could not expire an order twice or return its units
//! twice; the lock keeps them from doing the same work twice.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;

use super::fence;
use super::payments::mark_charge_accepted;
use super::stock_return::finish_close;
use super::transitions::{expire, TransitionError};
use crate::configuration::{PaymentSettings, SweeperSettings};
use crate::gate::Gate;
use crate::payment::ProviderClient;
use crate::store::entity::{naive, order, payment, utc};

/// A closed order left without `stock_returned_at` this long is repaired (younger ones are
/// probably being finished by the request that closed them).
const REPAIR_AFTER: chrono::Duration = chrono::Duration::seconds(2);
/// A `processing` payment the provider has not acknowledged after this long is charged again.
const RECHARGE_AFTER: chrono::Duration = chrono::Duration::seconds(5);

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundReport {
    pub expired: u64,
    /// Closed orders whose units the round gave back to Redis (repairs).
    pub repaired: u64,
    pub recharged: u64,
    /// The round stopped: its fencing token was refused (the lock was lost).
    pub fenced: bool,
}

/// One process's sweeper.
pub struct Sweeper {
    gate: Gate,
    db: DatabaseConnection,
    provider: ProviderClient,
    settings: SweeperSettings,
    grace: chrono::Duration,
    owner: String,
}

impl Sweeper {
    pub fn new(
        gate: Gate,
        db: DatabaseConnection,
        provider: ProviderClient,
        settings: SweeperSettings,
        payment: &PaymentSettings,
    ) -> Self {
        Self {
            gate,
            db,
            provider,
            settings,
            grace: chrono::Duration::seconds(payment.processing_grace_secs as i64),
            owner: format!(
                "sweeper-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
        }
    }

    /// This sweeper's name in the lock.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Rounds every `sweeper.interval_ms` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.settings.interval_ms);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let result = match self.acquire().await {
                Ok(Some(token)) => {
                    self.round(token)
                        .await
                        .map(|r| if r.fenced { "fenced" } else { "ran" })
                }
                Ok(None) => Ok("not_holder"),
                Err(e) => Err(e),
            };
            let label = result.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "sweeper round failed; retrying next round");
                "error"
            });
            metrics::counter!("seckill_sweeper_rounds_total", "result" => label).increment(1);
        }
    }

    /// Takes or renews the lock: `Some(fencing token)` while this sweeper holds it. A new
    /// token is above the highest MySQL has seen, so a Redis that lost its token counter
    /// cannot leave every holder fenced for ever.
    pub async fn acquire(&self) -> anyhow::Result<Option<u64>> {
        let floor = fence::current(&self.db).await?;
        Ok(self
            .gate
            .sweeper_lock(&self.owner, self.settings.lease_ms, floor)
            .await?)
    }

    /// One round with fencing token `token` (public for the tests, which drive rounds by
    /// hand to pause a sweeper between lock and write).
    pub async fn round(&self, token: u64) -> anyhow::Result<RoundReport> {
        let mut report = RoundReport::default();
        // Every round shows MySQL its token first, even one with nothing to expire: a
        // holder that lost the lock while paused is refused from the new holder's first
        // round on, not from its first expiry. (Repairs and charges need no fence: a
        // return is keyed by order id, a charge by payment id; doing one twice is nothing.)
        if let Err(f) = fence::check(&self.db, token, &self.owner).await? {
            return self.fenced(f, report).await;
        }
        let now = Utc::now();
        // Orders whose payment is still in its grace are left out here, not only by
        // `expire`: a batch full of them would hold back every other due order until
        // their grace ends.
        let in_grace = sea_orm::sea_query::Query::select()
            .column(payment::Column::OrderId)
            .from(payment::Entity)
            .and_where(payment::Column::Status.eq(payment::STATUS_PROCESSING))
            .and_where(payment::Column::CreatedAt.gt(naive(now - self.grace)))
            .to_owned();
        let due: Vec<u64> = order::Entity::find()
            .select_only()
            .column(order::Column::Id)
            .filter(order::Column::Status.eq(order::STATUS_CREATED))
            .filter(order::Column::PaymentDeadline.lte(naive(now)))
            .filter(order::Column::Id.not_in_subquery(in_grace))
            .order_by_asc(order::Column::PaymentDeadline)
            .limit(self.settings.batch_size)
            .into_tuple()
            .all(&self.db)
            .await?;
        for id in due {
            match expire(&self.db, id, (token, &self.owner), self.grace, now).await {
                Ok(Some(row)) => {
                    report.expired += 1;
                    if let Err(e) = finish_close(&self.gate, &self.db, &row).await {
                        tracing::warn!(order_id = id, error = %e, "expired; units to be returned by the next round");
                    }
                }
                Ok(None) => {}
                Err(TransitionError::Fenced(f)) => return self.fenced(f, report).await,
                Err(e) => return Err(e.into()),
            }
        }
        report.repaired = self.repair_returns(now).await?;
        report.recharged = self.recharge(now).await?;
        self.record_lag(now).await?;
        Ok(report)
    }

    /// The round stops: MySQL refused its token. If the lock is still ours (Redis handed
    /// out a token MySQL had already passed, or handed ours to another holder too), let go:
    /// the next round takes a token above MySQL's.
    async fn fenced(
        &self,
        f: super::Fenced,
        mut report: RoundReport,
    ) -> anyhow::Result<RoundReport> {
        tracing::warn!(error = %f, "sweeper lost its lock; stopping this round");
        self.gate.sweeper_unlock(&self.owner).await?;
        report.fenced = true;
        Ok(report)
    }

    /// Closed orders whose units are not back in Redis yet.
    async fn repair_returns(&self, now: chrono::DateTime<Utc>) -> anyhow::Result<u64> {
        let rows = order::Entity::find()
            .filter(order::Column::Status.is_in([order::STATUS_CANCELLED, order::STATUS_EXPIRED]))
            .filter(order::Column::StockReturnedAt.is_null())
            .filter(order::Column::UpdatedAt.lte(naive(now - REPAIR_AFTER)))
            .limit(self.settings.batch_size)
            .all(&self.db)
            .await?;
        let mut repaired = 0;
        for row in &rows {
            if finish_close(&self.gate, &self.db, row).await?.is_settled() {
                repaired += 1;
            }
        }
        if repaired > 0 {
            tracing::info!(repaired, "sweeper gave back the units of closed orders");
        }
        Ok(repaired)
    }

    /// Payments the provider never acknowledged (their process died before it answered),
    /// of orders that can still be paid: asking now for a closed order would only take money
    /// to refund.
    async fn recharge(&self, now: chrono::DateTime<Utc>) -> anyhow::Result<u64> {
        let payable = sea_orm::sea_query::Query::select()
            .column(order::Column::Id)
            .from(order::Entity)
            .and_where(order::Column::Status.eq(order::STATUS_CREATED))
            .to_owned();
        let stuck = payment::Entity::find()
            .filter(payment::Column::Status.eq(payment::STATUS_PROCESSING))
            .filter(payment::Column::ProviderAcceptedAt.is_null())
            .filter(payment::Column::OrderId.in_subquery(payable))
            .filter(payment::Column::CreatedAt.lte(naive(now - RECHARGE_AFTER)))
            .limit(self.settings.batch_size)
            .all(&self.db)
            .await?;
        let mut sent = 0;
        for p in stuck {
            match self.provider.charge(p.id, p.amount_cents).await {
                Ok(_) => {
                    mark_charge_accepted(&self.db, p.id, Utc::now()).await?;
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(payment_id = p.id, error = %e, "charge not taken; asking again next round");
                }
            }
        }
        Ok(sent)
    }

    /// `seckill_sweeper_lag_seconds`: how far past its deadline the most overdue unpaid
    /// order is (0 when none is overdue). Above a few seconds the sweeper is behind, or an
    /// order waits for a payment in its grace period.
    async fn record_lag(&self, now: chrono::DateTime<Utc>) -> anyhow::Result<()> {
        let oldest: Option<Option<chrono::NaiveDateTime>> = order::Entity::find()
            .select_only()
            .column_as(order::Column::PaymentDeadline.min(), "oldest")
            .filter(order::Column::Status.eq(order::STATUS_CREATED))
            .into_tuple()
            .one(&self.db)
            .await?;
        let lag = oldest
            .flatten()
            .map(|d| (now - utc(d)).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("seckill_sweeper_lag_seconds").set(lag);
        Ok(())
    }
}
