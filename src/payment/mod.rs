//! After the purchase: payment tokens, payments, provider callbacks.
//!
//! The idempotency methods of this product, each where it belongs (SPEC "After the
//! purchase"): a one-time token in front of the payment, consumed in one Redis script (I8);
//! an idempotency key on the pay request; `UNIQUE (provider_txn_id)` and conditional,
//! versioned transitions in MySQL so that a provider's transaction is applied once (I6).
//!
//! [`signature`] and [`wire`] are the contract with the provider, shared with
//! `seckill provider`.

pub mod charge;
pub mod signature;
pub mod wire;

pub use charge::{ChargeError, ProviderClient};
