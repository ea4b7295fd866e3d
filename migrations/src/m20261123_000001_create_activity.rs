//! `seckill_activity`: one row per sale. `sold` only ever grows through the writer's
//! conditional update (`sold + n <= total_stock`), the MySQL half of invariant I1.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_create_activity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE seckill_activity (
                    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                    name VARCHAR(128) NOT NULL,
                    total_stock BIGINT NOT NULL,
                    sold BIGINT NOT NULL DEFAULT 0,
                    per_user_limit INT NOT NULL DEFAULT 1,
                    starts_at DATETIME(3) NOT NULL,
                    ends_at DATETIME(3) NOT NULL,
                    version INT NOT NULL DEFAULT 0,
                    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                        ON UPDATE CURRENT_TIMESTAMP(3),
                    CONSTRAINT ck_activity_sold CHECK (sold >= 0 AND sold <= total_stock),
                    CONSTRAINT ck_activity_window CHECK (ends_at > starts_at)
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE seckill_activity")
            .await
            .map(|_| ())
    }
}
