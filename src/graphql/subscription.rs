//! Subscription root: live server status for dashboards.

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ErrorExtensions as _, ID, Object, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::error::{Result, parse_id, principal};
use super::loaders::{ServerLoader, load_error};
use super::types::{McpServer, McpServerStatus, McpStatusReason};
use crate::app::AppHandle;
use crate::domain::access::Role;
use crate::domain::status::StatusEvent;

/// One status change of a server.
pub struct McpServerStatusEvent(StatusEvent);

#[Object]
impl McpServerStatusEvent {
    /// The server's id.
    async fn server_id(&self) -> ID {
        ID(self.0.server_id.to_string())
    }
    /// The server as it is now (null if it was deleted since).
    async fn server(&self, ctx: &Context<'_>) -> Result<Option<McpServer>> {
        Ok(ctx
            .data_unchecked::<DataLoader<ServerLoader>>()
            .load_one(self.0.server_id)
            .await
            .map_err(load_error)?
            .filter(|row| row.workspace_id.0 == self.0.workspace_id)
            .map(McpServer::single))
    }
    /// Status before the change (null for a new server, and for a change of the subscriber's
    /// own grant).
    async fn previous(&self) -> Option<McpServerStatus> {
        self.0.previous.map(Into::into)
    }
    /// Status after the change.
    async fn current(&self) -> McpServerStatus {
        self.0.current.into()
    }
    /// Reason of the change.
    async fn reason(&self) -> Option<McpStatusReason> {
        self.0.current.reason.map(Into::into)
    }
    /// When it changed.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// Whether the event is about the subscriber's own grant on a per-user server (only they
    /// receive it; `current` is the server as they can use it). Otherwise it is about the
    /// server everyone shares.
    async fn personal(&self) -> bool {
        self.0.user_id.is_some()
    }
}

/// Subscriptions.
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Status changes of a workspace's servers (members only), optionally of one server.
    /// Events start from the moment of subscribing; read the current state with a query.
    /// Deleting a server sends a last event with reason `DELETED` and a null `server`. Over
    /// WebSocket, removing the subscriber from the workspace or revoking their token closes the
    /// connection (close code 4403), so no event reaches them afterwards. A subscription that
    /// fell behind gets an error with code `EVENTS_MISSED` (read the state again) and goes on.
    async fn mcp_server_status(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        server_id: Option<ID>,
    ) -> Result<impl Stream<Item = async_graphql::Result<McpServerStatusEvent>> + use<>> {
        let principal = principal(ctx)?;
        let workspace_id = parse_id("workspaceId", &workspace_id)?;
        let server_id = server_id.map(|id| parse_id("serverId", &id)).transpose()?;
        principal.require(workspace_id, Role::Viewer)?;
        let user_id = principal.user_id;
        let app = ctx.data_unchecked::<AppHandle>();
        let receiver = app.events.subscribe();
        // Counted as open while the stream lives, unless the transport counts its subscribers
        // itself (one stream may then serve many).
        let open = ctx
            .data_opt::<SubscribersCounted>()
            .is_none()
            .then(|| app.metrics.subscription_opened());
        let metrics = app.metrics.clone();
        Ok(futures_util::stream::unfold(
            (receiver, open),
            move |(mut receiver, open)| {
                let metrics = metrics.clone();
                async move {
                    loop {
                        match receiver.recv().await {
                            Ok(event)
                                if wanted(&event, workspace_id, server_id)
                                    && event.visible_to(user_id) =>
                            {
                                return Some((Ok(McpServerStatusEvent(event)), (receiver, open)));
                            }
                            Ok(_) => {}
                            Err(RecvError::Lagged(missed)) => {
                                tracing::warn!(
                                    missed,
                                    "a status subscription fell behind; its subscribers are told"
                                );
                                metrics.subscription_events_missed(missed);
                                return Some((Err(events_missed(missed)), (receiver, open)));
                            }
                            Err(RecvError::Closed) => return None,
                        }
                    }
                }
            },
        ))
    }
}

/// Request data of a transport that counts each subscriber itself, because one execution of a
/// subscription may serve several of them: the stream is then not counted on its own.
pub struct SubscribersCounted;

/// What a subscription sends when it fell behind the event bus: an error (code
/// `EVENTS_MISSED`) saying how many events were lost, so the client reads the current state
/// again. The subscription carries on.
fn events_missed(missed: u64) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "{missed} status events were missed: read the current state with a query"
    ))
    .extend_with(|_, extensions| extensions.set("code", "EVENTS_MISSED"))
}

fn wanted(event: &StatusEvent, workspace_id: Uuid, server_id: Option<Uuid>) -> bool {
    event.workspace_id == workspace_id && server_id.is_none_or(|id| id == event.server_id)
}
