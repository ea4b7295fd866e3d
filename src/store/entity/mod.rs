//! sea-orm entities of the tables (schema in `migrations/`).
//!
//! Times are `DATETIME(3)` holding UTC, mapped to chrono's naive type: sqlx binds a
//! `DateTime<Utc>` as a `TIMESTAMP`, which MariaDB cannot hold past 2038 (it stores NULL).
//! [`utc`] and [`naive`] convert at the edges.

use chrono::{DateTime, NaiveDateTime, Utc};

/// A stored time, read back as UTC.
pub fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// A UTC time, as stored.
pub fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

pub mod activity;
pub mod order;
pub mod payment;
