use sea_orm::entity::prelude::*;

/// One payment attempt of an order (schema in `migrations/`: `m20261124_000003_payments`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seckill_payment")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: u64,
    pub order_id: u64,
    pub amount_cents: i64,
    /// One of the `STATUS_*` constants.
    pub status: String,
    /// The provider transaction that decided the status (`UNIQUE`).
    pub provider_txn_id: Option<String>,
    /// The buyer's `Idempotency-Key` of the pay request; `None` for a payment recorded from
    /// a callback alone (a second succeeded transaction for one payment).
    pub idempotency_key: Option<String>,
    /// When the provider took the charge request; `None` while the service must still ask.
    pub provider_accepted_at: Option<DateTime>,
    pub version: i32,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Asked of the provider, no result yet.
pub const STATUS_PROCESSING: &str = "processing";
/// The provider charged, and the order became `paid` (final).
pub const STATUS_SUCCEEDED: &str = "succeeded";
/// The provider refused the charge; the buyer may pay again.
pub const STATUS_FAILED: &str = "failed";
/// The provider charged, but the order was already closed (or paid by another payment):
/// the money must go back to the buyer (final).
pub const STATUS_REFUND_REQUIRED: &str = "refund_required";
