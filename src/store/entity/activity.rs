use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seckill_activity")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: u64,
    pub name: String,
    pub total_stock: i64,
    pub sold: i64,
    pub per_user_limit: i32,
    /// Price of one unit; an order's amount is this × its quantity.
    pub price_cents: i64,
    /// Seconds a `created` order has to be paid before it expires.
    pub payment_window_secs: i32,
    pub starts_at: DateTime,
    pub ends_at: DateTime,
    pub version: i32,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
