use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seckill_order")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: u64,
    pub activity_id: u64,
    pub user_id: u64,
    pub quantity: i32,
    /// The activity's price × quantity, fixed when the order is stored.
    pub amount_cents: i64,
    /// `created_at` + the activity's payment window: unpaid after it, the order expires.
    pub payment_deadline: DateTime,
    pub paid_at: Option<DateTime>,
    /// When a cancelled or expired order's units were given back to Redis (`None` while
    /// that is still to do, and for every other status).
    pub stock_returned_at: Option<DateTime>,
    /// One of the `STATUS_*` constants; only `crate::orders` changes it after the insert.
    pub status: String,
    pub idempotency_key: String,
    pub version: i32,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Status of a freshly persisted order: awaiting payment.
pub const STATUS_CREATED: &str = "created";
/// Status of an order the MySQL oversell guard refused.
pub const STATUS_REJECTED: &str = "rejected";
/// Paid (final).
pub const STATUS_PAID: &str = "paid";
/// Cancelled by the buyer (final); its units went back to the sale.
pub const STATUS_CANCELLED: &str = "cancelled";
/// Not paid within the payment window (final); its units went back to the sale.
pub const STATUS_EXPIRED: &str = "expired";
/// Statuses whose units are held (not for sale again): counted in `sold`.
pub const HOLDING: [&str; 2] = [STATUS_CREATED, STATUS_PAID];
