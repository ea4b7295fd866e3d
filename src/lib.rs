//! seckill: a flash-sale order service.
//!
//! The folders follow the data's path:
//!
//! - [`routes`]: HTTP (actix-web), input parsed once into [`domain`] types, [`auth`];
//! - [`gate`]: the Redis Lua script that decides a purchase atomically, with [`idempotency`];
//! - [`writer`]: drains the activity streams into MySQL ([`store`]) and acks after commit;
//! - [`recovery`]: the operator's tools when a fault left Redis and MySQL disagreeing.
//!
//! [`startup`] builds the whole process from [`configuration::Settings`].

pub mod auth;
pub mod configuration;
pub mod crash_point;
pub mod domain;
pub mod error;
pub mod gate;
pub mod idempotency;
pub mod lifecycle;
pub mod payment;
pub mod provider;
pub mod recovery;
pub mod redis_conn;
pub mod routes;
pub mod snowflake;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod writer;
