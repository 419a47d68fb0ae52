//! The application state, built once at start-up and shared by the HTTP server, the GraphQL
//! schema, background tasks and the command line.
//!
//! Only the top layers (`graphql`, `http`, `cli`, `headless`) see [`App`]. The domain gets the
//! [`Context`] assembled here, with the settings it reads taken out of the [`Config`]; `App`
//! dereferences to it, so the top layers hand `&app` to domain functions as they are.

use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::crypto::{self, KeyRing};
use crate::db::{DatabaseTarget, Db, PoolOptions};
use crate::domain::limits::Limits;
use crate::domain::oauth::OauthState;
use crate::domain::status::EventBus;
use crate::domain::{Context, Settings};
use crate::mcp::SessionPool;
use crate::net::{ClientOptions, GuardedClient, NetPolicy};
use crate::supervisor::Supervisor;

/// Everything a request or task needs.
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// Background tasks and their liveness.
    pub tasks: Supervisor,
    /// What the domain works with.
    pub context: Context,
}

impl Deref for App {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.context
    }
}

/// Undelivered status events kept per slow subscriber.
const EVENT_CAPACITY: usize = 4096;

/// Shared handle to the [`App`].
pub type AppHandle = Arc<App>;

/// How often grants about to expire are refreshed in the background, and how far ahead.
const REFRESH_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
const REFRESH_SWEEP_AHEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(120);
/// How often idle MCP sessions are ended.
const SESSION_REAPER_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// How often expired OAuth flows are swept.
const FLOW_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Start the background tasks under the app's supervisor: the token refresh sweep, the sweep
/// of expired flows, the reaper of idle MCP sessions and, unless turned off, the audit purge,
/// the listener of servers' tool changes and health checks. They stop with
/// [`App::stop_background_tasks`].
pub fn start_background_tasks(app: &AppHandle) {
    let tasks = &app.tasks;
    // Refresh grants shortly before they expire, so tool calls rarely wait for a refresh.
    let handle = app.clone();
    tasks.spawn(
        "refresh_sweep",
        || REFRESH_SWEEP_EVERY,
        move || {
            let app = handle.clone();
            async move {
                crate::domain::oauth::tokens::refresh_expiring(&app, REFRESH_SWEEP_AHEAD)
                    .await
                    .map(drop)
            }
        },
    );
    let handle = app.clone();
    tasks.spawn(
        "flow_sweep",
        || FLOW_SWEEP_EVERY,
        move || {
            let app = handle.clone();
            async move {
                crate::domain::oauth::flow::sweep_expired(&app)
                    .await
                    .map(drop)
            }
        },
    );
    // Kept MCP sessions unused for a while are ended, so none holds its connection long.
    let handle = app.clone();
    tasks.spawn(
        "session_reaper",
        || SESSION_REAPER_EVERY,
        move || {
            let app = handle.clone();
            async move {
                app.sessions.reap_idle(crate::mcp::pool::IDLE_TIMEOUT);
                Ok::<(), std::convert::Infallible>(())
            }
        },
    );
    let retention_days = app.config.audit_retention_days;
    if retention_days > 0 {
        let handle = app.clone();
        let first = std::sync::atomic::AtomicBool::new(true);
        tasks.spawn(
            "audit_purge",
            move || {
                crate::domain::audit::pause(first.swap(false, std::sync::atomic::Ordering::Relaxed))
            },
            move || {
                let app = handle.clone();
                async move { crate::domain::audit::purge(&app, retention_days).await }
            },
        );
    }
    // The console's sign-in endpoints are read from start-up on and kept fresh, so the page
    // never waits for an identity provider.
    if app.identity.offers_console_sign_in() {
        let handle = app.clone();
        let first = std::sync::atomic::AtomicBool::new(true);
        tasks.spawn(
            "console_identity_warm",
            move || {
                if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    std::time::Duration::ZERO
                } else {
                    crate::domain::identity::CONSOLE_WARM_EVERY
                }
            },
            move || {
                let app = handle.clone();
                async move {
                    app.identity.warm_console_providers(&app.http).await;
                    Ok::<(), std::convert::Infallible>(())
                }
            },
        );
    }
    // Stateless servers that say their tools changed are listed again at once.
    let listeners = app.config.catalogue_listeners;
    if listeners > 0 {
        let handle = app.clone();
        let every = app.config.catalogue_listen_every;
        tasks.spawn_service("catalogue_listener", move || {
            crate::domain::mcp::listen::run(handle.clone(), listeners, every)
        });
    }
    let interval = app.config.health_interval;
    if !interval.is_zero() {
        let concurrency = app.config.health_concurrency;
        let handle = app.clone();
        tasks.spawn(
            "health_checks",
            move || crate::domain::health::pause(interval),
            move || {
                let app = handle.clone();
                async move {
                    crate::domain::health::run_round(&app, interval, concurrency)
                        .await
                        .map(drop)
                }
            },
        );
    }
}

impl crate::domain::mcp::listen::Handle for AppHandle {
    fn context(&self) -> &Context {
        self
    }
}

impl App {
    /// Stop the background tasks (they hold handles to the app, so this also lets it go).
    pub fn stop_background_tasks(&self) {
        self.tasks.stop();
    }

    /// Build the app: open the pool and assemble the parts. Does not migrate. On PostgreSQL this
    /// also starts relaying status events to and from the other replicas.
    pub async fn build(config: Config, keys: KeyRing) -> anyhow::Result<AppHandle> {
        let db = Db::connect(
            &config.database,
            &PoolOptions {
                max_size: config.db_pool_size,
                ..PoolOptions::default()
            },
        )
        .await
        .context("opening the database")?;
        let http = GuardedClient::new(
            NetPolicy {
                allow_private_networks: config.allow_private_networks,
            },
            ClientOptions::default(),
        )
        .context("building the outbound HTTP client")?;
        let tasks = Supervisor::default();
        // Replicas share one PostgreSQL, so their subscribers must hear each other's events;
        // a SQLite database has exactly one process.
        let events = match &config.database {
            DatabaseTarget::Postgres(url) => EventBus::replicated(EVENT_CAPACITY, url, &tasks)
                .await
                .context("relaying status events between replicas")?,
            DatabaseTarget::Sqlite(_) => EventBus::new(EVENT_CAPACITY),
        };
        for provider in &config.identity_providers {
            tracing::info!(issuer = %provider.issuer, audience = %provider.audience, "trusting the tokens of an identity provider");
        }
        let settings = settings(&config);
        let context = Context {
            db,
            keys,
            http,
            events,
            sessions: SessionPool::default(),
            oauth: OauthState::default(),
            metrics: Arc::default(),
            limits: Limits::new(&settings),
            settings,
            principals: Default::default(),
            identity: crate::domain::identity::IdentityState::new(
                config.identity_providers.clone(),
            ),
        };
        // Other replicas' access changes reach this process's principal cache through the
        // relay; a restarted follower starts from an empty cache.
        let (principals, changes) = (context.principals.clone(), context.events.clone());
        tasks.spawn_service("principal_cache", move || {
            let principals = principals.clone();
            let receiver = changes.subscribe_access();
            async move { crate::domain::access::follow_changes(&principals, receiver).await }
        });
        Ok(Arc::new(App {
            config,
            tasks,
            context,
        }))
    }
}

/// The settings the domain reads, out of the whole configuration.
fn settings(config: &Config) -> Settings {
    Settings {
        public_url: config.public_url.clone(),
        client_metadata_url: config.client_metadata_url.clone(),
        allow_private_networks: config.allow_private_networks,
        outbound_per_request: config.outbound_per_request,
        user_outbound: config.user_outbound,
        workspace_outbound: config.workspace_outbound,
        max_servers_per_workspace: config.max_servers_per_workspace,
        max_tools_per_server: config.max_tools_per_server,
        max_catalogue_bytes: config.max_catalogue_bytes,
    }
}

/// The key ring the configuration asks for: keys given directly, else the key file (created
/// on first start when the database is SQLite). PostgreSQL deployments must provide keys, so
/// that every replica shares them.
pub fn load_keys(config: &Config) -> anyhow::Result<KeyRing> {
    if let Some(spec) = &config.encryption_keys {
        return KeyRing::parse(spec.expose())
            .context("invalid setting --encryption-keys / SWITCHBOARD_ENCRYPTION_KEYS");
    }
    let create = !config.database.is_postgres();
    let Some(path) = config.key_file_path() else {
        anyhow::bail!(
            "PostgreSQL mode needs encryption keys shared by every replica: set \
             SWITCHBOARD_ENCRYPTION_KEYS or SWITCHBOARD_KEY_FILE"
        );
    };
    crypto::load_or_create_key_file(&path, create)
        .with_context(|| format!("loading key file {}", path.display()))
}
