//! Building the process from settings: connections, the HTTP server, the writer task.
//!
//! `seckill serve` = [`Application::build`] + [`Application::run_until_stopped`]; the tests
//! build the same application on a random port with their own database and key prefix.
//!
//! Shutdown: actix stops accepting on SIGTERM/SIGINT and lets in-flight requests finish
//! (`server.shutdown_timeout_secs`); then the writer's [`CancellationToken`] fires, the
//! writer commits and acks the batches in hand, drains what the streams still hold (for at
//! most half of `server.shutdown_timeout_secs`), and the process exits. Entries not
//! committed stay pending in Redis for the next writer.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::auth::{AdminAuth, BuyerAuth};
use crate::configuration::Settings;
use crate::gate::{Gate, KeySpace, ReplicaAcks};
use crate::lifecycle::Sweeper;
use crate::payment::ProviderClient;
use crate::redis_conn::RedisClient;
use crate::routes::RateLimits;
use crate::snowflake::{IdGenerator, InstanceLease, LeaseFence};
use crate::writer::Writer;
use crate::{error, routes, store, telemetry};

/// Connections and shared state of one process.
pub struct Resources {
    pub settings: Settings,
    pub redis: RedisClient,
    pub gate: Gate,
    pub db: DatabaseConnection,
}

impl Resources {
    /// Connects to Redis and MySQL (creating the database if missing) and migrates.
    ///
    /// A process often starts together with its servers (`docker compose up`, a host
    /// booting): each first connection is retried for `server.connect_wait_secs` before the
    /// process gives up, instead of failing at once and relying on a restart loop.
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let wait = Duration::from_secs(settings.server.connect_wait_secs);
        let redis = RedisClient::open(&settings.redis)?;
        let conn = retry(
            &format!("redis at {}", settings.redis.shown()),
            wait,
            || redis.shared(),
        )
        .await?;
        tracing::info!(redis = %settings.redis.shown(), "connected to redis");
        let mysql = crate::configuration::without_password(&settings.database.url);
        retry(&format!("mysql at {mysql}"), wait, || {
            store::migrate(&settings.database)
        })
        .await?;
        let db = store::connect(&settings.database).await?;
        let mut gate = Gate::new(
            conn,
            KeySpace::new(settings.redis.key_prefix.clone()),
            settings.idempotency.ttl_secs,
            settings.writer.max_backlog,
        );
        let r = &settings.redis;
        let acks =
            ReplicaAcks::connect(&redis, r.replica_acks, r.replica_ack_timeout_ms, "purchase");
        gate = gate.with_replica_acks(acks.await?);
        Ok(Self {
            settings,
            redis,
            gate,
            db,
        })
    }

    /// Starts the order writer as a task, with a MySQL pool of its own.
    ///
    /// Its own pool, opened here on the caller's runtime: sqlx connections belong to the
    /// runtime that opened them, and actix runs each HTTP worker on a runtime of its own that
    /// stops first at shutdown. A connection the writer borrowed from the shared pool could
    /// have been opened by such a worker and fail just when the writer flushes its last
    /// batches ("A Tokio 1.x context was found, but it is being shutdown").
    pub async fn spawn_writer(
        &self,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let mut db_settings = self.settings.database.clone();
        db_settings.max_connections = (self.settings.writer.max_in_flight as u32).max(1) + 1;
        let db = store::connect(&db_settings).await?;
        let mut writer = Writer::new(
            &self.redis,
            db,
            self.gate.keys().clone(),
            self.settings.writer.clone(),
        )
        .await?;
        let r = &self.settings.redis;
        let acks = ReplicaAcks::connect(
            &self.redis,
            r.replica_acks,
            r.replica_ack_timeout_ms,
            "writer",
        );
        writer = writer.with_replica_acks(acks.await?);
        // Half the stop's budget for draining the streams: the join in
        // `run_until_stopped` waits at most the whole of it.
        let drain_for = Duration::from_secs(self.settings.server.shutdown_timeout_secs) / 2;
        Ok(tokio::spawn(writer.run(shutdown, drain_for)))
    }
}

/// Runs `attempt` until it succeeds or `wait` has passed, logging each failure.
async fn retry<T, E, F, Fut>(what: &str, wait: Duration, mut attempt: F) -> anyhow::Result<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "waiting for {what}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => anyhow::bail!(
                "{what}: {e} (gave up after server.connect_wait_secs = {} s)",
                wait.as_secs()
            ),
        }
    }
}

/// The HTTP service (and, unless disabled, the writer) of `seckill serve`.
pub struct Application {
    port: u16,
    server: Server,
    writer: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
    lease: InstanceLease,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        for warning in settings.check()? {
            tracing::warn!("{warning}");
        }
        let resources = Resources::connect(settings).await?;
        let settings = &resources.settings;
        let lease = InstanceLease::acquire(
            resources.gate.connection(),
            resources
                .gate
                .keys()
                .instance_lease(settings.ids.instance_id),
            settings.ids.instance_id,
        )
        .await?;
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}:{} (server.host / server.port): {e}",
                    settings.server.host,
                    settings.server.port
                )
            })?;
        let port = listener.local_addr()?.port();
        // The callbacks come back to the port really bound (it differs when the setting is 0).
        let provider = ProviderClient::new(settings, settings.callback_url(port))?;
        let shutdown = CancellationToken::new();
        let writer = if settings.writer.enabled {
            Some(resources.spawn_writer(shutdown.clone()).await?)
        } else {
            None
        };
        tokio::spawn(resources.gate.sold_out_cache().run_invalidator(
            resources.redis.pubsub_clients(&settings.redis)?,
            resources.gate.keys().seeded_channel(),
            shutdown.clone(),
        ));
        let sweeper = settings.sweeper.enabled.then(|| {
            tokio::spawn(
                Sweeper::new(
                    resources.gate.clone(),
                    resources.db.clone(),
                    provider.clone(),
                    settings.sweeper.clone(),
                    &settings.payment,
                )
                .run(shutdown.clone()),
            )
        });
        let limits = RateLimits::new(&settings.rate_limit);
        tokio::spawn(
            limits
                .clone()
                .run_pruner(Duration::from_secs(10), shutdown.clone()),
        );
        let server = run_server(listener, &resources, provider, limits, lease.fence())?;
        tracing::info!(port, writer = settings.writer.enabled, "seckill listening");
        Ok(Self {
            port,
            server,
            writer,
            sweeper,
            shutdown,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
            lease,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully (tests; signals do the same in `serve`).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops, then stops the writer after its current batch.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        tracing::info!("stopping: HTTP server closed, finishing the order writer");
        self.shutdown.cancel();
        if let Some(sweeper) = self.sweeper {
            // Between two rounds it stops at once; within one, the round's transactions are
            // short (its lease covers a cut-off one).
            let _ = tokio::time::timeout(self.shutdown_timeout, sweeper).await;
        }
        if let Some(writer) = self.writer {
            if tokio::time::timeout(self.shutdown_timeout, writer)
                .await
                .is_err()
            {
                tracing::warn!("writer did not stop in time; its uncommitted entries stay pending");
            }
        }
        self.lease.release().await;
        tracing::info!("stopped");
        Ok(served?)
    }
}

fn run_server(
    listener: TcpListener,
    r: &Resources,
    provider: ProviderClient,
    limits: std::sync::Arc<RateLimits>,
    fence: LeaseFence,
) -> std::io::Result<Server> {
    let s = &r.settings;
    let gate = web::Data::new(r.gate.clone());
    let db = web::Data::new(r.db.clone());
    let ids = web::Data::new(IdGenerator::new(s.ids.instance_id, fence));
    let buyer_auth = web::Data::new(BuyerAuth::new(&s.auth.jwt_secret, s.auth.trust_user_header));
    let admin_auth = web::Data::new(AdminAuth::new(s.admin.token.clone()));
    let metrics = web::Data::new(telemetry::metrics_handle());
    let tally = web::Data::new(routes::PurchaseTally::default());
    let dev_sign_in = web::Data::new(routes::DevSignIn::for_secret(&s.auth.jwt_secret));
    let limits = web::Data::from(limits);
    let body_timeout = web::Data::new(routes::BodyTimeout(Duration::from_millis(
        s.server.body_timeout_ms,
    )));
    let payments = web::Data::new(routes::PaymentContext {
        provider,
        webhook_secret: s.payment.webhook_secret.clone(),
        token_ttl: chrono::Duration::seconds(s.payment.token_ttl_secs.max(1) as i64),
        used_token_ttl_secs: s.idempotency.ttl_secs,
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::default())
            .app_data(gate.clone())
            .app_data(db.clone())
            .app_data(ids.clone())
            .app_data(buyer_auth.clone())
            .app_data(admin_auth.clone())
            .app_data(metrics.clone())
            .app_data(tally.clone())
            .app_data(dev_sign_in.clone())
            .app_data(limits.clone())
            .app_data(body_timeout.clone())
            .app_data(payments.clone())
            .configure(routes::configure)
            .default_service(web::to(error::not_found_fallback))
    })
    .shutdown_timeout(s.server.shutdown_timeout_secs)
    .listen(listener)?;
    if s.server.workers > 0 {
        server = server.workers(s.server.workers);
    }
    Ok(server.run())
}
