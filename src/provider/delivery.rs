//! Delivering one copy of a callback: delayed, maybe held back, maybe dropped, retried with
//! backoff until the receiver answers 2xx.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::charges::{Charge, State};
use crate::payment::signature;
use crate::payment::wire::Callback;

/// Delivers one copy of `charge`'s callback.
pub(super) async fn deliver(state: Arc<State>, charge: Charge) {
    let args = &state.args;
    let mut wait = args.delay_ms + state.up_to(args.jitter_ms);
    if args.reorder {
        wait += state.up_to(args.reorder_window_ms);
    }
    tokio::time::sleep(Duration::from_millis(wait)).await;
    // The body is fixed; the signature is made again at each attempt, with its time.
    let body = match serde_json::to_vec(&Callback {
        payment_id: charge.payment_id.clone(),
        provider_txn_id: charge.provider_txn_id.clone(),
        status: charge.status,
        amount_cents: charge.amount_cents,
    }) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a callback");
            return;
        }
    };
    let mut pause = Duration::from_millis(args.retry_min_ms);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        state.record(&charge.payment_id, |c| c.attempts += 1);
        if state.chance() < args.drop_share {
            state.record(&charge.payment_id, |c| c.dropped += 1);
        } else {
            let sig = signature::sign(&state.secret, chrono::Utc::now().timestamp(), &body);
            let started = Instant::now();
            let sent = state
                .http
                .post(&charge.callback_url)
                .header("content-type", "application/json")
                .header(signature::HEADER, sig)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    state.delivered_in(started.elapsed().as_micros() as u64);
                    state.record(&charge.payment_id, |c| c.delivered += 1);
                    return;
                }
                Ok(resp) => {
                    tracing::debug!(payment_id = %charge.payment_id, status = %resp.status(), "callback refused; retrying");
                }
                Err(e) => {
                    tracing::debug!(payment_id = %charge.payment_id, error = %e, "callback not delivered; retrying");
                }
            }
        }
        if args.max_attempts > 0 && attempts >= args.max_attempts {
            state.record(&charge.payment_id, |c| c.abandoned += 1);
            tracing::warn!(payment_id = %charge.payment_id, attempts, "callback abandoned");
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(args.retry_max_ms));
    }
}
