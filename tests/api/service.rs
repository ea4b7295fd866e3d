//! `seckill` as a child process: one deployment (database, key prefix, port) run by the real
//! binary, for the tests that kill, stop or restart it (`crash.rs`, `restart.rs`).
//!
//! Each test has its own database and key prefix (from `helpers::test_settings`) and its own
//! port, and configures the children only through `SECKILL__…` environment variables. The
//! children's logs go to a file in the temporary directory, kept (and named on stderr) when
//! the test fails, removed when it passes.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use redis::streams::{StreamInfoConsumersReply, StreamPendingReply};
use redis::AsyncCommands;
use tokio::process::{Child, Command};

use seckill::configuration::Settings;
use seckill::gate::WRITER_GROUP;

use crate::helpers::{test_settings, TestApp, ADMIN_TOKEN, JWT_SECRET};
use crate::test_data::TestData;

/// A port nobody listens on right now (the child binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One deployment (database, key prefix, port) run as `seckill` child processes, one at a
/// time, on the same port.
pub struct Service {
    pub settings: Settings,
    pub port: u16,
    env: Vec<(&'static str, String)>,
    pub log: ServiceLog,
    /// `RUST_LOG` of the children; `None`: unset (the service's default filter).
    pub rust_log: Option<&'static str>,
    _data: TestData,
}

/// The children's stdout and stderr, appended to one file.
pub struct ServiceLog(pub PathBuf);

impl ServiceLog {
    pub fn tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.0) {
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ServiceLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("service logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Service {
    pub fn new(extra: &[(&'static str, &str)]) -> Self {
        let settings = test_settings();
        let data = TestData::of(&settings);
        let port = free_port();
        let mut env = vec![
            ("SECKILL__DATABASE__URL", settings.database.url.clone()),
            ("SECKILL__DATABASE__MAX_CONNECTIONS", "8".to_owned()),
            ("SECKILL__REDIS__URL", settings.redis.url.clone()),
            (
                "SECKILL__REDIS__CLUSTER_NODES",
                settings.redis.cluster_nodes.join(","),
            ),
            (
                "SECKILL__REDIS__KEY_PREFIX",
                settings.redis.key_prefix.clone(),
            ),
            ("SECKILL__SERVER__HOST", "127.0.0.1".to_owned()),
            ("SECKILL__SERVER__PORT", port.to_string()),
            ("SECKILL__SERVER__WORKERS", "2".to_owned()),
            ("SECKILL__AUTH__JWT_SECRET", JWT_SECRET.to_owned()),
            ("SECKILL__ADMIN__TOKEN", ADMIN_TOKEN.to_owned()),
            ("SECKILL__WRITER__BLOCK_MS", "10".to_owned()),
            ("SECKILL__RATE_LIMIT__PER_USER_PER_SEC", "0".to_owned()),
            ("SECKILL__RATE_LIMIT__PER_ADDRESS_PER_SEC", "0".to_owned()),
            (
                "SECKILL__PAYMENT__WEBHOOK_SECRET",
                settings.payment.webhook_secret.clone(),
            ),
            (
                "SECKILL__PAYMENT__PROVIDER_URL",
                settings.payment.provider_url.clone(),
            ),
            (
                "SECKILL__PAYMENT__RETRY_MAX_MS",
                settings.payment.retry_max_ms.to_string(),
            ),
            (
                "SECKILL__SWEEPER__INTERVAL_MS",
                settings.sweeper.interval_ms.to_string(),
            ),
            (
                "SECKILL__SWEEPER__LEASE_MS",
                settings.sweeper.lease_ms.to_string(),
            ),
        ];
        env.extend(extra.iter().map(|&(k, v)| (k, v.to_owned())));
        let log = ServiceLog(
            std::env::temp_dir().join(format!("seckill-crash-{}.log", settings.redis.key_prefix)),
        );
        Self {
            settings,
            port,
            env,
            log,
            rust_log: Some("info"),
            _data: data,
        }
    }

    /// Sets (or replaces) one environment variable of the children started from now on.
    pub fn set_env(&mut self, name: &'static str, value: &str) {
        self.unset_env(name);
        self.env.push((name, value.to_owned()));
    }

    /// Removes one environment variable of the children started from now on.
    pub fn unset_env(&mut self, name: &str) {
        self.env.retain(|(k, _)| *k != name);
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `seckill <subcommand>` with this deployment's environment and no other `SECKILL…`
    /// variable of ours (the values above already come from it, through `test_settings`).
    pub fn command(&self, subcommand: &str, instance: u16) -> Command {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log.0)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seckill"));
        cmd.arg(subcommand).current_dir(env!("CARGO_MANIFEST_DIR"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SECKILL") {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("SECKILL__IDS__INSTANCE_ID", instance.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        match self.rust_log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        cmd
    }

    /// Starts `seckill serve` with this instance id and waits until it answers `/healthz`.
    pub async fn start(&self, instance: u16) -> Child {
        let mut child = self
            .command("serve", instance)
            .spawn()
            .expect("spawn seckill");
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "seckill serve (instance {instance}) exited at start: {status}\n{}",
                    self.log.tail(30)
                );
            }
            let ok = probe
                .get(format!("{}/healthz", self.address()))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return child;
            }
            assert!(
                Instant::now() < deadline,
                "seckill serve (instance {instance}) not healthy after 20 s\n{}",
                self.log.tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Stream entries delivered to the consumers of process `pid` and not acked.
pub async fn unacked_by(app: &TestApp, activity: u64, pid: u32) -> usize {
    let stream = app.keys(activity).stream;
    let reply: StreamPendingReply = app
        .redis
        .clone()
        .xpending(&stream, WRITER_GROUP)
        .await
        .unwrap();
    let prefix = format!("writer-{pid}-");
    match reply {
        StreamPendingReply::Data(d) => d
            .consumers
            .iter()
            .filter(|c| c.name.starts_with(&prefix))
            .map(|c| c.pending)
            .sum(),
        _ => 0,
    }
}

/// Waits until a consumer of process `pid` has joined the writers' group of the activity.
pub async fn wait_for_consumer(app: &TestApp, activity: u64, pid: u32) {
    let stream = app.keys(activity).stream;
    let prefix = format!("writer-{pid}-");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply: StreamInfoConsumersReply = app
            .redis
            .clone()
            .xinfo_consumers(&stream, WRITER_GROUP)
            .await
            .unwrap();
        if reply.consumers.iter().any(|c| c.name.starts_with(&prefix)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the writer of pid {pid} never read the activity's stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
