//! Logging and metrics set-up, once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// The log filter without `RUST_LOG`: `info`, except actix-http's line per malformed request
/// ("stream error: …", at ERROR): any client could write one per packet and flood the logs,
/// and there is nothing for an operator to do about it. `RUST_LOG=info` brings it back.
pub const DEFAULT_LOG_FILTER: &str = "info,actix_http::h1::dispatcher=off";

/// Installs the tracing subscriber: `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]),
/// `SECKILL_LOG=json` switches to JSON lines. A second call is a no-op.
pub fn init_tracing() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colours only on a terminal: a log file full of escape codes is hard to read and grep.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = if std::env::var("SECKILL_LOG").is_ok_and(|v| v == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder (installed on first use; tests build many apps in
/// one process, and a process has one recorder).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("seckill_writer_batch_size".into()),
                        &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("seckill_gate_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                    )
                });
            match builder.map(|b| b.install_recorder()) {
                Ok(Ok(handle)) => {
                    describe_metrics();
                    handle
                }
                // Another recorder is installed (embedding app): render an empty registry.
                _ => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// The outcomes counted by `seckill_purchase_total`.
fn purchase_outcomes() -> impl Iterator<Item = &'static str> {
    crate::gate::GateOutcome::LABELS
        .into_iter()
        .chain(["rate_limited_user", "rate_limited_address"])
}

/// Counts one purchase answered `outcome` (`seckill_purchase_total`). The handles are made
/// once: a labelled `counter!` hashes its labels and looks them up in the registry on every
/// call, on the path of every purchase.
pub fn count_purchase(outcome: &'static str) {
    static COUNTERS: OnceLock<Vec<(&'static str, metrics::Counter)>> = OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        metrics_handle(); // the recorder first: a handle made before it counts nowhere
        purchase_outcomes()
            .map(|o| {
                (
                    o,
                    metrics::counter!("seckill_purchase_total", "outcome" => o),
                )
            })
            .collect()
    });
    match counters.iter().find(|(o, _)| *o == outcome) {
        Some((_, counter)) => counter.increment(1),
        None => metrics::counter!("seckill_purchase_total", "outcome" => outcome).increment(1),
    }
}

/// `# HELP` and `# TYPE` for every metric, and every counter registered at 0, so that a
/// dashboard or an alert on `rate()` sees a series from the first scrape, not from the
/// first event (an alert on "dead letters > 0" must not wait for the first one to exist).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "seckill_purchase_total",
        "Purchase requests by outcome (accepted, replay, each rejection, rate_limited_*)"
    );
    for outcome in purchase_outcomes() {
        metrics::counter!("seckill_purchase_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        "seckill_gate_local_answers_total",
        "Purchases answered from the local sold-out view, without Redis"
    );
    metrics::counter!("seckill_gate_local_answers_total").absolute(0);
    describe_counter!(
        "seckill_replica_ack_timeouts_total",
        "Purchases answered 503 because fewer than redis.replica_acks replicas confirmed them in time"
    );
    metrics::counter!("seckill_replica_ack_timeouts_total").absolute(0);
    describe_histogram!(
        "seckill_gate_batch_size",
        "Purchases decided by one call of the purchase script (those of one activity that \
         arrived while its previous call was in flight)"
    );
    describe_counter!(
        "seckill_replica_waits_total",
        "Replica confirmations sent (check script + WAIT), by who waits: purchase (one per \
         batch of concurrent accepts of an activity) or writer (one per stored batch)"
    );
    describe_gauge!(
        "seckill_stock_remaining",
        "Units left per activity, as last seen by the gate"
    );
    describe_counter!(
        "seckill_writer_orders_total",
        "Orders the writer handled, by result (created, rejected, duplicate, dead_letter; with \
         redis.replica_acks also not_replicated: left pending, and lost: dropped, its master \
         no longer holds it)"
    );
    for result in [
        "created",
        "rejected",
        "duplicate",
        "dead_letter",
        "not_replicated",
        "lost",
    ] {
        metrics::counter!("seckill_writer_orders_total", "result" => result).absolute(0);
    }
    describe_counter!(
        "seckill_writer_errors_total",
        "Writer batches that failed and were retried"
    );
    metrics::counter!("seckill_writer_errors_total").absolute(0);
    describe_counter!(
        "seckill_writer_careful_batches_total",
        "Batches that took the careful path (a re-delivery, or Redis sold beyond the stock)"
    );
    metrics::counter!("seckill_writer_careful_batches_total").absolute(0);
    describe_gauge!(
        "seckill_writer_backlog",
        "Stream entries not yet committed to MySQL, all activities"
    );
    metrics::gauge!("seckill_writer_backlog").set(0.0);
    describe_histogram!(
        "seckill_writer_batch_seconds",
        Unit::Seconds,
        "Time to persist and acknowledge one batch"
    );
    describe_histogram!(
        "seckill_writer_batch_size",
        Unit::Count,
        "Entries per batch"
    );
    describe_histogram!(
        "seckill_writer_lag_seconds",
        Unit::Seconds,
        "Acceptance to commit of the oldest order of each batch"
    );
    describe_payment_metrics();
    // Registered now, so that they are listed (empty) before the first batch.
    for name in [
        "seckill_writer_batch_seconds",
        "seckill_writer_batch_size",
        "seckill_writer_lag_seconds",
    ] {
        let _ = metrics::histogram!(name);
    }
}

/// The metrics of the order's life after the purchase (`crate::lifecycle`, the payment
/// routes and the sweeper).
fn describe_payment_metrics() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "seckill_payments_total",
        "Payments by outcome: started (pay accepted), succeeded, failed, refund_required"
    );
    for outcome in ["started", "succeeded", "failed", "refund_required"] {
        metrics::counter!("seckill_payments_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        "seckill_payment_callbacks_total",
        "Provider callbacks by outcome; duplicate = a transaction already applied"
    );
    for outcome in [
        "paid",
        "failed",
        "refund_required",
        "duplicate",
        "ignored",
        "invalid_signature",
        "invalid",
        "unknown_payment",
        "amount_mismatch",
        "txn_conflict",
        "error",
    ] {
        metrics::counter!("seckill_payment_callbacks_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        "seckill_refunds_required_total",
        "Provider transactions that took money for an order no longer payable"
    );
    metrics::counter!("seckill_refunds_required_total").absolute(0);
    describe_counter!(
        "seckill_orders_closed_total",
        "Orders cancelled by their buyer or expired unpaid, by status"
    );
    for status in ["cancelled", "expired"] {
        metrics::counter!("seckill_orders_closed_total", "status" => status).absolute(0);
    }
    describe_counter!(
        "seckill_stock_returned_units_total",
        Unit::Count,
        "Units of closed orders put back on sale in Redis"
    );
    metrics::counter!("seckill_stock_returned_units_total").absolute(0);
    describe_counter!(
        "seckill_charge_retries_total",
        "Charge requests to the payment provider that failed and were retried"
    );
    metrics::counter!("seckill_charge_retries_total").absolute(0);
    describe_counter!(
        "seckill_charge_refused_total",
        "Charge requests the payment provider refused (4xx)"
    );
    metrics::counter!("seckill_charge_refused_total").absolute(0);
    describe_counter!(
        "seckill_sweeper_rounds_total",
        "Sweeper rounds by result: ran, not_holder (another process holds the lock), fenced, error"
    );
    for result in ["ran", "not_holder", "fenced", "error"] {
        metrics::counter!("seckill_sweeper_rounds_total", "result" => result).absolute(0);
    }
    describe_gauge!(
        "seckill_sweeper_lag_seconds",
        Unit::Seconds,
        "How far past its payment deadline the most overdue unpaid order is (0: none)"
    );
    metrics::gauge!("seckill_sweeper_lag_seconds").set(0.0);
}
