//! `seckill_order`: one row per accepted purchase. `uk_user_activity` is the final guard of
//! invariant I2 (one order per user per activity); the writer inserts with duplicates
//! ignored on it. `idempotency_key` is kept so Redis state can be rebuilt from the rows.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000002_create_order"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE seckill_order (
                    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                    activity_id BIGINT UNSIGNED NOT NULL,
                    user_id BIGINT UNSIGNED NOT NULL,
                    quantity INT NOT NULL,
                    status VARCHAR(16) NOT NULL,
                    idempotency_key VARCHAR(64) NOT NULL,
                    version INT NOT NULL DEFAULT 0,
                    created_at DATETIME(3) NOT NULL,
                    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                        ON UPDATE CURRENT_TIMESTAMP(3),
                    UNIQUE KEY uk_user_activity (user_id, activity_id),
                    KEY idx_order_activity (activity_id, status),
                    CONSTRAINT ck_order_quantity CHECK (quantity > 0)
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE seckill_order")
            .await
            .map(|_| ())
    }
}
