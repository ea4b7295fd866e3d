//! Idempotent retries (invariant I3).
//!
//! A buyer's client retries after timeouts, gateways retry, people double-click. Each
//! attempt carries an `Idempotency-Key`; the Lua gate stores the accepted answer under
//! (activity, user, key) together with a fingerprint of the request, in the same atomic step
//! that takes the stock. A later attempt with the same key is answered from that record:
//! the same order if the fingerprint matches, `422` if it does not.
//!
//! Only accepted purchases leave a record: rejections (sold out, not started…) are decided
//! afresh on a retry, so a sell-out does not fill Redis with millions of keys.
//!
//! Keys live under the activity's hash tag (so the gate stays one single-slot script on
//! Redis Cluster); the scope of a key is therefore (user, activity).

mod key;

pub use key::IdempotencyKey;

use crate::domain::Quantity;

/// What the gate decided for a key, seen from the idempotency side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAction {
    /// First time this key is seen: the purchase was decided now.
    Processed,
    /// The key was seen with the same payload: answer the stored order again.
    Replay,
}

/// The payload fingerprint compared on a retry. The activity and user are already part of
/// the record's key, so the only remaining payload is the quantity; the canonical form is
/// versioned so a later payload field can change it without colliding with old records.
pub fn fingerprint(quantity: Quantity) -> String {
    format!("v1:q={}", quantity.get())
}
