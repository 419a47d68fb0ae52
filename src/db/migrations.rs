//! Embedded migrations for both backends.
//!
//! They run at start-up and with `switchboard migrate`. On PostgreSQL the run holds a
//! session-level advisory lock, so replicas that start together apply each migration once and
//! the others wait, then find nothing pending.

use diesel_async::{AsyncMigrationHarness, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::pool::{MigrationConn, establish_for_migrations};
use super::{Db, DbError};

const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

static IN_PROCESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Advisory lock key shared by every replica ("SWBDMIGR" as bytes).
const MIGRATION_LOCK_KEY: i64 = 0x5357_4244_4d49_4752;

/// Apply every pending migration; returns the versions applied.
///
/// The harness blocks inside `block_in_place`, so this must run on a multi-threaded runtime.
pub async fn run(db: &Db) -> Result<Vec<String>, DbError> {
    // SQLite has no advisory locks; pools of one process that migrate together take turns
    // here (the advisory lock covers PostgreSQL replicas in other processes too).
    let _turn = IN_PROCESS.lock().await;
    match establish_for_migrations(db.target()).await? {
        MigrationConn::Postgres(conn) => {
            let mut conn = *conn;
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .execute(&mut conn)
                .await?;
            let mut harness = AsyncMigrationHarness::new(conn);
            let applied = harness
                .run_pending_migrations(POSTGRES)
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| DbError::Migration(e.to_string()));
            let mut conn = harness.into_inner();
            // Closing the connection releases the lock too; unlocking explicitly keeps the
            // intent visible and frees it even if the connection were pooled later.
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .execute(&mut conn)
                .await?;
            applied
        }
        MigrationConn::Sqlite(conn) => {
            let mut harness = AsyncMigrationHarness::new(conn);
            harness
                .run_pending_migrations(SQLITE)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
                .map_err(|e| DbError::Migration(e.to_string()))
        }
    }
}

/// How many migrations are embedded for this database's backend.
pub fn embedded_count(db: &Db) -> usize {
    use diesel::migration::MigrationSource;
    let count = |source: EmbeddedMigrations, pg: bool| {
        if pg {
            MigrationSource::<diesel::pg::Pg>::migrations(&source)
                .map(|m| m.len())
                .unwrap_or(0)
        } else {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&source)
                .map(|m| m.len())
                .unwrap_or(0)
        }
    };
    if db.is_postgres() {
        count(POSTGRES, true)
    } else {
        count(SQLITE, false)
    }
}

/// Revert every applied migration (used by the migration round-trip test).
pub async fn revert_all(db: &Db) -> Result<(), DbError> {
    match establish_for_migrations(db.target()).await? {
        MigrationConn::Postgres(conn) => {
            AsyncMigrationHarness::new(*conn)
                .revert_all_migrations(POSTGRES)
                .map_err(|e| DbError::Migration(e.to_string()))?;
        }
        MigrationConn::Sqlite(conn) => {
            AsyncMigrationHarness::new(conn)
                .revert_all_migrations(SQLITE)
                .map_err(|e| DbError::Migration(e.to_string()))?;
        }
    }
    Ok(())
}

/// Revert the most recent applied migration (used by the tests that migrate data written in
/// the previous layout).
pub async fn revert_last(db: &Db) -> Result<String, DbError> {
    let reverted = match establish_for_migrations(db.target()).await? {
        MigrationConn::Postgres(conn) => AsyncMigrationHarness::new(*conn)
            .revert_last_migration(POSTGRES)
            .map(|v| v.to_string()),
        MigrationConn::Sqlite(conn) => AsyncMigrationHarness::new(conn)
            .revert_last_migration(SQLITE)
            .map(|v| v.to_string()),
    };
    reverted.map_err(|e| DbError::Migration(e.to_string()))
}
