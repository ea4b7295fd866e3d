//! `seckill provider`: a payment provider for local runs, tests and load tests (like
//! stripe-mock), with options that make it hostile.
//!
//! It speaks the contract of [`crate::payment::wire`]: `POST /charges` with the payment id as
//! `Idempotency-Key` answers `202` and charges once per payment id; the result comes later as
//! a callback signed with [`crate::payment::signature`], retried with backoff until the
//! service answers `2xx`. Real providers behave worse than a happy path, and each option
//! reproduces one way they do, so that the service's guarantees are tested against it:
//!
//! - `--duplicates N`: every callback is delivered N times (providers deliver "at least
//!   once"): the service must apply each transaction once (I6);
//! - `--delay-ms`, `--jitter-ms`, `--reorder`: callbacks arrive late and out of order — a
//!   success after the order expired, a `failed` after a `succeeded`;
//! - `--fail-share`: a share of charges fail: the buyer must be able to pay again;
//! - `--fail-charges-share`: the charge request itself fails (`503`) before anything is
//!   recorded: the service must retry it;
//! - `--drop-share`: a share of callback attempts never reach the service (a lost request):
//!   the provider's retries must still get every callback through.
//!
//! `GET /charges/{payment_id}` and `GET /stats` let tests and load tests see what it did
//! (`undelivered` = 0 means every callback got its `2xx`).

mod charges;
mod delivery;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use charges::State;
pub use charges::{Charge, Stats};

/// Options of `seckill provider`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Address to listen on (default: the host of `payment.provider_url`).
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default: the port of `payment.provider_url`; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Secret of the callback signatures (default: `payment.webhook_secret`, i.e.
    /// SECKILL__PAYMENT__WEBHOOK_SECRET or the configuration file: the service's own).
    #[arg(long)]
    pub webhook_secret: Option<String>,
    /// Share of charges that fail (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub fail_share: f64,
    /// Share of charge requests answered 503 before anything is recorded (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub fail_charges_share: f64,
    /// Copies of every callback, each delivered (and retried) on its own.
    #[arg(long, default_value_t = 1)]
    pub duplicates: u32,
    /// Delay before the first attempt of each copy (ms).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// A random extra delay of each copy, up to this (ms).
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Hold each copy a random time within `--reorder-window-ms`, so callbacks arrive out of
    /// order.
    #[arg(long)]
    pub reorder: bool,
    /// The longest a copy is held back with `--reorder` (ms).
    #[arg(long, default_value_t = 500)]
    pub reorder_window_ms: u64,
    /// Share of callback attempts dropped (never sent; retried like a failed one).
    #[arg(long, default_value_t = 0.0)]
    pub drop_share: f64,
    /// First pause after a failed attempt (ms); doubles up to `--retry-max-ms`.
    #[arg(long, default_value_t = 100)]
    pub retry_min_ms: u64,
    /// Longest pause between two attempts of a copy (ms).
    #[arg(long, default_value_t = 5000)]
    pub retry_max_ms: u64,
    /// Attempts per copy before giving up (0: never give up).
    #[arg(long, default_value_t = 0)]
    pub max_attempts: u32,
    /// Seed of the random choices, for a reproducible run.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Default for ProviderArgs {
    fn default() -> Self {
        Self {
            host: Some("127.0.0.1".into()),
            port: Some(0),
            webhook_secret: None,
            fail_share: 0.0,
            fail_charges_share: 0.0,
            duplicates: 1,
            delay_ms: 0,
            jitter_ms: 0,
            reorder: false,
            reorder_window_ms: 500,
            drop_share: 0.0,
            retry_min_ms: 100,
            retry_max_ms: 5000,
            max_attempts: 0,
            seed: None,
        }
    }
}

impl ProviderArgs {
    /// Refuses shares outside 0.0–1.0 and a retry window that shrinks.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("--fail-share", self.fail_share),
            ("--fail-charges-share", self.fail_charges_share),
            ("--drop-share", self.drop_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be from 0.0 to 1.0, got {v}"));
            }
        }
        if self.drop_share >= 1.0 && self.max_attempts == 0 {
            return Err("--drop-share 1.0 without --max-attempts would retry for ever".into());
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            return Err("--retry-min-ms must be > 0 and <= --retry-max-ms".into());
        }
        Ok(())
    }
}

/// A provider listening on `listener`; `signals`: stop on SIGINT/SIGTERM (the CLI).
fn server(state: Arc<State>, listener: TcpListener, signals: bool) -> std::io::Result<Server> {
    let data = web::Data::from(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/charges", web::post().to(charges::create))
            .route("/charges/{payment_id}", web::get().to(charges::show))
            .route("/stats", web::get().to(charges::stats))
    })
    .workers(1)
    .listen(listener)?;
    if !signals {
        server = server.disable_signals();
    }
    Ok(server.run())
}

/// Runs the provider until SIGINT/SIGTERM (`seckill provider`).
pub async fn run(args: ProviderArgs, secret: String, host: &str, port: u16) -> anyhow::Result<()> {
    args.check().map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind((host, port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::new(args, secret)?);
    let server = server(state, listener, true)?;
    println!("provider listening on http://{addr}");
    server.await?;
    Ok(())
}

/// A provider running in this process on a thread of its own (tests).
pub struct RunningProvider {
    addr: std::net::SocketAddr,
    handle: ServerHandle,
    state: Arc<State>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningProvider {
    /// Starts a provider on 127.0.0.1 (`args.port`, 0 for a free port).
    pub fn start(args: ProviderArgs, secret: &str) -> anyhow::Result<Self> {
        args.check().map_err(anyhow::Error::msg)?;
        let host = args.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let listener = TcpListener::bind((host.as_str(), args.port.unwrap_or(0)))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(args, secret.to_owned())?);
        let (tx, rx) = std::sync::mpsc::channel();
        let server_state = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match server(server_state, listener, false) {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.handle()));
                        let _ = server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let handle = rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the provider thread stopped"))??;
        Ok(Self {
            addr,
            handle,
            state,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the service's `payment.provider_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    pub fn charge(&self, payment_id: &str) -> Option<Charge> {
        self.state.charge(payment_id)
    }

    /// Stops the server (pending deliveries stop with its runtime).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            let handle = self.handle.clone();
            // The handle's future completes once the server has stopped.
            let stopper = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(handle.stop(false));
                }
            });
            let _ = stopper.join();
            let _ = thread.join();
        }
    }
}

impl Drop for RunningProvider {
    fn drop(&mut self) {
        self.shutdown();
    }
}
