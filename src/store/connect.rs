use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};

use crate::configuration::DatabaseSettings;

/// Connects to the configured database, creating it first if the server lacks it.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut url = url::Url::parse(&settings.url)
        .map_err(|e| DbErr::Custom(format!("database.url is not a URL: {e}")))?;
    let name = url.path().trim_start_matches('/').to_owned();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DbErr::Custom(format!(
            "database.url must name a database of [A-Za-z0-9_], got {name:?}"
        )));
    }
    url.set_path("/");
    let server = Database::connect(options(url.as_str(), 1)).await?;
    server
        .execute_unprepared(&format!(
            "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"
        ))
        .await?;
    server.close().await?;
    Database::connect(options(&settings.url, settings.max_connections)).await
}

fn options(url: &str, max: u32) -> ConnectOptions {
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(max)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    opt
}

/// Applies pending migrations under a MySQL named lock, so that several instances starting
/// at once migrate one after the other (`Migrator::up` itself takes no lock).
pub async fn migrate(settings: &DatabaseSettings) -> Result<(), DbErr> {
    // One connection: GET_LOCK belongs to the session that took it.
    let db = connect(&DatabaseSettings {
        max_connections: 1,
        ..settings.clone()
    })
    .await?;
    let backend = db.get_database_backend();
    let lock = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT GET_LOCK('seckill_migrate', 60)".to_owned(),
        ))
        .await?
        .and_then(|row| row.try_get_by_index::<Option<i64>>(0).ok().flatten());
    if lock != Some(1) {
        return Err(DbErr::Custom(
            "could not take the migration lock within 60 s".into(),
        ));
    }
    let result = Migrator::up(&db, None).await;
    db.execute_unprepared("DO RELEASE_LOCK('seckill_migrate')")
        .await?;
    db.close().await?;
    result
}
