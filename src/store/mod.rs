//! MySQL: the durable record of activities and orders, through sea-orm.
//!
//! Only two writers touch it: the admin endpoints (activities) and the order writer
//! (orders and `sold`). The request path reads it for order lookups.

mod connect;
pub mod entity;

pub use connect::{connect, migrate};
