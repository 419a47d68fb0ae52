//! Costs, limits and quotas: how much work one request, one user, one workspace or one
//! upstream server can make Switchboard do.
//!
//! An operation that contacts other servers (a probe, a revocation, an OAuth exchange, a
//! catalogue listing, a tool call) is *outbound*. Each one needs an [`Outbound`] permit, and the
//! domain functions that may send traffic take one as an argument, so an API field cannot reach
//! them without asking. A permit is granted by [`Limits::admit`], which takes one unit from the
//! request's [`RequestBudget`] and one token from the caller's bucket; it is spent by
//! [`Outbound::require`], which checks the caller's role in the workspace of the object first
//! and only then takes a token from the workspace's bucket, so nobody can drain the allowance
//! of a workspace they do not belong to.
//!
//! Invariants:
//! - Refusals happen before anything else: a refused operation sends nothing and writes
//!   nothing.
//! - Rate limits are token buckets in this process's memory: with several replicas each
//!   applies its own. Buckets that have refilled are dropped, so the limiter holds only the
//!   callers active in the last refill period.
//! - Quotas (servers per workspace, tools and catalogue bytes per server) are read here and
//!   enforced where the data is written or read from upstream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::access::{Principal, Role};
use super::{Error, Result, Settings};

/// A token-bucket rate: `per_minute` on average, up to `burst` at once. A rate of zero turns
/// the limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Operations per minute, on average (0: unlimited).
    pub per_minute: u32,
    /// Operations accepted at once.
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit {
        per_minute: 0,
        burst: 1,
    };

    /// Whether the limit applies.
    pub fn is_on(&self) -> bool {
        self.per_minute > 0
    }
}

/// Which limit refused an outbound operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// The request already used its budget of outbound operations.
    Request {
        /// The budget.
        budget: u32,
    },
    /// The caller started too many outbound operations recently.
    User {
        /// Whole seconds until one more is accepted (at least 1).
        retry_after_secs: u64,
    },
    /// The workspace started too many outbound operations recently.
    Workspace {
        /// Whole seconds until one more is accepted (at least 1).
        retry_after_secs: u64,
    },
}

impl Limited {
    /// Seconds to wait before trying again, for the rate limits.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Limited::Request { .. } => None,
            Limited::User { retry_after_secs } | Limited::Workspace { retry_after_secs } => {
                Some(*retry_after_secs)
            }
        }
    }
}

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limited::Request { budget } => write!(
                f,
                "one request may contact other servers at most {budget} times; \
                 send the remaining operations in another request"
            ),
            Limited::User { retry_after_secs } => write!(
                f,
                "you started too many operations that contact other servers; \
                 try again in {retry_after_secs} s"
            ),
            Limited::Workspace { retry_after_secs } => write!(
                f,
                "this workspace started too many operations that contact other servers; \
                 try again in {retry_after_secs} s"
            ),
        }
    }
}

/// A configured quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// Servers registered in one workspace.
    ServersPerWorkspace,
    /// Tools listed by one server.
    ToolsPerServer,
    /// Bytes of one server's tool listing (its JSON, as sent).
    CatalogueBytes,
}

impl Quota {
    /// The name clients see in `extensions.quota`.
    pub fn code(self) -> &'static str {
        match self {
            Quota::ServersPerWorkspace => "SERVERS_PER_WORKSPACE",
            Quota::ToolsPerServer => "TOOLS_PER_SERVER",
            Quota::CatalogueBytes => "CATALOGUE_BYTES",
        }
    }

    /// What was refused, in words, for `limit`.
    pub fn describe(self, limit: u64) -> String {
        match self {
            Quota::ServersPerWorkspace => format!(
                "the workspace already has {limit} servers, the most it may have; \
                 delete one before adding another"
            ),
            Quota::ToolsPerServer => format!(
                "the server lists more than {limit} tools, the most a server may have; \
                 the previous catalogue was kept"
            ),
            Quota::CatalogueBytes => format!(
                "the server's tool list is larger than {limit} bytes, the most a catalogue may \
                 be; the previous catalogue was kept"
            ),
        }
    }
}

/// The outbound allowance of one GraphQL request (one WebSocket operation is a request of its
/// own). Shared by the fields of the request, which may run concurrently.
#[derive(Debug)]
pub struct RequestBudget {
    budget: u32,
    used: AtomicU32,
}

impl RequestBudget {
    /// A fresh budget of `budget` outbound operations.
    pub fn new(budget: u32) -> RequestBudget {
        RequestBudget {
            budget,
            used: AtomicU32::new(0),
        }
    }

    /// Take one unit; `false` once the budget is used up.
    fn take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.budget).then_some(used + 1)
            })
            .is_ok()
    }
}

/// The limits and quotas of this process, built once from the configuration.
#[derive(Debug)]
pub struct Limits {
    per_request: u32,
    users: Buckets,
    workspaces: Buckets,
    /// Most servers per workspace.
    pub servers_per_workspace: u32,
    /// Most tools per server.
    pub tools_per_server: u32,
    /// Largest tool listing per server, in bytes.
    pub catalogue_bytes: u64,
}

impl Limits {
    /// The limits `settings` ask for.
    pub fn new(settings: &Settings) -> Limits {
        Limits {
            per_request: settings.outbound_per_request,
            users: Buckets::new(settings.user_outbound),
            workspaces: Buckets::new(settings.workspace_outbound),
            servers_per_workspace: settings.max_servers_per_workspace,
            tools_per_server: settings.max_tools_per_server,
            catalogue_bytes: settings.max_catalogue_bytes,
        }
    }

    /// A budget for a new request.
    pub fn request_budget(&self) -> RequestBudget {
        RequestBudget::new(self.per_request)
    }

    /// Admit one outbound operation for `principal`: one unit of the request's budget, then
    /// one token of the caller's bucket. Call it first, once the caller is known.
    pub fn admit<'a>(
        &'a self,
        budget: &RequestBudget,
        principal: &'a Principal,
    ) -> Result<Outbound<'a>> {
        if !budget.take() {
            return Err(Error::RateLimited(Limited::Request {
                budget: budget.budget,
            }));
        }
        self.users
            .take(principal.user_id, Instant::now())
            .map_err(|wait| {
                Error::RateLimited(Limited::User {
                    retry_after_secs: whole_seconds(wait),
                })
            })?;
        Ok(Outbound {
            principal,
            limits: self,
        })
    }
}

/// The right to run one outbound operation, granted by [`Limits::admit`]. Domain functions
/// that may contact other servers take one and spend it with [`Outbound::require`] where they
/// would check the caller's role.
#[must_use = "an outbound permit must be spent with `require`, which checks the caller's role"]
#[derive(Debug)]
pub struct Outbound<'a> {
    principal: &'a Principal,
    limits: &'a Limits,
}

impl Outbound<'_> {
    /// The caller.
    pub fn user_id(&self) -> Uuid {
        self.principal.user_id
    }

    /// Require at least `role` in the workspace (as [`Principal::require`] does), then take a
    /// token from the workspace's bucket. The role is checked first, so a caller outside the
    /// workspace never touches its allowance.
    pub fn require(self, workspace_id: Uuid, role: Role) -> Result<Role> {
        let granted = self.principal.require(workspace_id, role)?;
        self.limits
            .workspaces
            .take(workspace_id, Instant::now())
            .map_err(|wait| {
                Error::RateLimited(Limited::Workspace {
                    retry_after_secs: whole_seconds(wait),
                })
            })?;
        Ok(granted)
    }

    /// Spend the permit on completing the caller's own OAuth flow. The flow's workspace was
    /// charged when the caller started it, and a flow completes at most once, so only the
    /// request budget and the caller's own limit apply.
    pub fn complete_own_flow(self) {}
}

/// Whole seconds to wait, rounded up, at least one.
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    let secs = if wait.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    secs.max(1)
}

/// Token buckets by key (a user or a workspace id). Off when the rate is zero.
#[derive(Debug)]
struct Buckets {
    rate: RateLimit,
    state: Mutex<BucketMap>,
}

#[derive(Debug)]
struct BucketMap {
    buckets: HashMap<Uuid, Bucket>,
    swept_at: Option<Instant>,
    /// Sweep when the map grows past this, whatever the time.
    high_water: usize,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How often full buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Smallest map size that triggers an early sweep.
const MIN_HIGH_WATER: usize = 1024;

impl Buckets {
    fn new(rate: RateLimit) -> Buckets {
        Buckets {
            rate,
            state: Mutex::new(BucketMap {
                buckets: HashMap::new(),
                swept_at: None,
                high_water: MIN_HIGH_WATER,
            }),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.rate.per_minute) / 60.0
    }

    fn burst(&self) -> f64 {
        f64::from(self.rate.burst.max(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketMap> {
        // The map holds plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take one token for `key` at `now`, or say how long until one is available.
    fn take(&self, key: Uuid, now: Instant) -> std::result::Result<(), Duration> {
        if !self.rate.is_on() {
            return Ok(());
        }
        let (per_second, burst) = (self.per_second(), self.burst());
        let mut map = self.lock();
        let due = map
            .swept_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
        if due || map.buckets.len() >= map.high_water {
            // A bucket that has refilled is the same as no bucket: drop it.
            map.buckets
                .retain(|_, bucket| bucket.level(now, per_second, burst) < burst);
            map.swept_at = Some(now);
            map.high_water = map.buckets.len().saturating_mul(2).max(MIN_HIGH_WATER);
        }
        let bucket = map.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = bucket.level(now, per_second, burst);
        bucket.at = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / per_second))
        }
    }
}

impl Bucket {
    /// Tokens at `now`: what was left, plus what flowed in since, up to the burst.
    fn level(&self, now: Instant, per_second: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * per_second).min(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(per_minute: u32, burst: u32) -> Buckets {
        Buckets::new(RateLimit { per_minute, burst })
    }

    impl Buckets {
        fn len(&self) -> usize {
            self.lock().buckets.len()
        }
    }

    #[test]
    fn a_budget_admits_exactly_its_size() {
        let budget = RequestBudget::new(3);
        let taken = (0..10).filter(|_| budget.take()).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_the_rate() {
        let limiter = buckets(60, 3);
        let key = Uuid::now_v7();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(key, start).is_ok());
        }
        let wait = limiter.take(key, start).expect_err("burst used up");
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert_eq!(whole_seconds(wait), 1);
        // One token per second flows back.
        assert!(
            limiter
                .take(key, start + Duration::from_millis(1000))
                .is_ok()
        );
        assert!(
            limiter
                .take(key, start + Duration::from_millis(1000))
                .is_err()
        );
        // Another key has its own bucket.
        assert!(limiter.take(Uuid::now_v7(), start).is_ok());
    }

    #[test]
    fn the_wait_is_rounded_up_to_whole_seconds() {
        let limiter = buckets(6, 1);
        let key = Uuid::now_v7();
        let start = Instant::now();
        assert!(limiter.take(key, start).is_ok());
        let wait = limiter.take(key, start).expect_err("empty");
        assert_eq!(whole_seconds(wait), 10, "{wait:?}");
        let wait = limiter
            .take(key, start + Duration::from_millis(8_500))
            .expect_err("still empty");
        assert_eq!(whole_seconds(wait), 2, "{wait:?}");
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let limiter = buckets(0, 1);
        let key = Uuid::now_v7();
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.take(key, now).is_ok()));
        assert_eq!(limiter.len(), 0, "nothing is tracked when off");
    }

    #[test]
    fn idle_buckets_are_dropped() {
        let limiter = buckets(60, 2);
        let start = Instant::now();
        for _ in 0..5_000 {
            assert!(limiter.take(Uuid::now_v7(), start).is_ok());
        }
        assert_eq!(
            limiter.len(),
            5_000,
            "callers with tokens in use are tracked"
        );
        // A refill period later every bucket is full again and goes at the next sweep.
        let later = start + SWEEP_EVERY + Duration::from_secs(2);
        assert!(limiter.take(Uuid::now_v7(), later).is_ok());
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn a_busy_caller_is_kept_across_sweeps() {
        let limiter = buckets(60, 1);
        let key = Uuid::now_v7();
        let start = Instant::now();
        assert!(limiter.take(key, start).is_ok());
        let later = start + SWEEP_EVERY;
        // Refilled at `later`, so its bucket may go: the next take starts full, which is the
        // same answer a kept bucket would give.
        assert!(limiter.take(key, later).is_ok());
        assert!(
            limiter.take(key, later).is_err(),
            "the bucket is tracked again"
        );
    }
}
