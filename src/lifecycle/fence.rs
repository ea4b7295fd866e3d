//! The MySQL side of the sweeper lock's fencing token.
//!
//! Each sweeper transaction first raises `seckill_fence.token` to its own token (and
//! records its owner), on the condition that no higher token was seen, nor the same token
//! from another owner: a sweeper that lost its lease while paused
//! carries a lower token than the one that took over, and its update matches no row. The
//! row lock taken by that `UPDATE` also serializes the sweepers' transactions.

use sea_orm::{ConnectionTrait, DbErr, Statement};

/// The sweeper lock was taken over by a newer holder: this sweeper must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fencing token {0} is older than one MySQL has seen: the sweeper lock was lost")]
pub struct Fenced(pub u64);

/// Records `token` of `owner` as the newest, or refuses it if a newer token was seen, or
/// the same token from another owner (Redis handed one number to two holders).
pub(super) async fn check(
    db: &impl ConnectionTrait,
    token: u64,
    owner: &str,
) -> Result<Result<(), Fenced>, DbErr> {
    // sqlx connects with CLIENT_FOUND_ROWS: an equal token (the same holder's next round)
    // matches the row and counts 1 even though nothing changes.
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE seckill_fence SET token = ?, owner = ?
             WHERE name = 'sweeper' AND (token < ? OR (token = ? AND owner IN (?, '')))",
            [
                token.into(),
                owner.into(),
                token.into(),
                token.into(),
                owner.into(),
            ],
        ))
        .await?;
    Ok(if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(Fenced(token))
    })
}

/// The highest token MySQL has seen: the floor of the next token the lock hands out.
pub(super) async fn current(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT token FROM seckill_fence WHERE name = 'sweeper'",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<u64>("", "token")?,
        None => 0,
    })
}
