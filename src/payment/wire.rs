//! The messages exchanged with the payment provider, shared by the service's client, its
//! callback endpoint and `seckill provider`, so the two sides cannot drift apart.
//!
//! Ids travel as decimal strings, like every 64-bit id of the API.

use serde::{Deserialize, Serialize};

/// Path of the provider's charge endpoint, under `payment.provider_url`.
pub const CHARGES_PATH: &str = "/charges";

/// `POST /charges`, sent with `Idempotency-Key: <payment_id>`: the provider charges once per
/// payment id however often the service asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    pub payment_id: String,
    pub amount_cents: i64,
    pub callback_url: String,
}

/// The provider's answer to a charge: it has taken the request (the result comes later, by
/// callback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeAccepted {
    pub payment_id: String,
    pub provider_txn_id: String,
}

/// What a provider transaction ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Succeeded,
    Failed,
}

/// The body of `POST /api/v1/payments/callback`, signed by [`super::signature`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    pub payment_id: String,
    pub provider_txn_id: String,
    pub status: CallbackStatus,
    pub amount_cents: i64,
}
