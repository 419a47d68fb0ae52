//! Server status: the connection and authorization states, and the bus that publishes every
//! change.
//!
//! A status is the triple (connection status, auth status, reason). Every change is written
//! with the server row and published once, after the transaction commits, as a
//! [`StatusEvent`]. Subscribers filter by workspace, so an event never reaches another
//! workspace's dashboards.

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::models::McpServerRow;
use crate::db::{self, DbConn, DbError, DbTime};

/// Whether Switchboard can currently talk to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// Last contact succeeded.
    Connected,
    /// Not connected yet, or reset by a change.
    Disconnected,
    /// Repeated failures.
    Error,
}

/// Where the server's authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthStatus {
    /// The server needs no OAuth.
    NotRequired,
    /// A usable grant is stored.
    Authorized,
    /// Someone must run the OAuth flow.
    AuthorizationRequired,
    /// A flow is in progress.
    Authorizing,
    /// The last refresh failed for a reason other than a rejected grant.
    RefreshFailed,
    /// The server asked for more scopes than were granted.
    InsufficientScope,
}

impl ConnectionStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Disconnected => "disconnected",
            ConnectionStatus::Error => "error",
        }
    }

    /// Parse the stored form; unknown text reads as `Disconnected`.
    pub fn parse(text: &str) -> ConnectionStatus {
        match text {
            "connected" => ConnectionStatus::Connected,
            "error" => ConnectionStatus::Error,
            _ => ConnectionStatus::Disconnected,
        }
    }
}

impl AuthStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStatus::NotRequired => "not_required",
            AuthStatus::Authorized => "authorized",
            AuthStatus::AuthorizationRequired => "authorization_required",
            AuthStatus::Authorizing => "authorizing",
            AuthStatus::RefreshFailed => "refresh_failed",
            AuthStatus::InsufficientScope => "insufficient_scope",
        }
    }

    /// Parse the stored form; unknown text reads as `AuthorizationRequired`.
    pub fn parse(text: &str) -> AuthStatus {
        match text {
            "not_required" => AuthStatus::NotRequired,
            "authorized" => AuthStatus::Authorized,
            "authorizing" => AuthStatus::Authorizing,
            "refresh_failed" => AuthStatus::RefreshFailed,
            "insufficient_scope" => AuthStatus::InsufficientScope,
            _ => AuthStatus::AuthorizationRequired,
        }
    }
}

/// The status of a server at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Connection state.
    pub connection: ConnectionStatus,
    /// Authorization state.
    pub auth: AuthStatus,
    /// Machine-readable reason of the last change.
    pub reason: Option<String>,
}

impl Status {
    /// The status stored on a row.
    pub fn of(row: &McpServerRow) -> Status {
        Status {
            connection: ConnectionStatus::parse(&row.connection_status),
            auth: AuthStatus::parse(&row.auth_status),
            reason: row.status_reason.clone(),
        }
    }

    /// Write this status onto a row.
    pub fn apply_to(&self, row: &mut McpServerRow) {
        row.connection_status = self.connection.as_str().to_owned();
        row.auth_status = self.auth.as_str().to_owned();
        row.status_reason = self.reason.clone();
    }

    /// The status of a server that has not been contacted yet: OAuth servers need
    /// authorization, the others need nothing.
    pub fn initial(oauth: bool, reason: &str) -> Status {
        Status {
            connection: ConnectionStatus::Disconnected,
            auth: if oauth {
                AuthStatus::AuthorizationRequired
            } else {
                AuthStatus::NotRequired
            },
            reason: Some(reason.to_owned()),
        }
    }
}

/// One status change, as published to subscribers.
#[derive(Clone, Debug)]
pub struct StatusEvent {
    /// Workspace of the server (subscribers are filtered on it).
    pub workspace_id: Uuid,
    /// Server.
    pub server_id: Uuid,
    /// Status before the change (`None` when the server was just created).
    pub previous: Option<Status>,
    /// Status after the change.
    pub current: Status,
    /// When it changed.
    pub at: DateTime<Utc>,
}

/// In-process fan-out of status events.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<StatusEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(4096)
    }
}

impl EventBus {
    /// A bus that keeps up to `capacity` undelivered events per slow subscriber.
    pub fn new(capacity: usize) -> EventBus {
        let (sender, _) = broadcast::channel(capacity);
        EventBus { sender }
    }

    /// Publish one event (call after the change committed). No subscribers is not an error.
    pub fn publish(&self, event: StatusEvent) {
        let _ = self.sender.send(event);
    }

    /// A new subscription, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.sender.subscribe()
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// The event for a change from `previous` to the status now on `row`, or `None` when nothing
/// changed.
pub fn change_event(previous: Option<&Status>, row: &McpServerRow) -> Option<StatusEvent> {
    let current = Status::of(row);
    if previous == Some(&current) {
        return None;
    }
    Some(StatusEvent {
        workspace_id: row.workspace_id.0,
        server_id: row.id.0,
        previous: previous.cloned(),
        current,
        at: row.updated_at.0,
    })
}

/// Change a server's stored status with `change` and return the event to publish after the
/// caller's transaction commits (`None` when nothing visible changed or the server is gone).
pub async fn record(
    conn: &mut DbConn,
    server_id: Uuid,
    change: impl FnOnce(&mut McpServerRow),
) -> Result<Option<StatusEvent>, DbError> {
    let Some(mut row) = db::servers::find(conn, server_id).await? else {
        return Ok(None);
    };
    let previous = Status::of(&row);
    let before = row.clone();
    change(&mut row);
    if row == before {
        return Ok(None);
    }
    row.updated_at = DbTime(db::now());
    db::servers::save(conn, &row).await?;
    Ok(change_event(Some(&previous), &row))
}

/// A grant is usable: authorized (the reason changes only when the status does).
pub fn mark_authorized(row: &mut McpServerRow, reason: &str) {
    if row.auth_status != AuthStatus::Authorized.as_str() {
        row.auth_status = AuthStatus::Authorized.as_str().to_owned();
        row.status_reason = Some(reason.to_owned());
    }
}

/// The grant is gone or rejected: someone must authorize again.
pub fn mark_needs_authorization(row: &mut McpServerRow, reason: &str) {
    row.auth_status = AuthStatus::AuthorizationRequired.as_str().to_owned();
    row.connection_status = ConnectionStatus::Disconnected.as_str().to_owned();
    row.status_reason = Some(reason.to_owned());
}

/// A refresh failed for a transient reason; the tokens are kept.
pub fn mark_refresh_failed(row: &mut McpServerRow) {
    row.auth_status = AuthStatus::RefreshFailed.as_str().to_owned();
    row.status_reason = Some("refresh_failed".to_owned());
}
