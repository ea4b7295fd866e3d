//! The `seckill` command line: `serve`, `writer`, `migrate`, `token`.

use std::io::Write;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use seckill::auth::mint_token;
use seckill::configuration::Settings;
use seckill::domain::UserId;
use seckill::startup::{Application, Resources};
use seckill::{store, telemetry};

/// mimalloc instead of glibc's malloc: the request path allocates small short-lived buffers
/// on every request, and glibc's malloc/free showed as ~10 % of the service's CPU in a
/// `perf` profile of the buy path (see the README's "Load testing" section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "seckill", version, about = "Flash-sale order service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTP service and (unless writer.enabled = false) the order writer; migrates first.
    Serve,
    /// The order writer alone.
    Writer,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print a buyer JWT signed with the configured secret.
    Token {
        /// The user id (decimal, non-zero).
        #[arg(long)]
        user: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Print tokens for this many consecutive users, one per line (load tests).
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_tracing();
    let settings = Settings::load()?;
    match cli.command {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Writer => {
            let resources = Resources::connect(settings).await?;
            let shutdown = CancellationToken::new();
            let writer = resources.spawn_writer(shutdown.clone()).await?;
            wait_for_signal().await;
            tracing::info!("stopping: finishing the current batch");
            shutdown.cancel();
            writer.await?;
            Ok(())
        }
        Command::Migrate => {
            store::migrate(&settings.database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token { user, ttl, count } => {
            let first = UserId::parse(&user)
                .ok_or_else(|| anyhow::anyhow!("--user must be a non-zero decimal u64"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for i in 0..count {
                let user = first
                    .get()
                    .checked_add(i)
                    .map(UserId::new)
                    .ok_or_else(|| anyhow::anyhow!("user ids overflow u64"))?;
                writeln!(out, "{}", mint_token(&settings.auth.jwt_secret, user, ttl)?)?;
            }
            Ok(out.flush()?)
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
