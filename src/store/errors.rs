//! What a MySQL error means for the caller: retry later (the server is unreachable), give up
//! on this data (the statement was refused for what it carried), or neither. The HTTP
//! mapping (`crate::error`) and the writer's dead-letter rule (`crate::writer`) both ask here.

/// Whether a MySQL error means "the server could not be reached" (retry later) rather than
/// "the statement failed".
pub fn is_connection_error(e: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            **e,
            Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed
        ),
        _ => false,
    }
}

/// Whether a failed statement was refused for the data it carried — SQLSTATE class `22`
/// (data exception), `23` (integrity constraint) or `45` (raised by a trigger's `SIGNAL`) —
/// so that running it again can only fail again. Everything else (MySQL unreachable, read
/// only after a failover, disk full, lock timeouts, deadlocks, missing privileges, statement
/// time limits…) says nothing about the entry: the writer retries it for as long as it takes
/// and never gives up on an accepted order for it.
pub fn is_data_error(e: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                Sqlx::Database(db) => db
                    .code()
                    .is_some_and(|state| ["22", "23", "45"].iter().any(|c| state.starts_with(c))),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a statement broke a `UNIQUE` key (MySQL error 1062): another transaction
/// committed the same value first.
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::error::ErrorKind;
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(&**e, Sqlx::Database(db) if db.kind() == ErrorKind::UniqueViolation)
        }
        _ => false,
    }
}
