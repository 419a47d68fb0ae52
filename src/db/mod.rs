//! Storage: the only layer that knows SQL.
//!
//! Both backends share one schema ([`schema`]), one set of row types ([`models`]) and one set
//! of data functions. Data functions take `&mut DbConn`, never the pool, so a caller can compose
//! several inside one [`transaction!`](crate::transaction). Row types are separate from the
//! GraphQL types and from the domain's view of them.

#[macro_use]
mod queries;

pub mod access;
pub mod audit;
mod fixed;
pub mod listener;
pub mod migrations;
pub mod models;
pub mod notify;
pub mod oauth;
mod pool;
pub mod projection;
pub mod schema;
pub mod sealed;
pub mod servers;
pub mod types;

pub use pool::{DatabaseTarget, Db, DbConn, PoolOptions, SqliteConn, read_here};
pub use types::{DbTime, DbUuid};

/// A storage failure. Its text is for logs only; the API maps it to `INTERNAL`.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pool could not be built or a connection could not be opened.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// No connection became free in time.
    #[error("no database connection available: {0}")]
    Pool(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A unique constraint was violated (the caller usually maps this to a conflict).
    #[error("unique constraint violated")]
    UniqueViolation,
    /// Any other query failure.
    #[error("query failed: {0}")]
    Query(diesel::result::Error),
}

impl DbError {
    /// Whether the failure may pass by itself (the database restarting, a connection lost, the
    /// pool exhausted, a serialization conflict), so retrying the same work makes sense.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match self {
            DbError::Connect(_) | DbError::Pool(_) => true,
            DbError::Migration(_) | DbError::UniqueViolation => false,
            DbError::Query(error) => matches!(
                error,
                Error::BrokenTransactionManager
                    | Error::DatabaseError(
                        Kind::ClosedConnection
                            | Kind::UnableToSendCommand
                            | Kind::SerializationFailure
                            | Kind::Unknown,
                        _,
                    )
            ),
        }
    }
}

impl From<diesel::result::Error> for DbError {
    fn from(error: diesel::result::Error) -> Self {
        match error {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => DbError::UniqueViolation,
            other => DbError::Query(other),
        }
    }
}

/// Current time truncated to microseconds, the precision both backends store, so a value read
/// back compares equal to the value written.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::{DurationRound, TimeDelta};
    let now = chrono::Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}
