//! Integration tests: the real service against the real Redis and MySQL.

mod admin;
mod burst;
mod callbacks;
mod crash;
mod expiry;
mod faults;
mod gate;
mod helpers;
mod hostile;
mod lifecycle_crash;
mod lifecycle_races;
mod mysql_proxy;
mod openapi;
mod operations;
mod payment_helpers;
mod payments;
mod protocol;
mod provider;
mod purchase;
mod rate_limit;
mod replication;
mod restart;
mod service;
mod sweeper;
mod test_data;
mod writer;
