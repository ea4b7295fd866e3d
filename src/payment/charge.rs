//! Asking the provider to charge a payment.
//!
//! The payment id is the provider's idempotency key, so asking again is always safe: the
//! provider charges once per payment however many requests reach it. That is what lets the
//! service retry until the provider answers, from the request that recorded the payment and,
//! after a restart, from the sweeper (a payment still `processing` whose charge the provider
//! never acknowledged).

use std::time::Duration;

use reqwest::StatusCode;

use super::wire::{ChargeAccepted, ChargeRequest, CHARGES_PATH};
use crate::configuration::Settings;

/// Why a charge request did not get a `2xx`.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    /// No answer, a timeout or a `5xx`/`429`: worth retrying.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request itself (`4xx`): retrying the same request will not
    /// help; logged loudly.
    #[error("provider refused the charge: {status} {body}")]
    Refused { status: u16, body: String },
}

/// HTTP client of the payment provider.
#[derive(Clone, Debug)]
pub struct ProviderClient {
    http: reqwest::Client,
    charges_url: String,
    callback_url: String,
    retry_max: Duration,
}

impl ProviderClient {
    /// A client asking for callbacks at `callback_url` ([`Settings::callback_url`]).
    pub fn new(settings: &Settings, callback_url: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(
                settings.payment.provider_timeout_ms.max(1),
            ))
            .build()?;
        Ok(Self {
            http,
            charges_url: format!(
                "{}{CHARGES_PATH}",
                settings.payment.provider_url.trim_end_matches('/')
            ),
            callback_url,
            retry_max: Duration::from_millis(settings.payment.retry_max_ms.max(100)),
        })
    }

    /// One charge request.
    pub async fn charge(
        &self,
        payment_id: u64,
        amount_cents: i64,
    ) -> Result<ChargeAccepted, ChargeError> {
        let id = payment_id.to_string();
        let resp = self
            .http
            .post(&self.charges_url)
            .header("Idempotency-Key", &id)
            .json(&ChargeRequest {
                payment_id: id.clone(),
                amount_cents,
                callback_url: self.callback_url.clone(),
            })
            .send()
            .await
            .map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json::<ChargeAccepted>()
                .await
                .map_err(|e| ChargeError::Unavailable(format!("unreadable answer: {e}")));
        }
        let body = resp.text().await.unwrap_or_default();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(ChargeError::Unavailable(format!("{status} {body}")))
        } else {
            Err(ChargeError::Refused {
                status: status.as_u16(),
                body,
            })
        }
    }

    /// Charges until the provider takes the request, pausing 100 ms, then twice as long
    /// each time, up to `payment.retry_max_ms`. Stops at a refusal (`4xx`).
    pub async fn charge_until_accepted(
        &self,
        payment_id: u64,
        amount_cents: i64,
    ) -> Result<ChargeAccepted, ChargeError> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.charge(payment_id, amount_cents).await {
                Ok(accepted) => return Ok(accepted),
                Err(ChargeError::Unavailable(e)) => {
                    metrics::counter!("seckill_charge_retries_total").increment(1);
                    tracing::warn!(payment_id, error = %e, retry_in_ms = pause.as_millis() as u64,
                        "payment provider unavailable; retrying the charge");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.retry_max);
                }
                Err(refused) => return Err(refused),
            }
        }
    }
}
