//! The sweeper lock: a lease in Redis with a fencing token (`lua/sweeper_lock.lua`).

use super::Gate;

impl Gate {
    /// Takes the sweeper lock for `owner`, or renews it if `owner` holds it, for `lease_ms`;
    /// `Some(fencing token)` while held, `None` when another process holds it.
    pub async fn sweeper_lock(
        &self,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<u64>, redis::RedisError> {
        let (lock, fence) = self.keys.sweeper_lock();
        let reply: Vec<String> = self
            .sweeper_lock
            .key(lock)
            .key(fence)
            .arg(owner)
            .arg(lease_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("acquired" | "renewed"), Some(token)) => token.parse().map(Some).map_err(|_| {
                redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "unexpected sweeper lock reply",
                    format!("{reply:?}"),
                ))
            }),
            (Some("held"), _) => Ok(None),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected sweeper lock reply",
                format!("{reply:?}"),
            ))),
        }
    }
}
