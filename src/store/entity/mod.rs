//! sea-orm entities of the two tables (schema in `migrations/`).

pub mod activity;
pub mod order;
