//! A test's own database and key prefix, removed when the test passes.
//!
//! Kept when it fails (the test's panic is running), and named on stderr, so that the rows
//! and keys can be looked at; `scripts/clean-test-data.sh` drops such leftovers once they are
//! an hour old.

use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, Database};

use seckill::configuration::Settings;

/// The data of one test: dropped with it.
pub struct TestData(Option<Target>);

struct Target {
    database_url: String,
    redis_url: String,
    prefix: String,
}

impl TestData {
    pub fn of(settings: &Settings) -> Self {
        Self(Some(Target {
            database_url: settings.database.url.clone(),
            redis_url: settings.redis.url.clone(),
            prefix: settings.redis.key_prefix.clone(),
        }))
    }
}

impl TestData {
    /// The database is to be dropped through this URL (a test that put a proxy in front of
    /// MySQL: the proxy is gone, or blocked, when the test ends).
    pub fn drop_database_at(&mut self, url: &str) {
        if let Some(t) = self.0.as_mut() {
            t.database_url = url.to_owned();
        }
    }
}

impl Target {
    async fn remove(&self) -> Result<(), String> {
        let mut url = url::Url::parse(&self.database_url).map_err(|e| e.to_string())?;
        let name = url.path().trim_start_matches('/').to_owned();
        url.set_path("/");
        let server = Database::connect(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        // Bounded: a transaction the test left open (a service stopped mid-batch behind a
        // test's proxy that no longer runs) holds a metadata lock, and the default wait
        // for one is a year. Past it the database is kept, and reported.
        server
            .execute_unprepared("SET SESSION lock_wait_timeout = 10")
            .await
            .map_err(|e| e.to_string())?;
        server
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .map_err(|e| e.to_string())?;
        let _ = server.close().await;
        let client = redis::Client::open(self.redis_url.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        {
            let mut iter = conn
                .scan_match::<_, String>(format!("{}:*", self.prefix))
                .await
                .map_err(|e| e.to_string())?;
            while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(k.map_err(|e| e.to_string())?);
            }
        }
        for chunk in keys.chunks(500) {
            let _: () = conn.del(chunk).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Drop for TestData {
    fn drop(&mut self) {
        let Some(target) = self.0.take() else { return };
        if std::thread::panicking() {
            eprintln!(
                "test data kept: database {}, Redis keys {}:*",
                target.database_url, target.prefix
            );
            return;
        }
        // Drop may run inside the test's runtime, where no other runtime can block: clean
        // up from a thread of its own, and wait for it.
        let cleaning = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            if let Err(e) = rt.block_on(target.remove()) {
                eprintln!("test data of {} not removed: {e}", target.prefix);
            }
        });
        let _ = cleaning.join();
    }
}
