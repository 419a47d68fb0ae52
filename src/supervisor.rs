//! Background tasks that never die silently.
//!
//! Every task the server runs beside its requests (the token refresh sweep, health checks, the
//! sweep of expired flows, the audit purge …) runs under a [`Supervisor`]. A task is a *round*
//! run again and again with a pause in between. A round that fails or panics is logged, counted,
//! and followed by a backoff that doubles up to a minute; the next successful round resets it.
//! A panic therefore costs one round, never the task.
//!
//! A *service* is a task that runs for as long as the server does (relaying events between
//! replicas, following access changes): it is started again, after the same backoff, if it
//! panics; it ends for good only when it returns (its input is gone).
//!
//! Each task's liveness is visible: [`Supervisor::report`] says, per task, whether it is
//! healthy (its last round succeeded, or the service is running), how many rounds failed (or
//! times the service crashed) in a row and in total, and when a round last succeeded (or the
//! service last started). `/readyz` and `/metrics` show it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::task::JoinHandle;

/// First pause after a failed round.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause after failed rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The liveness of one task.
#[derive(Debug)]
struct Liveness {
    name: &'static str,
    healthy: AtomicBool,
    failures_in_a_row: AtomicU64,
    failures: AtomicU64,
    last_success_unix: AtomicI64,
}

impl Liveness {
    fn new(name: &'static str) -> Arc<Liveness> {
        Arc::new(Liveness {
            name,
            healthy: AtomicBool::new(true),
            failures_in_a_row: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_success_unix: AtomicI64::new(0),
        })
    }
}

/// What a task's liveness looks like now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskReport {
    /// The task's name (`refresh_sweep`, `health_checks`, …).
    pub name: &'static str,
    /// Whether its last round succeeded (a task that has not finished a round yet counts as
    /// healthy).
    pub healthy: bool,
    /// Rounds that failed or panicked since the last success.
    pub failures_in_a_row: u64,
    /// Rounds that failed or panicked since start.
    pub failures: u64,
    /// When a round last succeeded (Unix seconds), if ever.
    pub last_success_unix: Option<i64>,
}

/// Runs and watches the background tasks. Dropping it (or calling [`Supervisor::stop`]) stops
/// them.
#[derive(Default)]
pub struct Supervisor {
    tasks: Mutex<Vec<(Arc<Liveness>, JoinHandle<()>)>>,
}

impl Supervisor {
    /// Run `round` forever: wait `pause()` (called before each round, so it can jitter), run the
    /// round, repeat. A round returning `Err` or panicking is logged and followed by a backoff
    /// instead of the usual pause.
    pub fn spawn<P, R, F, E>(&self, name: &'static str, pause: P, round: R)
    where
        P: Fn() -> Duration + Send + 'static,
        R: Fn() -> F + Send + 'static,
        F: Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        let liveness = Liveness::new(name);
        let watched = liveness.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let wait = if watched.healthy.load(Ordering::Relaxed) {
                    pause()
                } else {
                    backoff
                };
                tokio::time::sleep(wait).await;
                let outcome = AssertUnwindSafe(round()).catch_unwind().await;
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(panic) => Some(panic_message(panic.as_ref())),
                };
                match failure {
                    None => {
                        watched.healthy.store(true, Ordering::Relaxed);
                        watched.failures_in_a_row.store(0, Ordering::Relaxed);
                        watched
                            .last_success_unix
                            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                        backoff = FIRST_BACKOFF;
                    }
                    Some(error) => {
                        let in_a_row =
                            watched.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                        watched.failures.fetch_add(1, Ordering::Relaxed);
                        if !watched.healthy.swap(false, Ordering::Relaxed) {
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                        tracing::error!(
                            task = name,
                            %error,
                            failures_in_a_row = in_a_row,
                            retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                            "a background task failed; it runs again after a pause"
                        );
                    }
                }
            }
        });
        self.keep(liveness, handle);
    }

    /// Run a service: the future `make()` returns runs until it returns, which ends the
    /// service; if it panics, it is logged and `make()` is called again after a backoff.
    pub fn spawn_service<M, F>(&self, name: &'static str, make: M)
    where
        M: Fn() -> F + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        let liveness = Liveness::new(name);
        let watched = liveness.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                watched.healthy.store(true, Ordering::Relaxed);
                watched
                    .last_success_unix
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                let started = std::time::Instant::now();
                let Err(panic) = AssertUnwindSafe(make()).catch_unwind().await else {
                    return;
                };
                watched.healthy.store(false, Ordering::Relaxed);
                watched.failures.fetch_add(1, Ordering::Relaxed);
                let in_a_row = watched.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                // A service that ran for a while before it crashed starts again quickly.
                if started.elapsed() > MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                    watched.failures_in_a_row.store(1, Ordering::Relaxed);
                }
                tracing::error!(
                    task = name,
                    error = %panic_message(panic.as_ref()),
                    failures_in_a_row = in_a_row,
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "a background service crashed; it starts again after a pause"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        self.keep(liveness, handle);
    }

    fn keep(&self, liveness: Arc<Liveness>, handle: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((liveness, handle));
    }

    /// The liveness of every task, in the order they were started.
    pub fn report(&self) -> Vec<TaskReport> {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(liveness, _)| {
                let last = liveness.last_success_unix.load(Ordering::Relaxed);
                TaskReport {
                    name: liveness.name,
                    healthy: liveness.healthy.load(Ordering::Relaxed),
                    failures_in_a_row: liveness.failures_in_a_row.load(Ordering::Relaxed),
                    failures: liveness.failures.load(Ordering::Relaxed),
                    last_success_unix: (last > 0).then_some(last),
                }
            })
            .collect()
    }

    /// Stop every task.
    pub fn stop(&self) {
        for (_, handle) in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            handle.abort();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_panicking_round_is_followed_by_more_rounds() {
        let supervisor = Supervisor::default();
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        supervisor.spawn(
            "flaky",
            || Duration::from_millis(1),
            move || {
                let counted = counted.clone();
                async move {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    assert!(n != 0, "the first round panics");
                    if n == 1 {
                        return Err("the second round fails");
                    }
                    Ok(())
                }
            },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while rounds.load(Ordering::SeqCst) < 4 {
            assert!(tokio::time::Instant::now() < deadline, "the task stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = supervisor.report();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].name, "flaky");
        assert!(report[0].healthy);
        assert_eq!(report[0].failures, 2);
        assert_eq!(report[0].failures_in_a_row, 0);
        assert!(report[0].last_success_unix.is_some());
    }

    #[tokio::test]
    async fn a_crashing_service_is_started_again_and_one_that_returns_is_not() {
        let supervisor = Supervisor::default();
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        supervisor.spawn_service("flaky", move || {
            let counted = counted.clone();
            async move {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                assert!(n != 0, "the first run crashes");
                // The second run returns: the service is over.
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while starts.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never started again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            2,
            "a returned service stays ended"
        );
        let report = supervisor.report();
        assert_eq!(report[0].failures, 1);
        assert!(report[0].healthy);
    }

    #[tokio::test]
    async fn a_failing_task_reports_unhealthy_until_it_recovers() {
        let supervisor = Supervisor::default();
        supervisor.spawn(
            "broken",
            || Duration::from_millis(1),
            || async { Err::<(), _>("down") },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let report = supervisor.report();
            if !report[0].healthy {
                assert!(report[0].failures_in_a_row >= 1);
                assert_eq!(report[0].last_success_unix, None);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never failed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        supervisor.stop();
        assert!(supervisor.report().is_empty());
    }
}
