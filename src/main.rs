//! The `seckill` command line: `serve`, `writer`, `migrate`, `token`, `reconcile`,
//! `recover`, `provider`.

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use seckill::auth::mint_token;
use seckill::configuration::Settings;
use seckill::domain::ActivityId;
use seckill::domain::UserId;
use seckill::gate::KeySpace;
use seckill::startup::{Application, Resources};
use seckill::store::entity::activity;
use seckill::{recovery, store, telemetry};

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
    /// Compare Redis with MySQL and print every discrepancy; exit status 1 if any is found.
    Reconcile {
        /// Only this activity (default: every activity in MySQL).
        #[arg(long)]
        activity: Option<String>,
        /// Rebuild the Redis state of each activity found drifting from MySQL.
        #[arg(long)]
        repair: bool,
    },
    /// Rebuild an activity's Redis state from MySQL (after Redis lost its data).
    Recover {
        #[arg(long)]
        activity: String,
    },
    /// A payment provider for local runs, tests and load tests, hostile on request.
    Provider(seckill::provider::ProviderArgs),
    /// Print, as JSON, the Redis keys of an activity and the fields of its stream entries
    /// and dead letters (for tools that read Redis directly).
    Keys {
        #[arg(long)]
        activity: String,
        /// The key prefix (default: redis.key_prefix).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Print a gate script as Redis runs it (for tools that load it themselves).
    Script {
        /// The script's name: its file in lua/ without `.lua`.
        name: String,
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
            // The writer bounds its drain; this bounds a batch stuck on a silent MySQL (its
            // entries stay pending and are reclaimed by the next writer).
            let budget = Duration::from_secs(resources.settings.server.shutdown_timeout_secs);
            if tokio::time::timeout(budget, writer).await.is_err() {
                tracing::warn!("writer did not stop in time; its uncommitted entries stay pending");
            }
            Ok(())
        }
        Command::Migrate => {
            store::migrate(&settings.database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Reconcile { activity, repair } => {
            let resources = Resources::connect(settings).await?;
            let drift = reconcile_command(&resources, activity.as_deref(), repair).await?;
            std::process::exit(if drift { 1 } else { 0 });
        }
        Command::Recover { activity } => {
            let resources = Resources::connect(settings).await?;
            let report =
                recovery::rebuild(&resources.gate, &resources.db, parse_activity(&activity)?)
                    .await?;
            println!(
                "activity {}: {} buyers and {} idempotency records restored, {} orders still in the stream, {} units remaining",
                report.activity,
                report.restored.buyers,
                report.restored.idempotency_records,
                report.in_stream,
                report.remaining
            );
            Ok(())
        }
        Command::Provider(args) => {
            let url = url::Url::parse(&settings.payment.provider_url)
                .map_err(|e| anyhow::anyhow!("payment.provider_url: {e}"))?;
            let host = args
                .host
                .clone()
                .or_else(|| url.host_str().map(str::to_owned))
                .unwrap_or_else(|| "127.0.0.1".into());
            let port = args.port.or(url.port_or_known_default()).unwrap_or(8081);
            let secret = args
                .webhook_secret
                .clone()
                .unwrap_or_else(|| settings.payment.webhook_secret.clone());
            seckill::provider::run(args, secret, &host, port).await
        }
        Command::Keys { activity, prefix } => {
            let keys = KeySpace::new(prefix.unwrap_or_else(|| settings.redis.key_prefix.clone()));
            let layout = seckill::gate::layout::describe(&keys, parse_activity(&activity)?);
            println!("{layout}");
            Ok(())
        }
        Command::Script { name } => {
            let src = seckill::gate::script_source(&name).ok_or_else(|| {
                let known: Vec<&str> = seckill::gate::script_names().collect();
                anyhow::anyhow!("no script {name:?}; known: {}", known.join(", "))
            })?;
            print!("{src}");
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

fn parse_activity(s: &str) -> anyhow::Result<ActivityId> {
    ActivityId::parse(s).ok_or_else(|| anyhow::anyhow!("--activity must be a decimal activity id"))
}

/// Prints each activity's discrepancies (and repairs them with `repair`); `true` if any
/// activity drifted, repaired or not.
async fn reconcile_command(
    resources: &Resources,
    only: Option<&str>,
    repair: bool,
) -> anyhow::Result<bool> {
    use sea_orm::{EntityTrait, QuerySelect};
    let ids: Vec<ActivityId> = match only {
        Some(s) => vec![parse_activity(s)?],
        None => activity::Entity::find()
            .select_only()
            .column(activity::Column::Id)
            .into_tuple::<u64>()
            .all(&resources.db)
            .await?
            .into_iter()
            .map(ActivityId::new)
            .collect(),
    };
    let mut drift = false;
    for id in ids {
        // One broken activity (a row MySQL cannot even decode, say) must not hide the state
        // of the others: report it, count it as drift, go on.
        let found = match recovery::reconcile(&resources.gate, &resources.db, id).await {
            Ok(found) => found,
            Err(e) => {
                println!("activity {id}: cannot be checked: {e}");
                drift = true;
                continue;
            }
        };
        if found.is_empty() {
            println!("activity {id}: consistent");
            continue;
        }
        drift = true;
        for d in &found {
            println!("activity {id}: {d}");
        }
        if repair {
            let report = match recovery::rebuild(&resources.gate, &resources.db, id).await {
                Ok(report) => report,
                Err(e) => {
                    println!("activity {id}: repair failed: {e}");
                    continue;
                }
            };
            println!(
                "activity {id}: repaired: {} buyers, {} idempotency records, {} units remaining",
                report.restored.buyers, report.restored.idempotency_records, report.remaining
            );
            match recovery::reconcile(&resources.gate, &resources.db, id).await {
                Ok(still) => still
                    .iter()
                    .for_each(|d| println!("activity {id}: still: {d}")),
                Err(e) => println!("activity {id}: cannot be checked after the repair: {e}"),
            }
        }
    }
    Ok(drift)
}
