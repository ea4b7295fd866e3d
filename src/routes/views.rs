//! JSON bodies of successful responses. 64-bit ids are written as strings.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::string_id;

/// An order, as the buyer sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    /// The order id (a 64-bit snowflake, as a string).
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "383353447455391745")]
    pub order_id: u64,
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "383353447455391744")]
    pub activity_id: u64,
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "42")]
    pub user_id: u64,
    #[schema(minimum = 1)]
    pub quantity: u32,
    #[schema(value_type = OrderStatus)]
    pub status: String,
    /// Absent from the purchase answer (and its replays), present on lookups.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>, nullable = false)]
    pub created_at: Option<DateTime<Utc>>,
}

/// The state of an order: `pending` (accepted, not yet in MySQL), `created` (stored),
/// `rejected` (refused by the MySQL oversell guard); `paid`, `cancelled` and `expired` are the
/// states of the payment flow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // documentation only: the handlers write these values as strings
pub enum OrderStatus {
    Pending,
    Created,
    Paid,
    Cancelled,
    Expired,
    Rejected,
}

/// An activity, as anyone sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityView {
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "383353447455391744")]
    pub activity_id: u64,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Most units one buyer may order in this activity.
    #[schema(minimum = 1, maximum = 1000)]
    pub per_user_limit: i64,
    /// Units left for sale.
    #[schema(minimum = 0)]
    pub remaining_stock: i64,
}

/// An activity with the figures an operator watches.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminActivityView {
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "383353447455391744")]
    pub activity_id: u64,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[schema(minimum = 1, maximum = 1000)]
    pub per_user_limit: i64,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub total_stock: i64,
    /// Units left in Redis; `null` when Redis holds no state for the activity.
    #[schema(minimum = 0)]
    pub remaining_stock: Option<i64>,
    /// Orders accepted by the gate (Redis).
    #[schema(minimum = 0)]
    pub accepted: i64,
    /// Order rows in MySQL.
    pub persisted: u64,
    /// Units sold according to MySQL.
    #[schema(minimum = 0)]
    pub sold: i64,
    /// Stream entries not yet committed (delivered or not).
    pub pending: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_letters: u64,
}

/// `GET /healthz`: the process answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(value_type = String, pattern = "^ok$")]
    pub status: &'static str,
}

/// `GET /readyz`: whether Redis and MySQL answer (`200` when both do, `503` otherwise).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` when both dependencies answer, else `degraded`.
    #[schema(value_type = ReadinessStatus)]
    pub status: &'static str,
    #[schema(value_type = DependencyState)]
    pub redis: &'static str,
    #[schema(value_type = DependencyState)]
    pub mysql: &'static str,
}

/// Overall readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // documentation only: the handlers write these values as strings
pub enum ReadinessStatus {
    Ready,
    Degraded,
}

/// Whether one dependency answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // documentation only: the handlers write these values as strings
pub enum DependencyState {
    Up,
    Down,
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
