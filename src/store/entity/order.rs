use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seckill_order")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: u64,
    pub activity_id: u64,
    pub user_id: u64,
    pub quantity: i32,
    /// `created`, `paid`, `cancelled` or `rejected` (refused by the oversell guard).
    pub status: String,
    pub idempotency_key: String,
    pub version: i32,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Status of a freshly persisted order.
pub const STATUS_CREATED: &str = "created";
/// Status of an order the MySQL oversell guard refused.
pub const STATUS_REJECTED: &str = "rejected";
