//! An activity's payment terms (price, payment window), as the writer needs them to store an
//! order's `amount_cents` and `payment_deadline`.
//!
//! Nothing changes them after the activity is created, so each writer reads them once per
//! activity and keeps them: the batch path stays at its three statements.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{Duration, NaiveDateTime};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};

use crate::domain::ActivityId;
use crate::store::entity::activity;

/// Price and payment window of one activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub price_cents: i64,
    pub payment_window_secs: i64,
}

impl Terms {
    /// What an order of `quantity` units costs.
    pub fn amount(&self, quantity: i32) -> i64 {
        self.price_cents.saturating_mul(i64::from(quantity))
    }

    /// When an order created at `created_at` must be paid by.
    pub fn deadline(&self, created_at: NaiveDateTime) -> NaiveDateTime {
        created_at + Duration::seconds(self.payment_window_secs)
    }
}

impl From<&activity::Model> for Terms {
    fn from(row: &activity::Model) -> Self {
        Self {
            price_cents: row.price_cents,
            payment_window_secs: row.payment_window_secs.into(),
        }
    }
}

/// The terms of every activity this writer has stored orders of.
#[derive(Debug, Default)]
pub struct TermsCache(Mutex<HashMap<ActivityId, Terms>>);

impl TermsCache {
    /// The activity's terms; `None` if it is not in MySQL.
    pub async fn get(
        &self,
        db: &DatabaseConnection,
        id: ActivityId,
    ) -> Result<Option<Terms>, DbErr> {
        if let Some(t) = self.lock().get(&id) {
            return Ok(Some(*t));
        }
        let Some(row) = activity::Entity::find_by_id(id.get()).one(db).await? else {
            return Ok(None);
        };
        let terms = Terms::from(&row);
        self.lock().insert(id, terms);
        Ok(Some(terms))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActivityId, Terms>> {
        // A panic while holding this lock cannot leave the map half-written (one insert).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
