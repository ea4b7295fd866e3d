//! Typed settings, layered with the `config` crate.
//!
//! Layers, later ones win: built-in defaults (`config/default.toml`, compiled in) → the
//! `config/default.toml` of the working directory (if present: an edited copy) → the file named by `SECKILL_CONFIG` (optional) → environment
//! variables `SECKILL__SECTION__KEY` (double underscore between the parts, e.g.
//! `SECKILL__REDIS__KEY_PREFIX`).
//!
//! The built-in defaults are the spec's table, so the service runs on a developer machine
//! with no file at all; they are written in one place, `config/default.toml`. The shipped secrets are for development only: [`Settings::check`]
//! refuses them on any address other than loopback.

use std::net::IpAddr;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// JWT secret shipped for local development. Refused on non-loopback addresses.
pub const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-change-me";
/// Admin token shipped for local development. Refused on non-loopback addresses.
pub const DEV_ADMIN_TOKEN: &str = "dev-only-admin-token-change-me";
/// Webhook secret shipped for local development. Refused on non-loopback addresses.
pub const DEV_WEBHOOK_SECRET: &str = "dev-only-webhook-secret-change-me";

/// All settings of one process.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub admin: AdminSettings,
    pub writer: WriterSettings,
    pub idempotency: IdempotencySettings,
    pub ids: IdSettings,
    pub rate_limit: RateLimitSettings,
    pub payment: PaymentSettings,
    pub sweeper: SweeperSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// actix worker threads; 0 means one per core.
    pub workers: usize,
    /// Seconds a graceful shutdown may take before in-flight work is dropped.
    pub shutdown_timeout_secs: u64,
    /// A request body must arrive within this long once the handler starts reading it
    /// (ms); a slower one is answered `408` and its connection closed. (Slow headers are
    /// cut by actix after 5 s.)
    pub body_timeout_ms: u64,
    /// How long a starting process retries its first connections to Redis and MySQL.
    pub connect_wait_secs: u64,
}

/// The longest a purchase may wait for its replicas: a buyer's client gives up long before.
pub const MAX_REPLICA_ACK_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each); when any is set, every
    /// part talks to the cluster and `url` is ignored. A TOML list, or one string with
    /// commas (as the environment gives it:
    /// `SECKILL__REDIS__CLUSTER_NODES=redis://127.0.0.1:7101,redis://127.0.0.1:7102`).
    #[serde(deserialize_with = "comma_list")]
    pub cluster_nodes: Vec<String>,
    /// Every key the service writes starts with this prefix.
    pub key_prefix: String,
    /// Replicas that must have an accepted purchase before it is answered `201` (`WAIT`);
    /// 0: answer as soon as the master has it (Redis replicates asynchronously, so a
    /// failover may lose it).
    pub replica_acks: u32,
    /// How long a purchase waits for those replicas; past it the buyer gets `503` and a
    /// retry with the same key gets the true answer.
    pub replica_ack_timeout_ms: u64,
}

impl RedisSettings {
    /// Where the service's Redis is, as it may be logged (no password).
    pub fn shown(&self) -> String {
        if self.cluster_nodes.is_empty() {
            without_password(&self.url)
        } else {
            let nodes: Vec<String> = self
                .cluster_nodes
                .iter()
                .map(|u| without_password(u))
                .collect();
            format!("cluster {}", nodes.join(","))
        }
    }
}

/// A URL with its password, if any, replaced by `***`.
/// `url` with its password (if any) replaced by `***`, for logs.
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A list given either as a list or as one comma-separated string (empty parts dropped).
fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `mysql://user:pass@host:port/database`; the database is created if missing.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: String,
    /// Accept `X-User-Id` from a gateway that already authenticated the user.
    pub trust_user_header: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdminSettings {
    pub token: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WriterSettings {
    /// Run the order writer inside `seckill serve`.
    pub enabled: bool,
    /// Most stream entries persisted in one MySQL transaction.
    pub batch_size: usize,
    /// Longest a read waits for entries before the writer flushes what it has (ms).
    pub block_ms: u64,
    /// Batches being committed while the next one is read (batches of one activity still
    /// commit one after the other: they lock the activity row).
    pub max_in_flight: usize,
    /// Entries pending on another consumer for this long are reclaimed (ms), whether or
    /// not that consumer looks alive (the last resort).
    pub claim_idle_ms: u64,
    /// How often a writer renews its heartbeat (ms); the heartbeat lives three times as
    /// long. Entries of a consumer whose heartbeat is gone are claimed within about that
    /// TTL plus a second, instead of after `claim_idle_ms`.
    pub heartbeat_ms: u64,
    /// First retry delay after a failed batch (ms); doubles up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// Entries an activity's stream may hold (accepted, not yet committed) before the gate
    /// answers `503` instead of accepting more; 0 disables the bound.
    pub max_backlog: u64,
    /// Failed attempts (other than "MySQL unreachable") after which an entry is moved to the
    /// dead-letter stream.
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencySettings {
    /// How long an accepted answer is replayed for the same key.
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdSettings {
    /// Snowflake instance id (0–1023). Must differ between processes that share a
    /// database: each process holds a lease on its id in Redis and refuses to start when
    /// another live process holds the same one.
    pub instance_id: u16,
}

/// Purchase rate limits, checked before Redis is touched (`429 rate_limited`). A limit
/// with `*_per_sec = 0` is off.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Purchases per second one user may sustain, and the burst above it.
    pub per_user_per_sec: u32,
    pub per_user_burst: u32,
    /// Purchases per second from one client address, and the burst above it.
    pub per_address_per_sec: u32,
    pub per_address_burst: u32,
    /// Behind a gateway: the header holding the client's address (e.g. `X-Forwarded-For`
    /// or `X-Real-IP`); its last entry, the one the gateway added, is used. Empty: the TCP
    /// peer's address. Only set it when every request comes through that gateway: a client
    /// could otherwise choose its own address.
    pub address_header: String,
}

/// The payment provider, its callbacks, and the life of a payment.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// Base URL of the provider (`POST {provider_url}/charges`).
    pub provider_url: String,
    /// Where the provider sends its signed callbacks; empty means the service's own address
    /// (see [`Settings::callback_url`]).
    pub callback_url: String,
    /// HMAC-SHA256 key of the `Seckill-Signature` header on callbacks.
    pub webhook_secret: String,
    /// An order whose payment is `processing` is not expired before this many seconds after
    /// the payment started (nor before its deadline).
    pub processing_grace_secs: u64,
    /// Longest life of a payment token (never past the order's payment deadline).
    pub token_ttl_secs: u64,
    /// Timeout of one charge request to the provider (ms).
    pub provider_timeout_ms: u64,
    /// Longest pause between two charge attempts (ms); the pause doubles from 100 ms.
    pub retry_max_ms: u64,
}

/// The sweeper: expiry of unpaid orders and repair of interrupted stock returns, by one
/// process at a time (a Redis lock with a lease and a fencing token).
#[derive(Debug, Clone, Deserialize)]
pub struct SweeperSettings {
    /// Run a sweeper in `seckill serve` (every process may: one acts at a time).
    pub enabled: bool,
    /// Pause between two rounds (ms).
    pub interval_ms: u64,
    /// Lease of the sweeper lock (ms): renewed every round; a sweeper paused past it has
    /// lost the lock, and MySQL refuses its writes (the fencing token).
    pub lease_ms: u64,
    /// Most orders handled per round.
    pub batch_size: u64,
}

/// Settings could not be loaded or are unsafe to use.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the layered configuration described in the module docs.
    pub fn load() -> Result<Self, SettingsError> {
        let mut builder = defaults(Config::builder())
            .add_source(File::with_name("config/default").required(false));
        if let Ok(path) = std::env::var("SECKILL_CONFIG") {
            builder = builder.add_source(File::with_name(&path).required(true));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("SECKILL")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        Ok(settings)
    }

    /// Rejects settings that must never reach production: development secrets on a
    /// non-loopback address, an instance id outside the snowflake's 10 bits, empty prefix.
    /// Returns the warnings to log for development secrets on loopback.
    pub fn check(&self) -> Result<Vec<String>, SettingsError> {
        let mut warnings = Vec::new();
        if self.ids.instance_id > 1023 {
            return Err(SettingsError::Invalid(format!(
                "ids.instance_id must be 0..=1023, got {}",
                self.ids.instance_id
            )));
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}']) {
            return Err(SettingsError::Invalid(
                "redis.key_prefix must be non-empty and must not contain braces".into(),
            ));
        }
        // An empty secret signs tokens anyone can forge (HMAC over an empty key), and an
        // empty admin token would be no password at all.
        for (key, value) in [
            ("auth.jwt_secret", &self.auth.jwt_secret),
            ("admin.token", &self.admin.token),
            ("payment.webhook_secret", &self.payment.webhook_secret),
        ] {
            if value.trim().is_empty() {
                return Err(SettingsError::Invalid(format!("{key} must not be empty")));
            }
            if value.len() < 32
                && ![DEV_JWT_SECRET, DEV_ADMIN_TOKEN, DEV_WEBHOOK_SECRET].contains(&value.as_str())
            {
                warnings.push(format!(
                    "{key} is {} bytes long; use at least 32 random bytes",
                    value.len()
                ));
            }
        }
        let dev_secrets: Vec<&str> = [
            (self.auth.jwt_secret == DEV_JWT_SECRET).then_some("auth.jwt_secret"),
            (self.admin.token == DEV_ADMIN_TOKEN).then_some("admin.token"),
            (self.payment.webhook_secret == DEV_WEBHOOK_SECRET).then_some("payment.webhook_secret"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !dev_secrets.is_empty() {
            if !is_loopback(&self.server.host) {
                return Err(SettingsError::Invalid(format!(
                    "refusing to listen on {} with the shipped development value of {}; \
                     set SECKILL__AUTH__JWT_SECRET / SECKILL__ADMIN__TOKEN / \
                     SECKILL__PAYMENT__WEBHOOK_SECRET",
                    self.server.host,
                    dev_secrets.join(" and ")
                )));
            }
            warnings.push(format!(
                "using the shipped development value of {} (loopback only)",
                dev_secrets.join(" and ")
            ));
        }
        // Redis refuses `SET … EX 0`: every accept would fail half-way.
        if self.idempotency.ttl_secs == 0 {
            return Err(SettingsError::Invalid(
                "idempotency.ttl_secs must be at least 1".into(),
            ));
        }
        // `WAIT n 0` blocks until n replicas answer, however long: a purchase would hang.
        let ack_timeout = self.redis.replica_ack_timeout_ms;
        if self.redis.replica_acks > 0 && !(1..=MAX_REPLICA_ACK_TIMEOUT_MS).contains(&ack_timeout) {
            return Err(SettingsError::Invalid(format!(
                "redis.replica_ack_timeout_ms must be 1..={MAX_REPLICA_ACK_TIMEOUT_MS} when \
                 redis.replica_acks is set, got {ack_timeout}"
            )));
        }
        if self.sweeper.interval_ms == 0 || self.sweeper.lease_ms <= self.sweeper.interval_ms {
            return Err(SettingsError::Invalid(format!(
                "sweeper.lease_ms ({}) must exceed sweeper.interval_ms ({}), which must not be 0",
                self.sweeper.lease_ms, self.sweeper.interval_ms
            )));
        }
        Ok(warnings)
    }

    /// Where the provider sends callbacks: `payment.callback_url`, or the service's own
    /// address (with the port it really listens on: `server.port = 0` picks one) when that
    /// is empty.
    pub fn callback_url(&self, listening_port: u16) -> String {
        if !self.payment.callback_url.is_empty() {
            return self.payment.callback_url.clone();
        }
        let host = match self.server.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.server.host.clone(),
        };
        // A service listening on every address is reached on loopback by a local provider.
        let host = match host.as_str() {
            "0.0.0.0" => "127.0.0.1".to_owned(),
            "[::]" => "[::1]".to_owned(),
            _ => host,
        };
        format!("http://{host}:{listening_port}/api/v1/payments/callback")
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The built-in defaults: `config/default.toml`, compiled in, so that the file users read and
/// copy is the one place where a default is written down.
const DEFAULTS: &str = include_str!("../config/default.toml");

fn defaults(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
) -> config::ConfigBuilder<config::builder::DefaultState> {
    builder.add_source(File::from_str(DEFAULTS, FileFormat::Toml))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Settings {
        defaults(Config::builder())
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn defaults_match_the_spec_table() {
        let s = dev();
        assert_eq!((s.server.host.as_str(), s.server.port), ("127.0.0.1", 8080));
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(s.redis.key_prefix, "seckill");
        assert_eq!(s.database.url, "mysql://root@127.0.0.1:3306/seckill");
        assert!(!s.auth.trust_user_header);
        assert!(s.writer.enabled);
        assert_eq!(s.idempotency.ttl_secs, 86_400);
    }

    #[test]
    fn dev_secrets_are_refused_off_loopback_and_warned_on_it() {
        let mut s = dev();
        assert_eq!(s.check().unwrap().len(), 1);
        s.server.host = "0.0.0.0".into();
        assert!(s.check().is_err());
        s.auth.jwt_secret = "a real secret of 32 bytes or more".into();
        s.admin.token = "a real token of 32 bytes or more!".into();
        assert!(
            s.check().is_err(),
            "the development webhook secret is still set"
        );
        s.payment.webhook_secret = "a real webhook secret of 32 bytes".into();
        assert!(s.check().unwrap().is_empty());
    }

    #[test]
    fn environment_overrides_with_double_underscores() {
        // The only test of this binary that reads the environment.
        std::env::set_var("SECKILL__REDIS__KEY_PREFIX", "shop_1");
        std::env::set_var("SECKILL__SERVER__PORT", "9999");
        std::env::set_var("SECKILL__AUTH__TRUST_USER_HEADER", "true");
        let s = Settings::load().unwrap();
        std::env::remove_var("SECKILL__REDIS__KEY_PREFIX");
        std::env::remove_var("SECKILL__SERVER__PORT");
        std::env::remove_var("SECKILL__AUTH__TRUST_USER_HEADER");
        assert_eq!(s.redis.key_prefix, "shop_1");
        assert_eq!(s.server.port, 9999);
        assert!(s.auth.trust_user_header);
    }

    #[test]
    fn empty_secrets_are_refused_and_short_ones_warned_about() {
        let mut s = dev();
        s.auth.jwt_secret = " ".into();
        assert!(s.check().is_err());
        s.auth.jwt_secret = "short".into();
        s.admin.token = String::new();
        assert!(s.check().is_err());
        s.admin.token = "x".repeat(32);
        let warnings = s.check().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("auth.jwt_secret is 5 bytes")),
            "{warnings:?}"
        );
    }

    #[test]
    fn instance_id_must_fit_ten_bits() {
        let mut s = dev();
        s.ids.instance_id = 1024;
        assert!(s.check().is_err());
    }

    #[test]
    fn idempotency_records_must_live_a_second() {
        let mut s = dev();
        s.idempotency.ttl_secs = 0;
        assert!(s.check().unwrap_err().to_string().contains("ttl_secs"));
    }

    #[test]
    fn replica_ack_timeout_must_bound_the_wait() {
        let mut s = dev();
        s.redis.replica_ack_timeout_ms = 0;
        assert!(s.check().is_ok(), "no confirmations: the timeout is unused");
        s.redis.replica_acks = 1;
        assert!(s.check().unwrap_err().to_string().contains("1..=10000"));
        s.redis.replica_ack_timeout_ms = MAX_REPLICA_ACK_TIMEOUT_MS + 1;
        assert!(s.check().is_err());
        s.redis.replica_ack_timeout_ms = MAX_REPLICA_ACK_TIMEOUT_MS;
        assert!(s.check().is_ok());
    }
}
