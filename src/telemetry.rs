//! Logging and metrics set-up, once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the tracing subscriber: `RUST_LOG` filters (default `info`), `SECKILL_LOG=json`
/// switches to JSON lines. A second call is a no-op.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
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
                });
            match builder.map(|b| b.install_recorder()) {
                Ok(Ok(handle)) => handle,
                // Another recorder is installed (embedding app): render an empty registry.
                _ => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}
