//! Typed configuration from command-line flags, each with a `SWITCHBOARD_*` environment
//! equivalent. A bad value stops start-up with a message naming the setting.
//!
//! The server (`serve`, `migrate`, `connect`) reads every setting, [`ConfigArgs`]; the `admin`
//! commands read only the database URL and the keys, [`AdminArgs`], and leave the rest at their
//! defaults, so a server-only setting neither shows in their help nor stops them.
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--database-url` | `SWITCHBOARD_DATABASE_URL` | `sqlite://data/switchboard.db` |
//! | `--bind` | `SWITCHBOARD_BIND` | `127.0.0.1:8080` |
//! | `--public-url` | `SWITCHBOARD_PUBLIC_URL` | `http://<bind>` |
//! | `--app-origins` | `SWITCHBOARD_APP_ORIGINS` | none (comma-separated origins allowed for CORS and `postMessage`) |
//! | `--client-metadata-url` | `SWITCHBOARD_CLIENT_METADATA_URL` | `{public_url}/oauth/client-metadata.json` when https |
//! | `--encryption-keys` | `SWITCHBOARD_ENCRYPTION_KEYS` | none (`kid:key,…`, first seals) |
//! | `--key-file` | `SWITCHBOARD_KEY_FILE` | next to the SQLite database; created on first start |
//! | `--allow-private-networks` | `SWITCHBOARD_ALLOW_PRIVATE_NETWORKS` | `false` |
//! | `--log-format` | `SWITCHBOARD_LOG_FORMAT` | `text` (`json`) |
//! | `--health-interval-secs` | `SWITCHBOARD_HEALTH_INTERVAL_SECS` | `60` (0 turns checks off) |
//! | `--health-concurrency` | `SWITCHBOARD_HEALTH_CONCURRENCY` | `8` |
//! | `--db-pool-size` | `SWITCHBOARD_DB_POOL_SIZE` | `16` |
//! | `--worker-threads` | `SWITCHBOARD_WORKER_THREADS` | one per CPU core |
//! | `--max-body-bytes` | `SWITCHBOARD_MAX_BODY_BYTES` | `1048576` |
//! | `--max-query-depth` | `SWITCHBOARD_MAX_QUERY_DEPTH` | `12` |
//! | `--max-query-complexity` | `SWITCHBOARD_MAX_QUERY_COMPLEXITY` | `20000` |
//! | `--outbound-per-request` | `SWITCHBOARD_OUTBOUND_PER_REQUEST` | `10` |
//! | `--user-outbound-per-minute` | `SWITCHBOARD_USER_OUTBOUND_PER_MINUTE` | `120` (0 turns the limit off) |
//! | `--user-outbound-burst` | `SWITCHBOARD_USER_OUTBOUND_BURST` | `30` |
//! | `--workspace-outbound-per-minute` | `SWITCHBOARD_WORKSPACE_OUTBOUND_PER_MINUTE` | `600` (0 turns the limit off) |
//! | `--workspace-outbound-burst` | `SWITCHBOARD_WORKSPACE_OUTBOUND_BURST` | `100` |
//! | `--max-servers-per-workspace` | `SWITCHBOARD_MAX_SERVERS_PER_WORKSPACE` | `200` |
//! | `--max-tools-per-server` | `SWITCHBOARD_MAX_TOOLS_PER_SERVER` | `1000` |
//! | `--max-catalogue-bytes` | `SWITCHBOARD_MAX_CATALOGUE_BYTES` | `2097152` |
//! | `--metrics-token` | `SWITCHBOARD_METRICS_TOKEN` | none (`/metrics` is open); 16 to 256 visible ASCII characters |
//! | `--metrics-bind` | `SWITCHBOARD_METRICS_BIND` | none (`/metrics` is served on `--bind`) |
//! | `--audit-retention-days` | `SWITCHBOARD_AUDIT_RETENTION_DAYS` | `365` (0 keeps every event) |
//! | `--ws-init-timeout-secs` | `SWITCHBOARD_WS_INIT_TIMEOUT_SECS` | `10` |
//! | `--ws-max-lifetime-secs` | `SWITCHBOARD_WS_MAX_LIFETIME_SECS` | `86400` |
//! | `--ws-max-sockets-per-user` | `SWITCHBOARD_WS_MAX_SOCKETS_PER_USER` | `100` |
//! | `--ws-max-sockets` | `SWITCHBOARD_WS_MAX_SOCKETS` | `20000` |
//! | `--ws-max-subscriptions-per-socket` | `SWITCHBOARD_WS_MAX_SUBSCRIPTIONS_PER_SOCKET` | `100` |
//! | `--identity-providers` | `SWITCHBOARD_IDENTITY_PROVIDERS` | none (a JSON file of trusted identity providers; only API tokens authenticate) |
//!
//! The log filter follows `RUST_LOG` (default `info`). Trace export reads the standard
//! OpenTelemetry variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, …) instead of flags of its own, as
//! collectors and their operators expect; see [`crate::telemetry::settings`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use url::Url;

use crate::db::DatabaseTarget;
pub use crate::domain::limits::RateLimit;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The raw settings as given on the command line or in the environment.
#[derive(Args, Clone, Debug)]
pub struct ConfigArgs {
    /// Database: `sqlite://path` (embedded, the default) or `postgres://…`.
    #[arg(
        long,
        env = "SWITCHBOARD_DATABASE_URL",
        default_value = "sqlite://data/switchboard.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Public base URL of this server, used for OAuth redirect URIs and links.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Comma-separated origins of the apps allowed to call the API from a browser.
    #[arg(long, env = "SWITCHBOARD_APP_ORIGINS")]
    pub app_origins: Option<String>,
    /// URL of the Client ID Metadata Document to use as OAuth client id (default: the one this
    /// server serves when its public URL is https).
    #[arg(long, env = "SWITCHBOARD_CLIENT_METADATA_URL")]
    pub client_metadata_url: Option<String>,
    /// Encryption keys `kid:key,…` (key = 64 hex chars or base64 of 32 bytes); the first seals.
    #[arg(long, env = "SWITCHBOARD_ENCRYPTION_KEYS", hide_env_values = true)]
    pub encryption_keys: Option<String>,
    /// Key file holding the encryption keys (created with mode 0600 in SQLite mode).
    #[arg(long, env = "SWITCHBOARD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Allow outbound requests to loopback and private networks (local development, tests).
    #[arg(long, env = "SWITCHBOARD_ALLOW_PRIVATE_NETWORKS", default_value = "false",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_networks: bool,
    /// Log format.
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Seconds between health checks of a server (0 turns them off).
    #[arg(long, env = "SWITCHBOARD_HEALTH_INTERVAL_SECS", default_value = "60",
          value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub health_interval_secs: u32,
    /// Servers checked at the same time.
    #[arg(long, env = "SWITCHBOARD_HEALTH_CONCURRENCY", default_value = "8",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub health_concurrency: u16,
    /// Maximum database connections.
    #[arg(long, env = "SWITCHBOARD_DB_POOL_SIZE", default_value = "16",
          value_parser = clap::value_parser!(u16).range(1..=512))]
    pub db_pool_size: u16,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_BYTES", default_value = "1048576",
          value_parser = clap::value_parser!(u64).range(1024..=67_108_864))]
    pub max_body_bytes: u64,
    /// Deepest accepted GraphQL query.
    #[arg(long, env = "SWITCHBOARD_MAX_QUERY_DEPTH", default_value = "12",
          value_parser = clap::value_parser!(u16).range(2..=64))]
    pub max_query_depth: u16,
    /// Highest accepted GraphQL query complexity.
    #[arg(long, env = "SWITCHBOARD_MAX_QUERY_COMPLEXITY", default_value = "20000",
          value_parser = clap::value_parser!(u32).range(10..=10_000_000))]
    pub max_query_complexity: u32,
    /// Operations that contact other servers (probe, create, update, delete, OAuth, refresh,
    /// tool call) accepted in one GraphQL request or WebSocket operation.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_PER_REQUEST", default_value = "10",
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub outbound_per_request: u32,
    /// Outbound operations a user may start per minute, on average (0 turns the limit off).
    #[arg(long, env = "SWITCHBOARD_USER_OUTBOUND_PER_MINUTE", default_value = "120",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub user_outbound_per_minute: u32,
    /// Outbound operations a user may start at once before the per-minute rate applies.
    #[arg(long, env = "SWITCHBOARD_USER_OUTBOUND_BURST", default_value = "30",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub user_outbound_burst: u32,
    /// Outbound operations a workspace may start per minute, on average (0 turns the limit off).
    #[arg(long, env = "SWITCHBOARD_WORKSPACE_OUTBOUND_PER_MINUTE", default_value = "600",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub workspace_outbound_per_minute: u32,
    /// Outbound operations a workspace may start at once before the per-minute rate applies.
    #[arg(long, env = "SWITCHBOARD_WORKSPACE_OUTBOUND_BURST", default_value = "100",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub workspace_outbound_burst: u32,
    /// Most MCP servers registered in one workspace.
    #[arg(long, env = "SWITCHBOARD_MAX_SERVERS_PER_WORKSPACE", default_value = "200",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_servers_per_workspace: u32,
    /// Most tools stored for one server; a longer listing is refused.
    #[arg(long, env = "SWITCHBOARD_MAX_TOOLS_PER_SERVER", default_value = "1000",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_tools_per_server: u32,
    /// Largest tool listing of one server, in bytes of JSON; a larger one is refused.
    #[arg(long, env = "SWITCHBOARD_MAX_CATALOGUE_BYTES", default_value = "2097152",
          value_parser = clap::value_parser!(u64).range(1024..=268_435_456))]
    pub max_catalogue_bytes: u64,
    /// Bearer token `/metrics` requires (16 to 256 visible ASCII characters); without it the
    /// metrics are open to whoever reaches their listener.
    #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Separate address to serve `/metrics` on; the main listener then answers 404 for it.
    #[arg(long, env = "SWITCHBOARD_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Threads that run requests (the runtime's workers); one per CPU core when not given.
    /// Blocking work (SQLite writes, key derivation) has threads of its own besides.
    #[arg(long, env = "SWITCHBOARD_WORKER_THREADS",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub worker_threads: Option<u32>,
    /// Days audit events are kept before a background purge deletes them (0 keeps them all).
    #[arg(long, env = "SWITCHBOARD_AUDIT_RETENTION_DAYS", default_value = "365",
          value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub audit_retention_days: u32,
    /// Most servers of revision 2026-07-28 whose tool changes are listened to (one stream
    /// each, held by one replica); 0 turns live catalogues off.
    #[arg(long, env = "SWITCHBOARD_CATALOGUE_LISTENERS", default_value = "256",
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub catalogue_listeners: u32,
    /// Seconds a WebSocket may take to send `connection_init` before it is closed (4408).
    #[arg(long, env = "SWITCHBOARD_WS_INIT_TIMEOUT_SECS", default_value = "10",
          value_parser = clap::value_parser!(u32).range(1..=300))]
    pub ws_init_timeout_secs: u32,
    /// Longest life of a WebSocket in seconds; then it is closed (1001) and the client
    /// reconnects.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_LIFETIME_SECS", default_value = "86400",
          value_parser = clap::value_parser!(u32).range(60..=2_592_000))]
    pub ws_max_lifetime_secs: u32,
    /// WebSockets one user may hold open on this process.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_SOCKETS_PER_USER", default_value = "100",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ws_max_sockets_per_user: u32,
    /// WebSockets open on this process, authenticated or not.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_SOCKETS", default_value = "20000",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ws_max_sockets: u32,
    /// Operations (subscriptions, and queries or mutations still running) open at once on one
    /// WebSocket.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_SUBSCRIPTIONS_PER_SOCKET", default_value = "100",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub ws_max_subscriptions_per_socket: u32,
    /// Messages waiting to be sent on one WebSocket; a socket that falls further behind is
    /// closed with 4413.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_QUEUED_MESSAGES", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ws_max_queued_messages: u32,
    /// JSON file listing the identity providers whose bearer JWTs sign users in (see the
    /// README, "Connecting your product"); without it only API tokens authenticate.
    #[arg(long, env = "SWITCHBOARD_IDENTITY_PROVIDERS")]
    pub identity_providers: Option<PathBuf>,
}

/// The settings the `admin` commands read: where the database is and the keys that open its
/// secrets. Every other setting keeps its default. Global within `admin`, so they go before or
/// after the admin command's name.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Settings")]
pub struct AdminArgs {
    /// Database: `sqlite://path` (embedded, the default) or `postgres://…`.
    #[arg(
        long,
        env = "SWITCHBOARD_DATABASE_URL",
        default_value = "sqlite://data/switchboard.db",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Encryption keys `kid:key,…` (key = 64 hex chars or base64 of 32 bytes); the first seals.
    #[arg(
        long,
        env = "SWITCHBOARD_ENCRYPTION_KEYS",
        global = true,
        hide_env_values = true
    )]
    pub encryption_keys: Option<String>,
    /// Key file holding the encryption keys (created with mode 0600 in SQLite mode).
    #[arg(long, env = "SWITCHBOARD_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Which database to use.
    pub database: DatabaseTarget,
    /// Listen address.
    pub bind: SocketAddr,
    /// Public base URL, without a trailing slash.
    pub public_url: Url,
    /// Origins (`scheme://host[:port]`) allowed for CORS and `postMessage`.
    pub app_origins: Vec<String>,
    /// Client ID Metadata Document URL override.
    pub client_metadata_url: Option<Url>,
    /// Encryption keys given directly (never logged).
    pub encryption_keys: Option<crate::crypto::Secret>,
    /// Key file path.
    pub key_file: Option<PathBuf>,
    /// Whether outbound requests may reach private networks.
    pub allow_private_networks: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Health check interval (zero: off).
    pub health_interval: std::time::Duration,
    /// Health checks at the same time.
    pub health_concurrency: usize,
    /// Pool size.
    pub db_pool_size: usize,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Query depth limit.
    pub max_query_depth: usize,
    /// Query complexity limit.
    pub max_query_complexity: usize,
    /// Bearer token `/metrics` requires (never logged); `None` leaves it open.
    pub metrics_token: Option<crate::crypto::Secret>,
    /// Separate listen address for `/metrics`; `None` serves it on [`Config::bind`].
    pub metrics_bind: Option<SocketAddr>,
    /// Threads that run requests; `None`: one per CPU core.
    pub worker_threads: Option<usize>,
    /// Days audit events are kept; 0 keeps them all.
    pub audit_retention_days: u32,
    /// Most tool-change streams kept open; 0: none.
    pub catalogue_listeners: usize,
    /// How often the tool-change streams are brought in line with the servers.
    pub catalogue_listen_every: std::time::Duration,
    /// Outbound operations per GraphQL request (or WebSocket operation).
    pub outbound_per_request: u32,
    /// Per-user rate of outbound operations.
    pub user_outbound: RateLimit,
    /// Per-workspace rate of outbound operations.
    pub workspace_outbound: RateLimit,
    /// Most servers per workspace.
    pub max_servers_per_workspace: u32,
    /// Most tools per server.
    pub max_tools_per_server: u32,
    /// Largest tool listing per server, in bytes.
    pub max_catalogue_bytes: u64,
    /// WebSocket limits.
    pub websocket: WebSocketLimits,
    /// Trusted identity providers; empty: only API tokens authenticate.
    pub identity_providers: Vec<crate::domain::identity::Provider>,
}

/// Limits on GraphQL WebSockets (see `http::ws`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketLimits {
    /// Time allowed between the upgrade and `connection_init`.
    pub init_timeout: std::time::Duration,
    /// Longest life of a socket.
    pub max_lifetime: std::time::Duration,
    /// Sockets one user may hold open on this process.
    pub max_sockets_per_user: usize,
    /// Sockets open on this process, authenticated or not.
    pub max_sockets: usize,
    /// Operations open at once on one socket.
    pub max_subscriptions_per_socket: usize,
    /// Messages waiting to be sent on one socket before it counts as too slow.
    pub max_queued_messages: usize,
}

/// A setting with a bad value.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    /// The flag and environment variable.
    pub setting: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

impl ConfigArgs {
    /// Validate the raw settings.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let database = parse_database(&self.database_url)?;
        let bind: SocketAddr = self.bind.trim().parse().map_err(|_| {
            bad(
                "--bind / SWITCHBOARD_BIND",
                format!("{:?} is not an address like 127.0.0.1:8080", self.bind),
            )
        })?;
        let public_url = match &self.public_url {
            Some(raw) => parse_public_url(raw)?,
            None => parse_public_url(&format!("http://{bind}"))?,
        };
        let app_origins = match &self.app_origins {
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(parse_origin)
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let encryption_keys = parse_encryption_keys(self.encryption_keys.as_deref())?;
        let client_metadata_url = match &self.client_metadata_url {
            Some(raw) => {
                let url = Url::parse(raw.trim()).map_err(|e| {
                    bad(
                        "--client-metadata-url / SWITCHBOARD_CLIENT_METADATA_URL",
                        format!("{raw:?}: {e}"),
                    )
                })?;
                if url.scheme() != "https" || url.path().trim_matches('/').is_empty() {
                    return Err(bad(
                        "--client-metadata-url / SWITCHBOARD_CLIENT_METADATA_URL",
                        "must be an https URL with a path",
                    ));
                }
                Some(url)
            }
            None => None,
        };
        let metrics_token = self
            .metrics_token
            .as_deref()
            .map(parse_metrics_token)
            .transpose()?;
        let metrics_bind = match self.metrics_bind.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => {
                const SETTING: &str = "--metrics-bind / SWITCHBOARD_METRICS_BIND";
                let addr: SocketAddr = raw.parse().map_err(|_| {
                    bad(
                        SETTING,
                        format!("{raw:?} is not an address like 127.0.0.1:9090"),
                    )
                })?;
                if addr == bind && addr.port() != 0 {
                    return Err(bad(SETTING, "must differ from --bind / SWITCHBOARD_BIND"));
                }
                Some(addr)
            }
        };
        let identity_providers = match &self.identity_providers {
            Some(path) => parse_identity_providers(path)?,
            None => Vec::new(),
        };
        Ok(Config {
            identity_providers,
            database,
            client_metadata_url,
            bind,
            public_url,
            app_origins,
            encryption_keys,
            key_file: self.key_file.clone(),
            allow_private_networks: self.allow_private_networks,
            log_format: self.log_format,
            health_interval: std::time::Duration::from_secs(u64::from(self.health_interval_secs)),
            health_concurrency: usize::from(self.health_concurrency),
            db_pool_size: usize::from(self.db_pool_size),
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
            max_query_depth: usize::from(self.max_query_depth),
            max_query_complexity: usize::try_from(self.max_query_complexity).unwrap_or(usize::MAX),
            outbound_per_request: self.outbound_per_request,
            user_outbound: RateLimit {
                per_minute: self.user_outbound_per_minute,
                burst: self.user_outbound_burst,
            },
            workspace_outbound: RateLimit {
                per_minute: self.workspace_outbound_per_minute,
                burst: self.workspace_outbound_burst,
            },
            max_servers_per_workspace: self.max_servers_per_workspace,
            max_tools_per_server: self.max_tools_per_server,
            max_catalogue_bytes: self.max_catalogue_bytes,
            metrics_token,
            metrics_bind,
            worker_threads: self
                .worker_threads
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            audit_retention_days: self.audit_retention_days,
            catalogue_listeners: usize::try_from(self.catalogue_listeners).unwrap_or(usize::MAX),
            catalogue_listen_every: crate::domain::mcp::listen::RECONCILE_EVERY,
            websocket: WebSocketLimits {
                init_timeout: std::time::Duration::from_secs(u64::from(self.ws_init_timeout_secs)),
                max_lifetime: std::time::Duration::from_secs(u64::from(self.ws_max_lifetime_secs)),
                max_sockets_per_user: usize::try_from(self.ws_max_sockets_per_user)
                    .unwrap_or(usize::MAX),
                max_sockets: usize::try_from(self.ws_max_sockets).unwrap_or(usize::MAX),
                max_subscriptions_per_socket: usize::try_from(self.ws_max_subscriptions_per_socket)
                    .unwrap_or(usize::MAX),
                max_queued_messages: usize::try_from(self.ws_max_queued_messages)
                    .unwrap_or(usize::MAX),
            },
        })
    }
}

impl AdminArgs {
    /// Validate the settings: a [`Config`] with these and every other setting at its default.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut config = Config::defaults(parse_database(&self.database_url)?);
        config.encryption_keys = parse_encryption_keys(self.encryption_keys.as_deref())?;
        config.key_file = self.key_file.clone();
        Ok(config)
    }
}

fn parse_database(raw: &str) -> Result<DatabaseTarget, ConfigError> {
    DatabaseTarget::parse(raw).map_err(|m| bad("--database-url / SWITCHBOARD_DATABASE_URL", m))
}

/// The key list, checked; an empty value counts as none. The keys are never echoed.
fn parse_encryption_keys(raw: Option<&str>) -> Result<Option<crate::crypto::Secret>, ConfigError> {
    let Some(keys) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    crate::crypto::KeyRing::parse(keys).map_err(|e| {
        bad(
            "--encryption-keys / SWITCHBOARD_ENCRYPTION_KEYS",
            e.to_string(),
        )
    })?;
    Ok(Some(crate::crypto::Secret::new(keys)))
}

/// A metrics token: long enough not to be guessed, and sendable in a header as is. The value
/// is never echoed in the error.
fn parse_metrics_token(raw: &str) -> Result<crate::crypto::Secret, ConfigError> {
    const SETTING: &str = "--metrics-token / SWITCHBOARD_METRICS_TOKEN";
    let token = raw.trim();
    if !(16..=256).contains(&token.len()) {
        return Err(bad(SETTING, "must be 16 to 256 characters long"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            SETTING,
            "must be visible ASCII characters without spaces",
        ));
    }
    Ok(crate::crypto::Secret::new(token))
}

/// The identity providers file: read (at most 64 KiB) and checked, errors naming the
/// provider and the field.
fn parse_identity_providers(
    path: &std::path::Path,
) -> Result<Vec<crate::domain::identity::Provider>, ConfigError> {
    use crate::domain::identity::provider::MAX_FILE_BYTES;
    use std::io::Read as _;
    const SETTING: &str = "--identity-providers / SWITCHBOARD_IDENTITY_PROVIDERS";
    let file =
        std::fs::File::open(path).map_err(|e| bad(SETTING, format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(SETTING, format!("{}: {e}", path.display())))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(bad(
            SETTING,
            format!("{} is larger than {MAX_FILE_BYTES} bytes", path.display()),
        ));
    }
    crate::domain::identity::parse_providers(&text)
        .map_err(|e| bad(SETTING, format!("{} {e}", path.display())))
}

fn parse_public_url(raw: &str) -> Result<Url, ConfigError> {
    const SETTING: &str = "--public-url / SWITCHBOARD_PUBLIC_URL";
    let mut url = Url::parse(raw.trim()).map_err(|e| bad(SETTING, format!("{raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(SETTING, "must be an absolute http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad(
            SETTING,
            "must not carry a query, fragment or credentials",
        ));
    }
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

fn parse_origin(raw: &str) -> Result<String, ConfigError> {
    const SETTING: &str = "--app-origins / SWITCHBOARD_APP_ORIGINS";
    let url = Url::parse(raw).map_err(|e| bad(SETTING, format!("{raw:?}: {e}")))?;
    let origin = url.origin();
    if !origin.is_tuple() || !matches!(url.scheme(), "http" | "https") {
        return Err(bad(SETTING, format!("{raw:?} is not an http(s) origin")));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            SETTING,
            format!("{raw:?} must be an origin only, like https://app.example.com"),
        ));
    }
    Ok(origin.ascii_serialization())
}

impl Config {
    /// Every setting at its default, for `database`: the base that tests and embedders adjust
    /// field by field, so a new setting needs no change where configurations are assembled.
    #[expect(
        clippy::expect_used,
        reason = "the built-in defaults are valid, and the environment is not read; a unit test proves it"
    )]
    pub fn defaults(database: DatabaseTarget) -> Config {
        use clap::{Args as _, FromArgMatches as _};
        let command = ConfigArgs::augment_args(clap::Command::new("switchboard"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["switchboard"])
            .expect("no flags given");
        let mut config = ConfigArgs::from_arg_matches(&matches)
            .expect("defaults parse")
            .validate()
            .expect("defaults are valid");
        config.database = database;
        config
    }

    /// The key file to use: the configured one, else `switchboard.key` beside the SQLite file.
    pub fn key_file_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.key_file {
            return Some(path.clone());
        }
        match &self.database {
            DatabaseTarget::Sqlite(db) => {
                let dir = db.parent().map(PathBuf::from).unwrap_or_default();
                Some(dir.join("switchboard.key"))
            }
            DatabaseTarget::Postgres(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        args: ConfigArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["switchboard"];
        argv.extend_from_slice(args);
        let probe = Probe::try_parse_from(argv).map_err(|e| e.to_string())?;
        probe.args.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_need_no_flags_and_ignore_the_environment() {
        let config = Config::defaults(DatabaseTarget::Sqlite("x.db".into()));
        assert_eq!(config.database, DatabaseTarget::Sqlite("x.db".into()));
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn defaults_run_embedded() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(
            config.database,
            DatabaseTarget::Sqlite("data/switchboard.db".into())
        );
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            config.key_file_path(),
            Some(PathBuf::from("data/switchboard.key"))
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let error = parse(&["--bind", "nowhere"]).expect_err("bad bind");
        assert!(error.contains("SWITCHBOARD_BIND"), "{error}");
        let error = parse(&["--public-url", "ftp://x"]).expect_err("bad url");
        assert!(error.contains("SWITCHBOARD_PUBLIC_URL"), "{error}");
        let error = parse(&["--app-origins", "https://a.example/path"]).expect_err("bad origin");
        assert!(error.contains("SWITCHBOARD_APP_ORIGINS"), "{error}");
        let error = parse(&["--database-url", "mysql://x"]).expect_err("bad db");
        assert!(error.contains("SWITCHBOARD_DATABASE_URL"), "{error}");
        let error = parse(&["--encryption-keys", "k1:short"]).expect_err("bad key");
        assert!(error.contains("SWITCHBOARD_ENCRYPTION_KEYS"), "{error}");
        assert!(
            !error.contains("short"),
            "key material must not be echoed: {error}"
        );
        let error = parse(&["--allow-private-networks", "maybe"]).expect_err("bad bool");
        assert!(error.contains("allow-private-networks"), "{error}");
        for flag in [
            "--ws-init-timeout-secs",
            "--ws-max-lifetime-secs",
            "--ws-max-sockets-per-user",
            "--ws-max-sockets",
            "--ws-max-subscriptions-per-socket",
            "--ws-max-queued-messages",
        ] {
            let error = parse(&[flag, "0"]).expect_err("zero is refused");
            assert!(error.contains(flag), "{error}");
        }
        let error = parse(&["--ws-max-lifetime-secs", "59"]).expect_err("too short");
        assert!(error.contains("ws-max-lifetime-secs"), "{error}");
    }

    #[test]
    fn websocket_limits_default_and_parse() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(
            config.websocket,
            WebSocketLimits {
                init_timeout: std::time::Duration::from_secs(10),
                max_lifetime: std::time::Duration::from_secs(86_400),
                max_sockets_per_user: 100,
                max_sockets: 20_000,
                max_subscriptions_per_socket: 100,
                max_queued_messages: 1024,
            }
        );
        let config = parse(&[
            "--ws-init-timeout-secs",
            "3",
            "--ws-max-lifetime-secs",
            "3600",
            "--ws-max-sockets-per-user",
            "20000",
            "--ws-max-sockets",
            "50000",
            "--ws-max-subscriptions-per-socket",
            "5",
            "--ws-max-queued-messages",
            "8",
        ])
        .expect("valid");
        assert_eq!(config.websocket.init_timeout.as_secs(), 3);
        assert_eq!(config.websocket.max_lifetime.as_secs(), 3600);
        assert_eq!(config.websocket.max_sockets_per_user, 20_000);
        assert_eq!(config.websocket.max_sockets, 50_000);
        assert_eq!(config.websocket.max_subscriptions_per_socket, 5);
        assert_eq!(config.websocket.max_queued_messages, 8);
    }

    #[test]
    fn limits_have_defaults_and_a_zero_rate_turns_a_limit_off() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(config.outbound_per_request, 10);
        assert_eq!(
            config.user_outbound,
            RateLimit {
                per_minute: 120,
                burst: 30
            }
        );
        assert!(config.workspace_outbound.is_on());
        assert_eq!(config.max_servers_per_workspace, 200);
        assert_eq!(config.max_tools_per_server, 1000);
        assert_eq!(config.max_catalogue_bytes, 2 << 20);
        let config = parse(&["--user-outbound-per-minute", "0"]).expect("valid");
        assert!(!config.user_outbound.is_on());
        for (flag, value) in [
            ("--outbound-per-request", "0"),
            ("--user-outbound-burst", "0"),
            ("--workspace-outbound-per-minute", "2000000"),
            ("--max-servers-per-workspace", "0"),
            ("--max-tools-per-server", "many"),
            ("--max-catalogue-bytes", "10"),
        ] {
            let error = parse(&[flag, value]).expect_err("out of range");
            assert!(error.contains(flag), "{flag}: {error}");
        }
    }

    #[test]
    fn metrics_and_audit_settings() {
        let config = parse(&[]).expect("defaults are valid");
        assert!(config.metrics_token.is_none());
        assert_eq!(config.metrics_bind, None);
        assert_eq!(config.audit_retention_days, 365);
        assert_eq!(config.worker_threads, None);

        let config = parse(&[
            "--metrics-token",
            " scrape-token-0123456789 ",
            "--metrics-bind",
            "127.0.0.1:9090",
            "--audit-retention-days",
            "0",
        ])
        .expect("valid");
        assert_eq!(
            config.metrics_token.as_ref().map(|t| t.expose()),
            Some("scrape-token-0123456789")
        );
        assert_eq!(config.metrics_bind, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(config.audit_retention_days, 0);
        assert_eq!(
            parse(&["--worker-threads", "1"]).unwrap().worker_threads,
            Some(1)
        );
        for bad in ["0", "1025", "two"] {
            let error = parse(&["--worker-threads", bad]).expect_err("bad worker count");
            assert!(error.contains("worker-threads"), "{error}");
        }
        assert!(
            !format!("{config:?}").contains("scrape-token"),
            "never printed"
        );

        for bad_token in ["short", "has a space in it, long enough", &"x".repeat(257)] {
            let error = parse(&["--metrics-token", bad_token]).expect_err("bad token");
            assert!(error.contains("SWITCHBOARD_METRICS_TOKEN"), "{error}");
            assert!(!error.contains(bad_token), "not echoed: {error}");
        }
        let error = parse(&["--metrics-bind", "nowhere"]).expect_err("bad bind");
        assert!(error.contains("SWITCHBOARD_METRICS_BIND"), "{error}");
        let error = parse(&["--metrics-bind", "127.0.0.1:8080"]).expect_err("same as --bind");
        assert!(error.contains("SWITCHBOARD_METRICS_BIND"), "{error}");
        let error = parse(&["--audit-retention-days=-1"]).expect_err("negative");
        assert!(error.contains("audit-retention-days"), "{error}");
        let error = parse(&["--audit-retention-days", "36501"]).expect_err("too long");
        assert!(error.contains("audit-retention-days"), "{error}");
    }

    #[derive(Parser)]
    struct AdminProbe {
        #[command(flatten)]
        args: AdminArgs,
    }

    fn parse_admin(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["switchboard"];
        argv.extend_from_slice(args);
        let probe = AdminProbe::try_parse_from(argv).map_err(|e| e.to_string())?;
        probe.args.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn admin_settings_leave_the_rest_at_their_defaults() {
        let keys = format!("k1:{}", "ab".repeat(32));
        let config = parse_admin(&[
            "--database-url",
            "postgres://db.internal/switchboard",
            "--encryption-keys",
            &keys,
            "--key-file",
            "/etc/switchboard/keys",
        ])
        .expect("valid");
        assert_eq!(
            config.database,
            DatabaseTarget::Postgres("postgres://db.internal/switchboard".into())
        );
        assert_eq!(
            config.encryption_keys.as_ref().map(|k| k.expose()),
            Some(keys.as_str())
        );
        assert_eq!(
            config.key_file,
            Some(PathBuf::from("/etc/switchboard/keys"))
        );
        let defaults = Config::defaults(config.database.clone());
        assert_eq!(config.bind, defaults.bind);
        assert_eq!(config.db_pool_size, defaults.db_pool_size);
        assert_eq!(config.log_format, defaults.log_format);

        let config = parse_admin(&[]).expect("defaults are valid");
        assert_eq!(
            config.database,
            DatabaseTarget::Sqlite("data/switchboard.db".into())
        );
        assert!(config.encryption_keys.is_none());

        let error = parse_admin(&["--database-url", "mysql://x"]).expect_err("bad db");
        assert!(error.contains("SWITCHBOARD_DATABASE_URL"), "{error}");
        let error = parse_admin(&["--encryption-keys", "k1:short"]).expect_err("bad key");
        assert!(error.contains("SWITCHBOARD_ENCRYPTION_KEYS"), "{error}");
        assert!(!error.contains("short"), "not echoed: {error}");
        let error = parse_admin(&["--bind", "127.0.0.1:1"]).expect_err("not an admin setting");
        assert!(error.contains("--bind"), "{error}");
    }

    #[test]
    fn identity_providers_come_from_a_file_checked_at_start() {
        let config = parse(&[]).expect("defaults are valid");
        assert!(config.identity_providers.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("providers.json");
        std::fs::write(
            &path,
            r#"[{"issuer": "https://id.example.com", "audience": "switchboard"}]"#,
        )
        .unwrap();
        let config = parse(&["--identity-providers", path.to_str().unwrap()]).expect("valid");
        assert_eq!(config.identity_providers.len(), 1);
        assert_eq!(config.identity_providers[0].subject_claim, "sub");

        std::fs::write(&path, r#"[{"issuer": "https://id.example.com"}]"#).unwrap();
        let error = parse(&["--identity-providers", path.to_str().unwrap()]).expect_err("bad");
        assert!(error.contains("SWITCHBOARD_IDENTITY_PROVIDERS"), "{error}");
        assert!(error.contains("audience"), "{error}");
        let missing = dir.path().join("missing.json");
        let error =
            parse(&["--identity-providers", missing.to_str().unwrap()]).expect_err("no file");
        assert!(error.contains("SWITCHBOARD_IDENTITY_PROVIDERS"), "{error}");
        std::fs::write(&path, " ".repeat(70_000)).unwrap();
        let error = parse(&["--identity-providers", path.to_str().unwrap()]).expect_err("huge");
        assert!(error.contains("larger than"), "{error}");
    }

    #[test]
    fn origins_are_normalised() {
        let config = parse(&[
            "--app-origins",
            "https://App.Example.com, http://localhost:3000",
        ])
        .expect("valid");
        assert_eq!(
            config.app_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
    }
}
