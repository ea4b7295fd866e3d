//! JSON bodies of successful responses. 64-bit ids are written as strings.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::string_id;

/// An order, as the buyer sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    #[serde(with = "string_id")]
    #[schema(value_type = String)]
    pub order_id: u64,
    #[serde(with = "string_id")]
    #[schema(value_type = String)]
    pub activity_id: u64,
    #[serde(with = "string_id")]
    #[schema(value_type = String)]
    pub user_id: u64,
    pub quantity: u32,
    /// `pending` (accepted, not yet in MySQL), `created`, `paid`, `cancelled`, `rejected`.
    pub status: String,
    /// Absent from the purchase answer (and its replays), present on lookups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// An activity, as anyone sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityView {
    #[serde(with = "string_id")]
    #[schema(value_type = String)]
    pub activity_id: u64,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub per_user_limit: i64,
    pub remaining_stock: i64,
}

/// An activity with the figures an operator watches.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminActivityView {
    #[serde(with = "string_id")]
    #[schema(value_type = String)]
    pub activity_id: u64,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub per_user_limit: i64,
    pub total_stock: i64,
    /// Units left in Redis; `null` when Redis holds no state for the activity.
    pub remaining_stock: Option<i64>,
    /// Orders accepted by the gate (Redis).
    pub accepted: i64,
    /// Order rows in MySQL.
    pub persisted: u64,
    /// Units sold according to MySQL.
    pub sold: i64,
    /// Stream entries not yet committed (delivered or not).
    pub pending: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_letters: u64,
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
