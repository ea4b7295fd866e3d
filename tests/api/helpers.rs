//! A test application: the real service on a random port, with its own MySQL database and
//! its own Redis key prefix, so tests run in parallel against the shared servers.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use seckill::redis_conn::{RedisClient, RedisConn};
use serde_json::{json, Value};

use seckill::auth::mint_token;
use seckill::configuration::Settings;
use seckill::domain::{ActivityId, UserId};
use seckill::gate::{ActivityKeys, KeySpace};
use seckill::startup::Application;
use seckill::store::entity::{activity, order, payment};

use crate::test_data::TestData;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const JWT_SECRET: &str = "test-jwt-secret";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub db: DatabaseConnection,
    pub redis: RedisConn,
    pub prefix: String,
    /// The application built by [`spawn_app_with`], stopped first when the test ends.
    running: Option<RunningApp>,
    /// Dropped after the application stopped: the database and keys go when the test passes.
    pub data: TestData,
}

/// An application running on a runtime (and thread) of its own, so that the test's end can
/// stop it and wait for it even from `Drop`, and nothing it runs recreates a key after the
/// clean-up.
struct RunningApp {
    handle: actix_web::dev::ServerHandle,
    /// `Mutex`: a `Receiver` is not `Sync`, and tests share the app across tasks.
    stopped: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        if std::thread::panicking() {
            return;
        }
        let stop = running.handle.stop(false);
        let stopping = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(stop)
        });
        let _ = stopping.join();
        // The writer's drain and the lease release follow the server's stop; a writer stuck
        // on a server a test broke is not waited for (its data is then left for the
        // hourly clean-up).
        let stopped = running.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if stopped.recv_timeout(Duration::from_secs(10)).is_err() {
            eprintln!("test app of {} did not stop in 10 s", self.prefix);
        }
    }
}

/// Settings of a fresh test: the environment's servers, a new database and key prefix.
pub fn test_settings() -> Settings {
    let mut s = Settings::load().expect("settings");
    // `<unix seconds>_<random>`: scripts/clean-test-data.sh drops only what is over an hour
    // old, so a run never wipes the data of another run going on at the same time.
    let id = format!(
        "{}_{}",
        chrono::Utc::now().timestamp(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut url = url::Url::parse(&s.database.url).expect("database url");
    url.set_path(&format!("/seckill_test_{id}"));
    s.database.url = url.to_string();
    s.database.max_connections = 8;
    s.redis.key_prefix = format!("test_{id}");
    s.server.host = "127.0.0.1".into();
    s.server.port = 0;
    s.server.workers = 2;
    s.auth.jwt_secret = JWT_SECRET.into();
    s.admin.token = ADMIN_TOKEN.into();
    s.writer.block_ms = 10;
    // Many buyers from one address, users reused across requests: the limits have tests of
    // their own (rate_limit.rs) that turn them on.
    s.rate_limit.per_user_per_sec = 0;
    s.rate_limit.per_address_per_sec = 0;
    // A test of an unreachable server must not wait the production 30 s.
    s.server.connect_wait_secs = 2;
    s.payment.webhook_secret = WEBHOOK_SECRET.into();
    // No provider unless a test starts one (and points this at it): nothing listens on the
    // discard port, so charges fail fast and are retried, like a provider that is down.
    s.payment.provider_url = "http://127.0.0.1:9".into();
    s.payment.retry_max_ms = 1000;
    // Expiry within a second of a deadline, a lease that a paused test sweeper outlives soon.
    s.sweeper.interval_ms = 200;
    s.sweeper.lease_ms = 2000;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        // `TEST_LOG=1 RUST_LOG=warn cargo test …`: the service's logs on the test's output.
        seckill::telemetry::init_tracing();
    }
    let mut settings = test_settings();
    adjust(&mut settings);
    let (built, started) = tokio::sync::oneshot::channel();
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    let app_settings = settings.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            match Application::build(app_settings).await {
                Ok(app) => {
                    let _ = built.send(Ok((app.port(), app.server_handle())));
                    let _ = app.run_until_stopped().await;
                }
                Err(e) => {
                    let _ = built.send(Err(format!("{e:#}")));
                }
            }
        });
        let _ = stopped_tx.send(());
    });
    let (port, handle) = started.await.expect("app thread").expect("build app");
    let address = format!("http://127.0.0.1:{port}");
    let mut app = TestApp::attach(settings, address).await;
    app.running = Some(RunningApp {
        handle,
        stopped: std::sync::Mutex::new(stopped),
    });
    app
}

impl TestApp {
    /// The test's own clients (HTTP, MySQL, Redis) for a service already listening at
    /// `address` with `settings`: one built in this process, or a `seckill` child process.
    pub async fn attach(settings: Settings, address: String) -> TestApp {
        let db = seckill::store::connect(&settings.database)
            .await
            .expect("db");
        let redis = RedisClient::open(&settings.redis)
            .expect("redis settings")
            .shared()
            .await
            .expect("redis");
        TestApp {
            running: None,
            data: TestData::of(&settings),
            address,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            prefix: settings.redis.key_prefix.clone(),
            settings,
            db,
            redis,
        }
    }
}

/// RFC 3339 time `secs` from now.
pub fn at(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

pub fn token(user: u64) -> String {
    mint_token(JWT_SECRET, UserId::new(user), 600).unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn admin_post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/admin/activities"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates an activity open now for an hour; returns its id.
    pub async fn create_activity(&self, stock: i64, per_user_limit: i64) -> u64 {
        self.create_activity_at(stock, per_user_limit, at(-60), at(3600))
            .await
    }

    pub async fn create_activity_at(
        &self,
        stock: i64,
        per_user_limit: i64,
        starts_at: String,
        ends_at: String,
    ) -> u64 {
        let resp = self
            .admin_post(&json!({
                "name": "test sale",
                "stock": stock,
                "per_user_limit": per_user_limit,
                "starts_at": starts_at,
                "ends_at": ends_at,
            }))
            .await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        body["activity_id"].as_str().unwrap().parse().unwrap()
    }

    /// POST purchase as `user` with `key` and an optional raw body.
    pub async fn purchase(
        &self,
        activity: u64,
        user: u64,
        key: &str,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(&format!("/api/v1/activities/{activity}/purchase")))
            .bearer_auth(token(user))
            .header("Idempotency-Key", key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        req.send().await.unwrap()
    }

    /// `PUT …/stock` with `body` (a JSON value: `{"stock": n}`, or a malformed one).
    pub async fn put_stock(&self, activity: u64, body: Value) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/api/v1/admin/activities/{activity}/stock")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_stats(&self, activity: u64) -> Value {
        self.admin_get(&format!("/api/v1/admin/activities/{activity}"))
            .await
    }

    /// `GET path` with the admin token, as JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET path` as buyer `user`.
    pub async fn get_as(&self, user: u64, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus page (the registry is the process's, shared by every test app).
    pub async fn metrics(&self) -> String {
        let resp = self.client.get(self.url("/metrics")).send().await.unwrap();
        resp.text().await.unwrap()
    }

    /// Waits until the writer has committed every accepted order of the activity.
    pub async fn wait_drained(&self, activity: u64) -> Value {
        for _ in 0..300 {
            let s = self.admin_stats(activity).await;
            if s["pending"] == 0 && s["accepted"] == s["persisted"] {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("writer did not drain: {}", self.admin_stats(activity).await);
    }

    pub async fn orders(&self, activity: u64) -> Vec<order::Model> {
        order::Entity::find()
            .filter(order::Column::ActivityId.eq(activity))
            .order_by_asc(order::Column::Id)
            .all(&self.db)
            .await
            .unwrap()
    }

    pub async fn activity_row(&self, activity: u64) -> activity::Model {
        activity::Entity::find_by_id(activity)
            .one(&self.db)
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn remaining(&self, activity: u64) -> i64 {
        self.redis
            .clone()
            .get(self.keys(activity).stock)
            .await
            .unwrap()
    }

    /// The Redis keys of one activity under this test's prefix.
    pub fn keys(&self, activity: u64) -> ActivityKeys {
        KeySpace::new(self.prefix.clone()).activity(ActivityId::new(activity))
    }

    /// Runs the `seckill` binary (`reconcile`, `recover`…) against this test's database and
    /// key prefix; returns its exit code and standard output.
    pub fn seckill(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_seckill"))
            .args(args)
            .env("SECKILL__DATABASE__URL", &self.settings.database.url)
            .env("SECKILL__REDIS__URL", &self.settings.redis.url)
            .env(
                "SECKILL__REDIS__CLUSTER_NODES",
                self.settings.redis.cluster_nodes.join(","),
            )
            .env("SECKILL__REDIS__KEY_PREFIX", &self.prefix)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Everything this test's prefix holds in Redis, plus every row of both tables: two
    /// calls compare equal when nothing changed.
    pub async fn state(&self) -> (BTreeMap<String, String>, Vec<String>) {
        let mut conn = self.redis.clone();
        let keys: Vec<String> = conn.keys(format!("{}:*", self.prefix)).await.unwrap();
        let mut redis_state = BTreeMap::new();
        // The sweeper's lock is housekeeping of the running process (taken and renewed
        // every round), not state a request changes.
        for key in keys.into_iter().filter(|k| !k.contains(":{sweeper}:")) {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let value = match kind.as_str() {
                "string" => conn.get::<_, String>(&key).await.unwrap(),
                "hash" => format!(
                    "{:?}",
                    conn.hgetall::<_, BTreeMap<String, String>>(&key)
                        .await
                        .unwrap()
                ),
                "set" => format!(
                    "{:?}",
                    conn.smembers::<_, std::collections::BTreeSet<String>>(&key)
                        .await
                        .unwrap()
                ),
                "stream" => format!("len {}", conn.xlen::<_, u64>(&key).await.unwrap()),
                other => other.to_owned(),
            };
            redis_state.insert(key, value);
        }
        let mut rows: Vec<String> = activity::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .map(|a| format!("{} {} {} {}", a.id, a.total_stock, a.sold, a.version))
            .collect();
        rows.extend(
            order::Entity::find()
                .all(&self.db)
                .await
                .unwrap()
                .into_iter()
                .map(|o| {
                    format!(
                        "{} {} {} {} v{} {:?}",
                        o.id, o.user_id, o.quantity, o.status, o.version, o.stock_returned_at
                    )
                }),
        );
        rows.extend(
            payment::Entity::find()
                .all(&self.db)
                .await
                .unwrap()
                .into_iter()
                .map(|p| {
                    format!(
                        "payment {} {} {} {:?} v{}",
                        p.id, p.order_id, p.status, p.provider_txn_id, p.version
                    )
                }),
        );
        (redis_state, rows)
    }
}

/// Status, `code` and the whole body of a problem response.
pub async fn problem(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(ct, "application/problem+json", "status {status}: {body}");
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body,
    )
}

/// The value of one series (name with its labels, as Prometheus writes it) in a metrics
/// page; 0 when absent (a counter not yet incremented).
pub fn metric_value(metrics: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
