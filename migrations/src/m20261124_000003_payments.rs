//! After the purchase: prices and payment windows, the order's payment fields, the payment
//! table and the sweeper's fence.
//!
//! - `seckill_payment.provider_txn_id` is `UNIQUE`: a provider transaction is applied once
//!   (I6), whatever the number of callbacks;
//! - `uk_payment_key (order_id, idempotency_key)`: one payment per pay request, so a retry
//!   of the request finds the first payment instead of making a second;
//! - `paid_order_id` is the order id of a `succeeded` payment and `NULL` otherwise, under a
//!   `UNIQUE` key: at most one succeeded payment per order, enforced by MySQL itself;
//! - `seckill_order.stock_returned_at` is set once a cancelled or expired order's units are
//!   back in Redis: the sweeper repairs orders left without it (a crash between the MySQL
//!   transition and the Redis return);
//! - `seckill_fence` holds the highest fencing token the sweeper lock has handed out that
//!   MySQL has seen: an expiry written with an older token is refused.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000003_payments"
    }
}

const UP: [&str; 8] = [
    "ALTER TABLE seckill_activity
        ADD COLUMN price_cents BIGINT NOT NULL DEFAULT 0 AFTER per_user_limit,
        ADD COLUMN payment_window_secs INT NOT NULL DEFAULT 900 AFTER price_cents,
        ADD CONSTRAINT ck_activity_price CHECK (price_cents >= 0),
        ADD CONSTRAINT ck_activity_payment_window CHECK (payment_window_secs > 0)",
    "ALTER TABLE seckill_order
        ADD COLUMN amount_cents BIGINT NOT NULL DEFAULT 0 AFTER quantity,
        ADD COLUMN payment_deadline DATETIME(3) NULL AFTER amount_cents,
        ADD COLUMN paid_at DATETIME(3) NULL AFTER payment_deadline,
        ADD COLUMN stock_returned_at DATETIME(3) NULL AFTER paid_at",
    // Orders stored before this migration get the default window.
    "UPDATE seckill_order SET payment_deadline = created_at + INTERVAL 900 SECOND
        WHERE payment_deadline IS NULL",
    "ALTER TABLE seckill_order
        MODIFY payment_deadline DATETIME(3) NOT NULL,
        ADD KEY idx_order_deadline (status, payment_deadline)",
    "CREATE TABLE seckill_payment (
        id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
        order_id BIGINT UNSIGNED NOT NULL,
        amount_cents BIGINT NOT NULL,
        status VARCHAR(16) NOT NULL,
        provider_txn_id VARCHAR(128) NULL,
        idempotency_key VARCHAR(64) NULL,
        provider_accepted_at DATETIME(3) NULL,
        version INT NOT NULL DEFAULT 0,
        created_at DATETIME(3) NOT NULL,
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
            ON UPDATE CURRENT_TIMESTAMP(3),
        paid_order_id BIGINT UNSIGNED AS
            (CASE WHEN status = 'succeeded' THEN order_id END) STORED,
        UNIQUE KEY uk_payment_txn (provider_txn_id),
        UNIQUE KEY uk_payment_key (order_id, idempotency_key),
        UNIQUE KEY uk_payment_paid_order (paid_order_id),
        KEY idx_payment_status (status, created_at),
        CONSTRAINT ck_payment_amount CHECK (amount_cents >= 0)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE seckill_fence (
        name VARCHAR(32) NOT NULL PRIMARY KEY,
        token BIGINT UNSIGNED NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "INSERT INTO seckill_fence (name, token) VALUES ('sweeper', 0)",
    "ALTER TABLE seckill_order ADD KEY idx_order_returns (status, stock_returned_at)",
];

const DOWN: [&str; 4] = [
    "DROP TABLE seckill_fence",
    "DROP TABLE seckill_payment",
    "ALTER TABLE seckill_order DROP KEY idx_order_returns, DROP KEY idx_order_deadline,
        DROP COLUMN stock_returned_at, DROP COLUMN paid_at, DROP COLUMN payment_deadline,
        DROP COLUMN amount_cents",
    "ALTER TABLE seckill_activity DROP CONSTRAINT ck_activity_payment_window,
        DROP CONSTRAINT ck_activity_price, DROP COLUMN payment_window_secs,
        DROP COLUMN price_cents",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in UP {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in DOWN {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
