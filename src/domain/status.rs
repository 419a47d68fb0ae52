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
use super::lifecycle::{self, Event, Facts, State};
use super::oauth::Holder;
use crate::db::models::McpServerRow;
use crate::db::{self, DbConn, DbError, DbTime};
use crate::events;

use crate::db::types::AuthType;
pub use crate::db::types::{AuthStatus, ConnectionStatus, StatusReason};

/// The status of a server at one moment, as dashboards see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Connection state.
    pub connection: ConnectionStatus,
    /// Authorization state.
    pub auth: AuthStatus,
    /// Why it last changed.
    pub reason: Option<StatusReason>,
}

impl Status {
    /// The status stored on a row.
    pub fn of(row: &McpServerRow) -> Status {
        Status {
            connection: row.connection_status,
            auth: row.auth_status,
            reason: row.status_reason,
        }
    }
}

impl From<State> for Status {
    fn from(state: State) -> Status {
        Status {
            connection: state.connection,
            auth: state.auth,
            reason: state.reason,
        }
    }
}

/// The state of a row, as the transition function sees it.
pub fn state_of(row: &McpServerRow) -> State {
    State {
        connection: row.connection_status,
        auth: row.auth_status,
        reason: row.status_reason,
        failures: row.consecutive_failures,
    }
}

/// What the transition needs to know about a server besides its status.
pub async fn facts(conn: &mut DbConn, row: &McpServerRow) -> Result<Facts, DbError> {
    let has_tokens =
        row.auth_type == AuthType::Oauth && db::oauth::has_tokens(conn, row.id.0).await?;
    Ok(Facts {
        auth_type: row.auth_type,
        has_tokens,
    })
}

/// Write a state onto a row.
pub fn apply(row: &mut McpServerRow, state: State) {
    row.connection_status = state.connection;
    row.auth_status = state.auth;
    row.status_reason = state.reason;
    row.consecutive_failures = state.failures;
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
    /// The user whose own grant changed, on a per-user server: the event reaches that user's
    /// subscriptions alone, and the server's row (the shared connection) did not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
}

impl StatusEvent {
    /// Whether a subscriber signed in as `user_id` may see this event.
    pub fn visible_to(&self, user_id: Uuid) -> bool {
        self.user_id.is_none_or(|owner| owner == user_id)
    }
}

/// The bus that publishes status changes and access changes, to this process's subscribers and
/// to the other replicas'.
pub type EventBus = events::Bus<StatusEvent, AccessEvent>;

impl events::Event for StatusEvent {
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
        user_id: None,
    })
}

/// Record an event that happened to the grant `holder` holds: the server's status for the
/// workspace's shared grant ([`record`]); for one user's own grant, that user's view of the
/// server, published to them alone and never written to the server's row, which stays the
/// status of the connection everyone shares.
pub async fn record_for(
    conn: &mut DbConn,
    server_id: Uuid,
    holder: Holder,
    event: Event,
) -> Result<Option<StatusEvent>, DbError> {
    let Holder::User(user_id) = holder else {
        return record(conn, server_id, event).await;
    };
    let Some(row) = db::servers::find(conn, server_id).await? else {
        return Ok(None);
    };
    let has_tokens = row.auth_type == AuthType::Oauth
        && db::oauth::find_grant(conn, server_id, Some(user_id))
            .await?
            .is_some_and(|grant| grant.tokens_sealed.is_some());
    let facts = Facts {
        auth_type: row.auth_type,
        has_tokens,
    };
    let current = Status::from(lifecycle::next(state_of(&row), facts, event));
    Ok(Some(StatusEvent {
        workspace_id: row.workspace_id.0,
        server_id,
        previous: None,
        current,
        at: db::now(),
        user_id: Some(user_id),
    }))
}

/// [`record_for`] outside any other transaction, publishing the change and logging a storage
/// failure once.
pub async fn update_for(ctx: &Context, server_id: Uuid, holder: Holder, event: Event) {
    if holder == Holder::Workspace {
        return update(ctx, server_id, event, |_| {}).await;
    }
    let recorded = async {
        let mut conn = ctx.db.conn().await?;
        record_for(&mut conn, server_id, holder, event).await
    }
    .await;
    publish_recorded(ctx, server_id, recorded);
}

/// Publish what a status write outside a transaction recorded; a storage failure is logged
/// once, never returned (status bookkeeping never fails the operation that caused it).
fn publish_recorded(
    ctx: &Context,
    server_id: Uuid,
    recorded: Result<Option<StatusEvent>, DbError>,
) {
    match recorded {
        Ok(Some(event)) => ctx.events.publish(event),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot record a status change")
        }
    }
}

/// Move a server's status with `event` (through [`lifecycle::next`], the only way a status
/// changes) and return the event to publish after the caller's transaction commits (`None`
/// when nothing visible changed or the server is gone).
pub async fn record(
    conn: &mut DbConn,
    server_id: Uuid,
    event: Event,
) -> Result<Option<StatusEvent>, DbError> {
    record_with(conn, server_id, event, |_| {}).await
}

/// [`record`], also changing what the event says about the server besides its status (the
/// last error, the last contact, the tool count). `also` cannot change the status: whatever it
/// writes there is replaced by the transition's result.
pub async fn record_with(
    conn: &mut DbConn,
    server_id: Uuid,
    event: Event,
    also: impl FnOnce(&mut McpServerRow),
) -> Result<Option<StatusEvent>, DbError> {
    let Some(mut row) = db::servers::find(conn, server_id).await? else {
        return Ok(None);
    };
    let facts = facts(conn, &row).await?;
    let previous = Status::of(&row);
    let before = row.clone();
    let state = lifecycle::next(state_of(&row), facts, event);
    also(&mut row);
    apply(&mut row, state);
    if row == before {
        return Ok(None);
    }
    row.updated_at = DbTime(db::now());
    db::servers::save(conn, &row).await?;
    Ok(change_event(Some(&previous), &row))
}

/// [`record_with`] outside any other transaction, publishing the change and logging a storage
/// failure once (status bookkeeping never fails the operation that caused it).
pub async fn update(
    ctx: &Context,
    server_id: Uuid,
    event: Event,
    also: impl FnOnce(&mut McpServerRow),
) {
    let recorded = async {
        let mut conn = ctx.db.conn().await?;
        record_with(&mut conn, server_id, event, also).await
    }
    .await;
    publish_recorded(ctx, server_id, recorded);
}

/// How many servers are in each (connection status, auth status) pair, for metrics.
pub async fn counts(ctx: &Context) -> Result<Vec<(String, String, i64)>, DbError> {
    let mut conn = ctx.db.conn().await?;
    db::servers::status_counts(&mut conn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Envelope, Shared, encode};

    /// What replicas send each other.
    type Wire = Envelope<StatusEvent, AccessEvent>;

    fn event(reason: StatusReason) -> StatusEvent {
        StatusEvent {
            workspace_id: Uuid::new_v4(),
            server_id: Uuid::new_v4(),
            previous: Some(Status {
                connection: ConnectionStatus::Disconnected,
                auth: AuthStatus::NotRequired,
                reason: Some(StatusReason::Created),
            }),
            current: Status {
                connection: ConnectionStatus::Disconnected,
                auth: AuthStatus::AuthorizationRequired,
                reason: Some(reason),
            },
            at: db::now(),
            user_id: None,
        }
    }

    #[test]
    fn the_wire_form_carries_the_workspace_and_stored_status_names() {
        let event = event(StatusReason::AuthTypeChanged);
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
        let changed = event(StatusReason::Connected);
        bus.publish(changed.clone());
        assert_eq!(status.recv().await.unwrap(), changed);
        assert!(access.try_recv().is_err());
    }
}
