//! Schema migrations of the seckill service (sea-orm-migration layout).
//!
//! The service runs them at start (`seckill serve`) or alone (`seckill migrate`), holding a
//! MySQL named lock so that several instances starting at once do not race.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_activity;
mod m20261123_000002_create_order;
mod m20261124_000003_payments;
mod m20261204_000004_fence_owner;

/// Every migration of the service, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_activity::Migration),
            Box::new(m20261123_000002_create_order::Migration),
            Box::new(m20261124_000003_payments::Migration),
            Box::new(m20261204_000004_fence_owner::Migration),
        ]
    }
}
