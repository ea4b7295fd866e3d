//! The sweeper lock: a lease in Redis with a fencing token (`lua/sweeper_lock.lua`), and its
//! release by its holder (`lua/sweeper_unlock.lua`).

use super::Gate;

fn unexpected(reply: &[String]) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected sweeper lock reply",
        format!("{reply:?}"),
    ))
}

impl Gate {
    /// Takes the sweeper lock for `owner`, or renews it if `owner` holds it, for `lease_ms`;
    /// `Some(fencing token)` while held, `None` when another process holds it. A newly
    /// taken token is above `floor` (the highest token MySQL has seen), even if Redis lost
    /// its counter.
    pub async fn sweeper_lock(
        &self,
        owner: &str,
        lease_ms: u64,
        floor: u64,
    ) -> Result<Option<u64>, redis::RedisError> {
        let (lock, fence) = self.keys.sweeper_lock();
        let reply: Vec<String> = self
            .sweeper_lock
            .key(lock)
            .key(fence)
            .arg(owner)
            .arg(lease_ms)
            .arg(floor)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("acquired" | "renewed"), Some(token)) => {
                token.parse().map(Some).map_err(|_| unexpected(&reply))
            }
            (Some("held"), _) => Ok(None),
            _ => Err(unexpected(&reply)),
        }
    }

    /// Lets go of the sweeper lock if `owner` holds it; true when it did.
    pub async fn sweeper_unlock(&self, owner: &str) -> Result<bool, redis::RedisError> {
        let (lock, _) = self.keys.sweeper_lock();
        let released: i64 = self
            .sweeper_unlock
            .key(lock)
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(released == 1)
    }
}
