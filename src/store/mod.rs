//! MySQL: the durable record of activities and orders, through sea-orm.
//!
//! The admin endpoints write activities, the order writer inserts orders and raises `sold`,
//! and the lifecycle (`crate::lifecycle`) owns every later change of an order, its
//! payments and the `sold` it gives back. The request path reads it for order lookups.

mod connect;
pub mod entity;
mod errors;

pub use connect::{connect, migrate};
pub use errors::{is_connection_error, is_data_error, is_unique_violation};
