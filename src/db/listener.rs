//! Which process listens to servers' tool changes: the one holding a PostgreSQL advisory lock
//! on a connection of its own, outside the pool, so that the lock ends exactly when that
//! connection does (the process stops, or the connection breaks). SQLite has one process,
//! which always listens.

use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::pool::establish_postgres;
use super::{DatabaseTarget, Db, DbError};

/// Key of the advisory lock (advisory locks are per database).
const LISTENER_LOCK_KEY: i64 = 0x5357_4c49_5354_454e;

/// The right to listen, held while this value lives.
pub struct ListenerLock {
    /// The connection holding the lock; none on SQLite.
    conn: Option<Box<AsyncPgConnection>>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

impl ListenerLock {
    /// Take the lock if no other process holds it.
    pub async fn try_acquire(db: &Db) -> Result<Option<ListenerLock>, DbError> {
        let url = match db.target() {
            DatabaseTarget::Sqlite(_) => return Ok(Some(ListenerLock { conn: None })),
            DatabaseTarget::Postgres(url) => url,
        };
        let mut conn = establish_postgres(url)
            .await
            .map_err(|e| DbError::Connect(e.to_string()))?;
        let row: Locked = diesel::sql_query(format!(
            "SELECT pg_try_advisory_lock({LISTENER_LOCK_KEY}) AS locked"
        ))
        .get_result(&mut conn)
        .await?;
        Ok(row.locked.then(|| ListenerLock {
            conn: Some(Box::new(conn)),
        }))
    }

    /// Fails when the lock's connection no longer answers (the lock is then gone).
    pub async fn check(&mut self) -> Result<(), DbError> {
        if let Some(conn) = &mut self.conn {
            diesel::sql_query("SELECT 1").execute(&mut **conn).await?;
        }
        Ok(())
    }
}
