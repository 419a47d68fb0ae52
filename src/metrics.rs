//! Process metrics in the Prometheus text format (served at `GET /metrics`): GraphQL requests
//! and errors by code, tool calls by outcome with a latency histogram, token refreshes by
//! outcome, open subscriptions and the executions serving them, open WebSockets and WebSocket closes by close code, and the SQL
//! statements the pool has run (so a benchmark can
//! show that a request costs a constant number of them). Servers by status are counted from
//! the database, and kept MCP sessions read from the session pool, at scrape time. Labels are fixed words; no id, URL or secret ever becomes a
//! label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the tool-call latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's counters.
#[derive(Default)]
pub struct Metrics {
    graphql_requests: AtomicU64,
    graphql_errors: Mutex<BTreeMap<String, u64>>,
    tool_calls: Mutex<BTreeMap<&'static str, u64>>,
    tool_latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    tool_latency_count: AtomicU64,
    tool_latency_sum_micros: AtomicU64,
    token_refreshes: Mutex<BTreeMap<&'static str, u64>>,
    open_subscriptions: AtomicI64,
    subscription_executions: AtomicI64,
    subscription_results: AtomicU64,
    subscription_events_missed: AtomicU64,
    open_websockets: AtomicI64,
    websocket_closes: Mutex<BTreeMap<u16, u64>>,
    server_pages_by_columns: AtomicU64,
    server_pages_by_rows: AtomicU64,
    validations_remembered: AtomicU64,
    server_pages_written: AtomicU64,
}

/// How a page of servers was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageRead {
    /// Just the columns its selection shows.
    Columns,
    /// Whole rows, with what they need besides: for a selection that shows more than columns.
    Rows,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(key).or_default() += 1;
}

impl Metrics {
    /// A GraphQL request finished with these error codes.
    pub fn graphql_request<'a>(&self, error_codes: impl IntoIterator<Item = &'a str>) {
        self.graphql_requests.fetch_add(1, Ordering::Relaxed);
        for code in error_codes {
            // Codes are a closed set of upper-case words; anything else is counted as OTHER.
            let code =
                if code.chars().all(|c| c.is_ascii_uppercase() || c == '_') && code.len() <= 32 {
                    code
                } else {
                    "OTHER"
                };
            bump(&self.graphql_errors, code.to_owned());
        }
    }

    /// A tool call finished with `outcome` after `took`.
    pub fn tool_call(&self, outcome: &'static str, took: Duration) {
        bump(&self.tool_calls, outcome);
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.tool_latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.tool_latency_count.fetch_add(1, Ordering::Relaxed);
        self.tool_latency_sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A token refresh finished with `outcome` (`ok`, `rejected`, `failed`).
    pub fn token_refresh(&self, outcome: &'static str) {
        bump(&self.token_refreshes, outcome);
    }

    /// A subscription opened; the guard closes it when dropped.
    pub fn subscription_opened(self: &std::sync::Arc<Self>) -> SubscriptionGuard {
        self.open_subscriptions.fetch_add(1, Ordering::Relaxed);
        SubscriptionGuard(self.clone())
    }

    /// A subscription execution started (one may serve many subscribers); the guard counts it
    /// ended when dropped.
    pub fn subscription_execution_started(self: &std::sync::Arc<Self>) -> ExecutionGuard {
        self.subscription_executions.fetch_add(1, Ordering::Relaxed);
        ExecutionGuard(self.clone())
    }

    /// A subscription execution computed one result (for all its subscribers at once).
    pub fn subscription_result(&self) {
        self.subscription_results.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscription fell behind the event bus and missed `count` events.
    pub fn subscription_events_missed(&self, count: u64) {
        self.subscription_events_missed
            .fetch_add(count, Ordering::Relaxed);
    }

    /// A WebSocket opened; the guard counts it closed when dropped.
    pub fn websocket_opened(self: &std::sync::Arc<Self>) -> WebSocketGuard {
        self.open_websockets.fetch_add(1, Ordering::Relaxed);
        WebSocketGuard(self.clone())
    }

    /// The server closed a WebSocket with this close code.
    pub fn websocket_closed(&self, code: u16) {
        bump(&self.websocket_closes, code);
    }

    /// A page of servers was read as `read`.
    pub fn server_page(&self, read: PageRead) {
        let counter = match read {
            PageRead::Columns => &self.server_pages_by_columns,
            PageRead::Rows => &self.server_pages_by_rows,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A page of servers was written as JSON straight from its cells (`graphql::json`).
    pub fn server_page_written(&self) {
        self.server_pages_written.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ran without validating it again: it passed before (`graphql::documents`).
    pub fn validation_remembered(&self) {
        self.validations_remembered.fetch_add(1, Ordering::Relaxed);
    }

    /// WebSockets open now.
    pub fn open_websockets(&self) -> i64 {
        self.open_websockets.load(Ordering::Relaxed)
    }

    /// The text exposition, with `servers` = (connection status, auth status, count) and
    /// `db_statements` = statements run by the database pool since start; `mcp_sessions` =
    /// MCP sessions kept open for tool calls.
    pub fn render(
        &self,
        servers: &[(String, String, i64)],
        db_statements: u64,
        mcp_sessions: usize,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP switchboard_graphql_requests_total GraphQL responses sent (one per request over HTTP, one per result over WebSocket)."
        );
        let _ = writeln!(out, "# TYPE switchboard_graphql_requests_total counter");
        let _ = writeln!(
            out,
            "switchboard_graphql_requests_total {}",
            self.graphql_requests.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_graphql_errors_total GraphQL errors by extensions.code."
        );
        let _ = writeln!(out, "# TYPE switchboard_graphql_errors_total counter");
        for (code, n) in self
            .graphql_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "switchboard_graphql_errors_total{{code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_tool_calls_total Tool calls by outcome."
        );
        let _ = writeln!(out, "# TYPE switchboard_tool_calls_total counter");
        for (outcome, n) in self
            .tool_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "switchboard_tool_calls_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_tool_call_duration_seconds Tool call latency."
        );
        let _ = writeln!(
            out,
            "# TYPE switchboard_tool_call_duration_seconds histogram"
        );
        for (bucket, bound) in self.tool_latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "switchboard_tool_call_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.tool_latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "switchboard_tool_call_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.tool_latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "switchboard_tool_call_duration_seconds_sum {sum}");
        let _ = writeln!(out, "switchboard_tool_call_duration_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP switchboard_token_refreshes_total OAuth token refreshes by outcome."
        );
        let _ = writeln!(out, "# TYPE switchboard_token_refreshes_total counter");
        for (outcome, n) in self
            .token_refreshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "switchboard_token_refreshes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_servers MCP servers by connection and auth status."
        );
        let _ = writeln!(out, "# TYPE switchboard_servers gauge");
        for (connection, auth, n) in servers {
            let _ = writeln!(
                out,
                "switchboard_servers{{connection_status=\"{connection}\",auth_status=\"{auth}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_server_pages_total Pages of MCP servers read, by how: just the columns their selection shows, or whole rows for a selection that shows more."
        );
        let _ = writeln!(out, "# TYPE switchboard_server_pages_total counter");
        for (read, counter) in [
            ("columns", &self.server_pages_by_columns),
            ("rows", &self.server_pages_by_rows),
        ] {
            let _ = writeln!(
                out,
                "switchboard_server_pages_total{{read=\"{read}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_server_pages_written_total Pages of MCP servers read as columns and written as JSON straight from their cells (over HTTP, where no response key of the document repeats)."
        );
        let _ = writeln!(out, "# TYPE switchboard_server_pages_written_total counter");
        let _ = writeln!(
            out,
            "switchboard_server_pages_written_total {}",
            self.server_pages_written.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_graphql_validations_remembered_total GraphQL requests run on the fast validation rules because the same user sent the same text, operation and variables before and it ran without errors."
        );
        let _ = writeln!(
            out,
            "# TYPE switchboard_graphql_validations_remembered_total counter"
        );
        let _ = writeln!(
            out,
            "switchboard_graphql_validations_remembered_total {}",
            self.validations_remembered.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_open_subscriptions Open GraphQL subscriptions."
        );
        let _ = writeln!(out, "# TYPE switchboard_open_subscriptions gauge");
        let _ = writeln!(
            out,
            "switchboard_open_subscriptions {}",
            self.open_subscriptions.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_subscription_executions Running subscription executions (subscribers of the same operation with the same access share one)."
        );
        let _ = writeln!(out, "# TYPE switchboard_subscription_executions gauge");
        let _ = writeln!(
            out,
            "switchboard_subscription_executions {}",
            self.subscription_executions.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_subscription_results_total Results computed by subscription executions (one per event and execution, however many subscribers share it)."
        );
        let _ = writeln!(out, "# TYPE switchboard_subscription_results_total counter");
        let _ = writeln!(
            out,
            "switchboard_subscription_results_total {}",
            self.subscription_results.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_subscription_events_missed_total Status events subscriptions missed because they fell behind the event bus."
        );
        let _ = writeln!(
            out,
            "# TYPE switchboard_subscription_events_missed_total counter"
        );
        let _ = writeln!(
            out,
            "switchboard_subscription_events_missed_total {}",
            self.subscription_events_missed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_websockets_open Open GraphQL WebSockets, authenticated or not."
        );
        let _ = writeln!(out, "# TYPE switchboard_websockets_open gauge");
        let _ = writeln!(
            out,
            "switchboard_websockets_open {}",
            self.open_websockets.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_websocket_closes_total WebSockets the server closed, by close code."
        );
        let _ = writeln!(out, "# TYPE switchboard_websocket_closes_total counter");
        for (code, n) in self
            .websocket_closes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "switchboard_websocket_closes_total{{code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_db_statements_total SQL statements run by the database pool."
        );
        let _ = writeln!(out, "# TYPE switchboard_db_statements_total counter");
        let _ = writeln!(out, "switchboard_db_statements_total {db_statements}");
        let _ = writeln!(
            out,
            "# HELP switchboard_mcp_sessions_open MCP sessions kept open for tool calls."
        );
        let _ = writeln!(out, "# TYPE switchboard_mcp_sessions_open gauge");
        let _ = writeln!(out, "switchboard_mcp_sessions_open {mcp_sessions}");
        out
    }
}

/// Keeps a subscription counted while alive.
pub struct SubscriptionGuard(std::sync::Arc<Metrics>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.open_subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a subscription execution counted while alive.
pub struct ExecutionGuard(std::sync::Arc<Metrics>);

impl Drop for ExecutionGuard {
    fn drop(&mut self) {
        self.0
            .subscription_executions
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The liveness of the background tasks, in the Prometheus text format.
pub fn render_tasks(tasks: &[crate::supervisor::TaskReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP switchboard_task_up Whether a background task's last round succeeded."
    );
    let _ = writeln!(out, "# TYPE switchboard_task_up gauge");
    for task in tasks {
        let _ = writeln!(
            out,
            "switchboard_task_up{{task=\"{}\"}} {}",
            task.name,
            u8::from(task.healthy)
        );
    }
    let _ = writeln!(
        out,
        "# HELP switchboard_task_failures_total Background task rounds that failed or panicked."
    );
    let _ = writeln!(out, "# TYPE switchboard_task_failures_total counter");
    for task in tasks {
        let _ = writeln!(
            out,
            "switchboard_task_failures_total{{task=\"{}\"}} {}",
            task.name, task.failures
        );
    }
    let _ = writeln!(
        out,
        "# HELP switchboard_task_last_success_seconds When a background task's round last succeeded (Unix time)."
    );
    let _ = writeln!(out, "# TYPE switchboard_task_last_success_seconds gauge");
    for task in tasks {
        if let Some(at) = task.last_success_unix {
            let _ = writeln!(
                out,
                "switchboard_task_last_success_seconds{{task=\"{}\"}} {at}",
                task.name
            );
        }
    }
    out
}

/// Keeps a WebSocket counted while alive.
pub struct WebSocketGuard(std::sync::Arc<Metrics>);

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        self.0.open_websockets.fetch_sub(1, Ordering::Relaxed);
    }
}
