//! The sweeper fence records who wrote its token, not only the token.
//!
//! Redis can hand one token to two holders: a failover to a replica that had not received
//! the first holder's `INCR` gives the next holder the same number. With the token alone,
//! MySQL accepts both (an equal token is the same holder's next round). With the owner,
//! an equal token is accepted only from the owner that wrote it; the other holder is
//! refused, lets go of the lock, and comes back with a higher token.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000004_fence_owner"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE seckill_fence
                    ADD COLUMN owner VARCHAR(100) NOT NULL DEFAULT '' AFTER token",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE seckill_fence DROP COLUMN owner")
            .await?;
        Ok(())
    }
}
