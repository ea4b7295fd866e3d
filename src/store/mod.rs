//! MySQL: the durable record of activities and orders, through sea-orm.
//!
//! Only two writers touch it: the admin endpoints (activities) and the order writer
//! (orders and `sold`). The request path reads it for order lookups.

mod connect;
pub mod entity;
mod errors;

pub use connect::{connect, migrate};
pub use errors::{is_connection_error, is_data_error};
