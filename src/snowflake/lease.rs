//! The lease that makes a snowflake instance id belong to one live process.
//!
//! `<prefix>:instance:<id>` holds the holder's identity with a short TTL ([`LEASE_TTL`]),
//! renewed every [`RENEW_EVERY`] by a compare-and-expire script (only while the value is
//! still ours). Two rules keep "two live processes never share an instance id" true while a
//! restart stays fast:
//!
//! - **Fencing.** The generator issues ids only while the lease is *confirmed*: until the
//!   time the last successful renewal was sent plus the TTL, minus a margin for clock rates
//!   ([`LeaseFence`]). A process that cannot renew (Redis unreachable, the process paused)
//!   stops issuing ids before its key can expire and be taken by another process. A process
//!   that finds its key taken by someone else stops for good and says so.
//! - **Proof of death.** A process restarted after a crash finds its predecessor's lease
//!   still there. Waiting out the TTL would delay every restart; instead, when the holder
//!   ran on the same kernel boot and in the same PID namespace, its PID is looked up in
//!   `/proc`: if no process with that PID and that start time exists, the holder is dead and
//!   its lease is taken over at once (a compare-and-delete, so a lease renewed meanwhile is
//!   never stolen). A holder elsewhere (another host or container) cannot be checked: the
//!   restart waits for its TTL, at most [`LEASE_TTL`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::redis_conn::RedisConn;
use redis::AsyncCommands;
use tokio::time::Instant;

/// How long a lease outlives its last renewal (a killed process's id is free after this,
/// or at once when its death can be proven).
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// How often the lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// Ids stop this long before the lease could expire in Redis (clock rates differ a little
/// between hosts; a renewal reply may arrive late).
const FENCE_MARGIN: Duration = Duration::from_secs(1);

/// Another live process holds the lease on this instance id.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "snowflake instance id {0} is already held by another live process ({1}); give each \
         process its own ids.instance_id (SECKILL__IDS__INSTANCE_ID)"
    )]
    Taken(u16, String),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Whether the lease is confirmed now: shared by the lease's renewal task (writer) and the
/// id generator (reader).
#[derive(Clone)]
pub struct LeaseFence {
    /// Milliseconds since `origin` until which ids may be issued; 0: not confirmed.
    valid_until_ms: Arc<AtomicU64>,
    origin: Instant,
}

impl LeaseFence {
    fn new() -> Self {
        Self {
            valid_until_ms: Arc::new(AtomicU64::new(0)),
            origin: Instant::now(),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// A renewal sent at `sent` succeeded: the lease lasts until `sent + LEASE_TTL` in Redis.
    fn confirm(&self, sent: Instant) {
        let until = self.ms(sent + LEASE_TTL - FENCE_MARGIN);
        self.valid_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    /// The lease is lost for good.
    fn revoke(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
    }

    /// Whether ids may be issued now.
    pub fn is_valid(&self) -> bool {
        self.ms(Instant::now()) < self.valid_until_ms.load(Ordering::Acquire)
    }
}

/// Who holds a lease: enough to tell, on the same machine, whether that process still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    /// Kernel boot id and PID namespace: PIDs mean the same only when both match.
    boot: String,
    pid_ns: String,
    pid: u32,
    /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat`, field 22):
    /// tells a reused PID from the holder.
    start: u64,
    host: String,
    /// Unique per lease taken (a process holding two leases in tests tells them apart).
    nonce: String,
}

impl Holder {
    fn this_process() -> Self {
        let pid = std::process::id();
        Self {
            boot: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pid,
            start: process_start(pid).unwrap_or(0),
            host: std::env::var("HOSTNAME")
                .ok()
                .or_else(|| read_trimmed("/etc/hostname"))
                .unwrap_or_else(|| "localhost".into()),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// `pid=<pid> start=<ticks> host=<name> boot=<id> pidns=<ns> nonce=<uuid>`: readable
    /// by an operator in `redis-cli GET`, parsed back by [`Holder::parse`].
    fn encode(&self) -> String {
        format!(
            "pid={} start={} host={} boot={} pidns={} nonce={}",
            self.pid, self.start, self.host, self.boot, self.pid_ns, self.nonce
        )
    }

    fn parse(s: &str) -> Option<Self> {
        let field = |name: &str| {
            s.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some(Self {
            pid: field("pid")?.parse().ok()?,
            start: field("start")?.parse().ok()?,
            host: field("host")?,
            boot: field("boot")?,
            pid_ns: field("pidns")?,
            nonce: field("nonce")?,
        })
    }

    /// Whether `self` still runs, as seen by `me`: `Some` only when that can be told, on
    /// the same boot and in the same PID namespace (PIDs comparable), by looking for a
    /// process with its PID and start time; `None` for a holder elsewhere.
    fn runs(&self, me: &Holder) -> Option<bool> {
        let comparable = !me.boot.is_empty()
            && !me.pid_ns.is_empty()
            && self.boot == me.boot
            && self.pid_ns == me.pid_ns;
        comparable.then(|| process_start(self.pid) == Some(self.start))
    }

    fn is_provably_dead(&self, me: &Holder) -> bool {
        self.runs(me) == Some(false)
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && !s.contains(' '))
}

/// Start time of a running process (`/proc/<pid>/stat` field 22), `None` if none runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count fields
    // after its closing parenthesis, which is field 3.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Compare-and-expire: renews only a lease that is still ours.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/// Compare-and-delete: removes only the lease we read (a dead holder's, or our own).
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) end return 0";

/// A lease on an instance id, renewed in the background until released or dropped.
pub struct InstanceLease {
    task: tokio::task::JoinHandle<()>,
    conn: RedisConn,
    key: String,
    holder: String,
    fence: LeaseFence,
}

impl InstanceLease {
    /// Takes the lease: at once if it is free or its holder provably dead, after the
    /// holder's TTL if the holder cannot be checked; fails if a live process holds it.
    pub async fn acquire(
        mut conn: RedisConn,
        key: String,
        instance: u16,
    ) -> Result<Self, LeaseError> {
        let me = Holder::this_process();
        let holder = me.encode();
        let ttl_ms = LEASE_TTL.as_millis() as u64;
        let opts = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(ttl_ms));
        let fence = LeaseFence::new();
        // A holder that is neither us nor provably dead may be a crashed process on
        // another host: its lease expires within the TTL (plus a little for clock rates).
        let deadline = Instant::now() + LEASE_TTL + Duration::from_millis(500);
        loop {
            let sent = Instant::now();
            let taken: Option<String> = conn.set_options(&key, &holder, opts.clone()).await?;
            if taken.is_some() {
                fence.confirm(sent);
                break;
            }
            let Some(other) = conn.get::<_, Option<String>>(&key).await? else {
                continue; // expired between the two commands
            };
            let holder = Holder::parse(&other);
            // A live process on this machine holds it: waiting for its lease cannot help.
            if holder.as_ref().and_then(|h| h.runs(&me)) == Some(true) {
                return Err(LeaseError::Taken(instance, other));
            }
            if holder.is_some_and(|h| h.is_provably_dead(&me)) {
                let removed: i64 = redis::Script::new(RELEASE)
                    .key(&key)
                    .arg(&other)
                    .invoke_async(&mut conn)
                    .await?;
                tracing::info!(%key, holder = %other, removed, "instance id lease of a dead process taken over");
                continue;
            }
            if Instant::now() >= deadline {
                return Err(LeaseError::Taken(instance, other));
            }
            tracing::warn!(%key, holder = %other, "instance id lease held; waiting for it to expire");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let task = tokio::spawn(renew(
            conn.clone(),
            key.clone(),
            holder.clone(),
            opts,
            fence.clone(),
        ));
        Ok(Self {
            task,
            conn,
            key,
            holder,
            fence,
        })
    }

    /// The fence the id generator checks before each id.
    pub fn fence(&self) -> LeaseFence {
        self.fence.clone()
    }

    /// Gives the id back at a graceful stop (only if still ours), so a restart needs no wait.
    pub async fn release(mut self) {
        self.task.abort();
        self.fence.revoke();
        let released: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.holder)
            .invoke_async(&mut self.conn)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release the instance id lease; it expires by itself");
        }
    }
}

/// Renews the lease every [`RENEW_EVERY`] and moves the fence; stops for good when another
/// process holds the key.
async fn renew(
    mut conn: RedisConn,
    key: String,
    holder: String,
    take: redis::SetOptions,
    fence: LeaseFence,
) {
    let script = redis::Script::new(RENEW);
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sent = Instant::now();
        let renewed: redis::RedisResult<i64> = script
            .key(&key)
            .arg(&holder)
            .arg(LEASE_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        match renewed {
            Ok(1) => fence.confirm(sent),
            Ok(_) => {
                // Not ours any more: Redis lost the key (restarted empty), or it expired
                // while we could not renew and another process took it.
                let retaken: redis::RedisResult<Option<String>> =
                    conn.set_options(&key, &holder, take.clone()).await;
                match retaken {
                    Ok(Some(_)) => fence.confirm(sent),
                    Ok(None) => {
                        fence.revoke();
                        let other: Option<String> = conn.get(&key).await.unwrap_or(None);
                        tracing::error!(%key, holder = ?other, "instance id lease taken by another process: this process issues no more ids");
                        return;
                    }
                    Err(e) => tracing::warn!(%key, error = %e, "instance id lease not renewed"),
                }
            }
            Err(e) => tracing::warn!(%key, error = %e, "instance id lease not renewed"),
        }
    }
}

impl Drop for InstanceLease {
    fn drop(&mut self) {
        self.task.abort();
        self.fence.revoke();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_round_trips_and_this_process_is_alive() {
        let me = Holder::this_process();
        assert!(me.start > 0, "/proc/self/stat readable");
        let parsed = Holder::parse(&me.encode()).unwrap();
        assert_eq!(parsed, me);
        assert!(!parsed.is_provably_dead(&me), "this process runs");
        assert_eq!(parsed.runs(&me), Some(true));
    }

    #[test]
    fn a_holder_is_dead_only_when_provably_so() {
        let me = Holder::this_process();
        // Our PID with another start time: the PID was reused, the holder is gone.
        let reused = Holder {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(reused.is_provably_dead(&me));
        // A PID that does not exist (above the kernel's pid_max).
        let gone = Holder {
            pid: 4_194_305,
            ..me.clone()
        };
        assert!(gone.is_provably_dead(&me));
        // Another machine, or another PID namespace: nothing can be proven.
        for other in [
            Holder {
                boot: "another-boot".into(),
                ..gone.clone()
            },
            Holder {
                pid_ns: "pid:[1]".into(),
                ..gone.clone()
            },
        ] {
            assert!(!other.is_provably_dead(&me));
            assert_eq!(other.runs(&me), None, "cannot be told");
        }
        assert!(
            Holder::parse("pid 12 on host (abc)").is_none(),
            "old format"
        );
    }

    #[tokio::test]
    async fn the_fence_holds_for_the_ttl_minus_the_margin() {
        let fence = LeaseFence::new();
        assert!(!fence.is_valid(), "not confirmed yet");
        fence.confirm(Instant::now());
        assert!(fence.is_valid());
        fence.confirm(Instant::now() - LEASE_TTL);
        assert!(fence.is_valid(), "an older renewal never shortens it");
        fence.revoke();
        assert!(!fence.is_valid());
        let stale = LeaseFence::new();
        stale.confirm(Instant::now() - (LEASE_TTL - FENCE_MARGIN));
        assert!(
            !stale.is_valid(),
            "a renewal a TTL ago no longer covers ids"
        );
    }
}
