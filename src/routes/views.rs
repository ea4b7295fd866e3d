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
    /// The activity's price × quantity (absent from the purchase answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, nullable = false, minimum = 0)]
    pub amount_cents: Option<i64>,
    /// Unpaid after this time, the order expires (absent from the purchase answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>, nullable = false)]
    pub payment_deadline: Option<DateTime<Utc>>,
    /// When the order was paid; present only once it is `paid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>, nullable = false)]
    pub paid_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/orders/{order_id}/payment-token`: a one-time token for paying the order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentTokenView {
    /// Send it once, as the `Payment-Token` header of the pay request.
    #[schema(
        pattern = "^pt_[0-9a-f]{32}$",
        example = "pt_6f1c2d3e4a5b69788796a5b4c3d2e1f0"
    )]
    pub payment_token: String,
    /// The token is refused after this time (never later than the payment deadline).
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/v1/orders/{order_id}/pay`: the payment started (and every replay of it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "383353447455391760")]
    pub payment_id: u64,
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "383353447455391745")]
    pub order_id: u64,
    #[schema(minimum = 0)]
    pub amount_cents: i64,
    /// Always `processing` in this answer; the order's status tells the result.
    #[schema(value_type = String, pattern = "^processing$")]
    pub status: &'static str,
}

/// The answer to a payment callback the service accepted (applied now or before).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallbackView {
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$")]
    pub payment_id: u64,
    /// The payment's status after this callback.
    #[schema(value_type = PaymentStatus)]
    pub status: String,
    /// What this delivery did: `paid`, `failed`, `refund_required`, `duplicate` (applied
    /// before) or `ignored` (too late to change anything).
    #[schema(value_type = String, pattern = "^(paid|failed|refund_required|duplicate|ignored)$")]
    pub outcome: &'static str,
}

/// The state of a payment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only: the handlers write these values as strings
pub enum PaymentStatus {
    Processing,
    Succeeded,
    Failed,
    RefundRequired,
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
    /// Price of one unit.
    #[schema(minimum = 0)]
    pub price_cents: i64,
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
    #[schema(minimum = 0)]
    pub price_cents: i64,
    #[schema(minimum = 1)]
    pub payment_window_secs: i64,
    /// Orders per status in MySQL (`pending` orders are not rows yet: see `pending`).
    pub created: u64,
    pub paid: u64,
    pub cancelled: u64,
    pub expired: u64,
    pub rejected: u64,
    /// Payments that took money for an order that could no longer be paid: to refund.
    pub refund_required: u64,
    /// Age of the oldest order waiting for the writer (the oldest stream entry), in
    /// milliseconds; `null` when none waits.
    pub writer_lag_ms: Option<u64>,
    /// Purchase answers this service process gave for the activity since it started, by
    /// outcome (the `outcome` labels of `seckill_purchase_total`; only those that occurred).
    /// Each process counts its own.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub outcomes: std::collections::BTreeMap<&'static str, u64>,
}

/// One activity in the admin list: its settings, from MySQL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminActivitySummary {
    #[serde(with = "string_id")]
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,19}$", example = "383353447455391744")]
    pub activity_id: u64,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub per_user_limit: i64,
    pub total_stock: i64,
    pub price_cents: i64,
    pub payment_window_secs: i64,
}

/// `GET /api/v1/admin/activities`: the most recently created activities, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminActivityList {
    pub activities: Vec<AdminActivitySummary>,
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
