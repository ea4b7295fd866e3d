//! Integration tests: the real service against the real Redis and MySQL.

mod admin;
mod burst;
mod crash;
mod faults;
mod gate;
mod helpers;
mod hostile;
mod operations;
mod purchase;
mod writer;
