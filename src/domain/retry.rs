//! Storage writes that must not be lost to a passing database failure.
//!
//! Some writes record something that exists nowhere else once the moment has passed: tokens a
//! token endpoint has just issued (the refresh token they replace may already be dead at the
//! authorization server). Losing such a write loses the grant. These writes are retried while
//! the failure looks transient (a restarting database, a lost connection), within a budget
//! shorter than the refresh lease that protects them.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::db::DbError;

/// How long a write is retried in all.
pub const BUDGET: Duration = Duration::from_secs(45);
/// First pause between attempts; doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A failure that may pass by itself.
pub trait Transient: std::fmt::Display {
    /// Whether retrying the same work makes sense.
    fn is_transient(&self) -> bool;
}

impl Transient for DbError {
    fn is_transient(&self) -> bool {
        DbError::is_transient(self)
    }
}

impl Transient for super::Error {
    fn is_transient(&self) -> bool {
        matches!(self, super::Error::Db(error) if error.is_transient())
    }
}

/// Run `write` until it succeeds, fails for a lasting reason, or [`BUDGET`] is spent.
pub async fn persist<T, E, F, Fut>(what: &'static str, mut write: F) -> Result<T, E>
where
    E: Transient,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut attempt: u32 = 1;
    loop {
        match write().await {
            Ok(value) => {
                if attempt > 1 {
                    tracing::info!(what, attempt, "a storage write went through after retries");
                }
                return Ok(value);
            }
            Err(error) if error.is_transient() && started.elapsed() + pause < BUDGET => {
                tracing::warn!(%error, what, attempt, "a storage write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                attempt = attempt.saturating_add(1);
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn transient_failures_are_retried_and_lasting_ones_are_not() {
        let calls = AtomicU32::new(0);
        let value: Result<_, DbError> = persist("test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(DbError::Pool("busy".into()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(value.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let value: Result<(), DbError> = persist("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(DbError::UniqueViolation)
        })
        .await;
        assert!(matches!(value, Err(DbError::UniqueViolation)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
