//! Server status: the connection and authorization states, and the events that publish every
//! change.
//!
//! A status is the triple (connection status, auth status, reason). Every change is written
//! with the server row and published once, after the transaction commits, as a
//! [`StatusEvent`]. Subscribers filter by workspace, so an event never reaches another
//! workspace's dashboards; events from other replicas carry their workspace like local ones.
//!
//! The [`EventBus`] (the event relay of [`crate::events`], carrying these payloads) also carries
//! [`AccessEvent`]s (a revoked token, a removed member, a changed role) to the subscribers that
//! hold sessions open, as [`AccessSignal`](super::access::AccessSignal)s on a stream of their
//! own, and relays both between replicas on PostgreSQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Context;
use super::access::AccessEvent;
use crate::db::models::McpServerRow;
use crate::db::{self, DbConn, DbError, DbTime};
use crate::events;

/// Whether Switchboard can currently talk to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Last contact succeeded.
    Connected,
    /// Not connected yet, or reset by a change.
    Disconnected,
    /// Repeated failures.
    Error,
}

/// Where the server's authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// One status change, as published to subscribers (and, between replicas, as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The bus that publishes status changes and access changes, to this process's subscribers and
/// to the other replicas'.
pub type EventBus = events::Bus<StatusEvent, AccessEvent>;

/// Reasons are short codes; one longer than this is cut when an event would not fit a
/// notification to other replicas.
const MAX_SHARED_REASON_BYTES: usize = 256;

impl events::Event for StatusEvent {
    fn shrink(&mut self) {
        shorten(&mut self.current.reason);
        if let Some(previous) = &mut self.previous {
            shorten(&mut previous.reason);
        }
    }

    fn warn_unshared(&self, reason: &str) {
        tracing::warn!(
            mcp_server.id = %self.server_id,
            %reason,
            "a status event cannot be shared with other replicas"
        );
    }
}

impl events::Event for AccessEvent {
    fn warn_unshared(&self, reason: &str) {
        tracing::warn!(
            user.id = %self.user_id(),
            %reason,
            "an access change cannot be shared with other replicas"
        );
    }
}

fn shorten(reason: &mut Option<String>) {
    if let Some(reason) = reason {
        let mut end = reason.len().min(MAX_SHARED_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
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

/// Change a server's status outside any other transaction, publish the change, and log a
/// storage failure once (status bookkeeping never fails the operation that caused it).
pub async fn update(ctx: &Context, server_id: Uuid, change: impl FnOnce(&mut McpServerRow)) {
    let recorded = async {
        let mut conn = ctx.db.conn().await?;
        record(&mut conn, server_id, change).await
    }
    .await;
    match recorded {
        Ok(Some(event)) => ctx.events.publish(event),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot record a status change")
        }
    }
}

/// How many servers are in each (connection status, auth status) pair, for metrics.
pub async fn counts(ctx: &Context) -> Result<Vec<(String, String, i64)>, DbError> {
    let mut conn = ctx.db.conn().await?;
    db::servers::status_counts(&mut conn).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Envelope, MAX_PAYLOAD_BYTES, Shared, encode};

    /// What replicas send each other.
    type Wire = Envelope<StatusEvent, AccessEvent>;

    fn event(reason: &str) -> StatusEvent {
        StatusEvent {
            workspace_id: Uuid::new_v4(),
            server_id: Uuid::new_v4(),
            previous: Some(Status::initial(false, "created")),
            current: Status {
                connection: ConnectionStatus::Disconnected,
                auth: AuthStatus::AuthorizationRequired,
                reason: Some(reason.to_owned()),
            },
            at: db::now(),
        }
    }

    #[test]
    fn the_wire_form_carries_the_workspace_and_stored_status_names() {
        let event = event("auth_type_changed");
        let origin = Uuid::new_v4();
        let payload = encode(origin, 7, Shared::<_, AccessEvent>::Status(event.clone())).unwrap();
        let wire: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(wire["origin"], origin.to_string());
        assert_eq!(wire["seq"], 7);
        assert_eq!(
            wire["event"]["workspace_id"],
            event.workspace_id.to_string()
        );
        assert_eq!(wire["event"]["current"]["auth"], "authorization_required");
        assert_eq!(wire["event"]["previous"]["auth"], "not_required");
        let back: Wire = serde_json::from_str(&payload).unwrap();
        assert_eq!(back.shared, Shared::Status(event));

        let mut without_workspace = wire.clone();
        without_workspace["event"]
            .as_object_mut()
            .unwrap()
            .remove("workspace_id");
        assert!(serde_json::from_value::<Wire>(without_workspace).is_err());
    }

    #[test]
    fn over_long_reasons_are_cut_to_fit_a_notification() {
        let long = "é".repeat(MAX_PAYLOAD_BYTES);
        let payload = encode(
            Uuid::new_v4(),
            1,
            Shared::<_, AccessEvent>::Status(event(&long)),
        )
        .unwrap();
        assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        let back: Wire = serde_json::from_str(&payload).unwrap();
        let Shared::Status(back) = back.shared else {
            panic!("a status event");
        };
        let reason = back.current.reason.unwrap();
        assert!(reason.len() <= MAX_SHARED_REASON_BYTES && long.starts_with(&reason));
    }

    #[test]
    fn access_changes_travel_under_their_own_key() {
        let event = AccessEvent::RoleChanged {
            workspace_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            role: crate::domain::access::Role::Viewer,
        };
        let payload = encode(
            Uuid::new_v4(),
            3,
            Shared::<StatusEvent, _>::Access(event.clone()),
        )
        .unwrap();
        let wire: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(wire["access"]["kind"], "role_changed");
        assert_eq!(wire["access"]["role"], "viewer");
        assert!(wire.get("event").is_none());
        let back: Wire = serde_json::from_str(&payload).unwrap();
        assert_eq!(back.shared, Shared::Access(event));
    }

    #[tokio::test]
    async fn access_changes_reach_local_access_subscribers_only() {
        let bus = EventBus::default();
        let mut status = bus.subscribe();
        let mut access = bus.subscribe_access();
        let revoked = AccessEvent::TokenRevoked {
            user_id: Uuid::new_v4(),
            token_id: Uuid::new_v4(),
        };
        bus.publish_access(revoked.clone());
        assert_eq!(
            access.recv().await.unwrap(),
            crate::domain::access::AccessSignal::Changed(revoked)
        );
        assert!(status.try_recv().is_err());
        let changed = event("one");
        bus.publish(changed.clone());
        assert_eq!(status.recv().await.unwrap(), changed);
        assert!(access.try_recv().is_err());
    }
}
