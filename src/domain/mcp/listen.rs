//! Live catalogues: one `subscriptions/listen` stream per stateless server, so a server that
//! says its tools changed is listed again at once, and its subscribers hear of it (status
//! reason `TOOLS_CHANGED`).
//!
//! One process listens: on SQLite the only one, on PostgreSQL the replica that holds an
//! advisory lock on a connection kept for the purpose (another takes over when that connection
//! goes). Every [`RECONCILE_EVERY`] the listener compares the streams it runs with the servers
//! that qualify ([`crate::db::servers::listenable`]: enabled, stateless, reached with the
//! workspace's credentials), starts the missing ones and stops the others.
//!
//! Invariants:
//! - At most `max` streams, the cap of the configuration.
//! - A stream that fails or ends is opened again after a backoff that doubles up to
//!   [`MAX_BACKOFF`] (with jitter); one that ran for a while starts again quickly.
//! - A server saying its tools changed is listed at most once per [`MIN_RELIST_GAP`]: changes
//!   arriving meanwhile are folded into the next listing, so a chatty server cannot make
//!   Switchboard list it in a loop.
//! - Per-user servers are never listened to: nothing acts as a member in the background.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use tokio::task::{AbortHandle, JoinSet};
use uuid::Uuid;

use super::catalogue;
use crate::db;
use crate::db::listener::ListenerLock;
use crate::domain::lifecycle::Event;
use crate::domain::oauth::Holder;
use crate::domain::servers;
use crate::domain::{Context, Result};

/// A handle on the context that tasks can own (the application's).
pub trait Handle: Clone + Send + Sync + 'static {
    /// The context it holds.
    fn context(&self) -> &Context;
}

/// How often the set of streams is brought in line with the servers.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Longest wait before a failed stream is opened again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Shortest time between two listings caused by change notifications of one server.
pub const MIN_RELIST_GAP: Duration = Duration::from_secs(2);

/// A stream that stayed open this long was healthy: the next failure starts the backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Run the listener: every `every`, lead if possible and keep at most `max` streams. Returns
/// only when the task is stopped.
pub async fn run(app: impl Handle, max: usize, every: Duration) {
    // The tasks end with this one: a join set aborts what it holds when dropped.
    let mut streams = Streams::default();
    let mut lock: Option<ListenerLock> = None;
    loop {
        match reconcile(&app, max, &mut lock, &mut streams).await {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(%error, "listening to servers' tool changes failed; retrying");
                // Without a working lock connection this process may no longer lead.
                lock = None;
                streams.stop_all();
            }
        }
        tokio::time::sleep(every).await;
    }
}

async fn reconcile(
    app: &impl Handle,
    max: usize,
    lock: &mut Option<ListenerLock>,
    streams: &mut Streams,
) -> Result<()> {
    let ctx = app.context();
    match lock {
        // A broken lock connection (and so a lost lock) shows here.
        Some(held) => held.check().await?,
        None => match ListenerLock::try_acquire(&ctx.db).await? {
            Some(acquired) => {
                tracing::info!("this process listens to servers' tool changes");
                *lock = Some(acquired);
            }
            None => {
                // Another replica listens.
                streams.stop_all();
                return Ok(());
            }
        },
    }
    let wanted = {
        let mut conn = ctx.db.conn().await?;
        db::servers::listenable(
            &mut conn,
            crate::mcp::STATELESS_REVISION,
            i64::try_from(max).unwrap_or(i64::MAX),
        )
        .await?
    };
    streams.keep_only(app, &wanted);
    Ok(())
}

/// The running streams, by server.
#[derive(Default)]
struct Streams {
    tasks: JoinSet<()>,
    by_server: HashMap<Uuid, AbortHandle>,
}

impl Streams {
    /// Run exactly the streams of `wanted`.
    fn keep_only(&mut self, app: &impl Handle, wanted: &[Uuid]) {
        while self.tasks.try_join_next().is_some() {}
        self.by_server.retain(|id, task| {
            let keep = wanted.contains(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for &id in wanted {
            if !self.by_server.contains_key(&id) {
                let app = app.clone();
                let task = self
                    .tasks
                    .spawn(async move { listen_to(app.context(), id).await });
                self.by_server.insert(id, task);
            }
        }
    }

    fn stop_all(&mut self) {
        self.by_server.clear();
        self.tasks.abort_all();
    }
}

/// Keep one server's stream open, for as long as the task runs.
async fn listen_to(app: &Context, server_id: Uuid) {
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    loop {
        let opened = Instant::now();
        match listen_once(app, server_id, !first).await {
            Ok(()) => tracing::debug!(mcp_server.id = %server_id, "the tool change stream ended"),
            Err(error) => {
                tracing::debug!(mcp_server.id = %server_id, %error, "the tool change stream failed")
            }
        }
        first = false;
        if opened.elapsed() >= HEALTHY_AFTER {
            backoff = Duration::from_secs(1);
        }
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Open a session and a stream, and list the server again on every change until the stream
/// ends. After a reconnection (`catch_up`) the server is listed once first, since changes may
/// have gone unheard.
async fn listen_once(app: &Context, server_id: Uuid, catch_up: bool) -> Result<()> {
    let server = servers::load(app, server_id).await?;
    let (session, _) = catalogue::connect(app, &server, Holder::Workspace).await?;
    let mut changes = session
        .listen_tools()
        .await
        .map_err(|e| catalogue::mcp_error(&server, e))?;
    if catch_up {
        relist(app, server_id).await;
    }
    let failed = |e| catalogue::mcp_error(&server, e);
    let mut last = None::<Instant>;
    let mut open = changes.changed().await.map_err(failed)?;
    while open {
        if let Some(gap) = last.map(|at| MIN_RELIST_GAP.saturating_sub(at.elapsed())) {
            tokio::time::sleep(gap).await;
        }
        // Changes that arrived meanwhile are covered by the one listing.
        loop {
            match tokio::time::timeout(Duration::ZERO, changes.changed()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    open = false;
                    break;
                }
                Ok(Err(error)) => return Err(failed(error)),
                Err(_) => break,
            }
        }
        last = Some(Instant::now());
        relist(app, server_id).await;
        if open {
            open = changes.changed().await.map_err(failed)?;
        }
    }
    session.close().await;
    Ok(())
}

/// List a server again after it said its tools changed; a failure is recorded in its status
/// by the listing itself.
async fn relist(app: &Context, server_id: Uuid) {
    let listed = async {
        let server = servers::load(app, server_id).await?;
        catalogue::refresh_as(app, &server, Holder::Workspace, Event::ToolsChanged).await
    }
    .await;
    match listed {
        Ok(tools) => tracing::info!(
            mcp_server.id = %server_id,
            tools,
            "the MCP server's tools changed; listed again"
        ),
        Err(error) => tracing::info!(
            mcp_server.id = %server_id,
            %error,
            "listing a server after its tools changed failed"
        ),
    }
}
