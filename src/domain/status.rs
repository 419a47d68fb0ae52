//! Server status: the connection and authorization states, and the bus that publishes every
//! change.
//!
//! A status is the triple (connection status, auth status, reason). Every change is written
//! with the server row and published once, after the transaction commits, as a
//! [`StatusEvent`]. Subscribers filter by workspace, so an event never reaches another
//! workspace's dashboards; events from other replicas carry their workspace like local ones.
//!
//! The bus also carries [`AccessEvent`]s (a revoked token, a removed member, a changed role) to
//! the subscribers that hold sessions open, as [`AccessSignal`]s on a channel of their own.
//!
//! On PostgreSQL the bus also relays both kinds of event between replicas sharing the database:
//! each published event is delivered locally at once and handed, in publishing order, to one
//! task that sends it with `NOTIFY` on [`STATUS_CHANNEL`], stamped with the bus's random origin
//! and a sequence number. Another task listens on that channel, skips its own origin (already
//! delivered) and any sequence number it has seen before (a resend after an ambiguous failure),
//! and delivers the rest locally. PostgreSQL delivers notifications in commit order and the
//! sender commits one at a time, so every replica sees another's events in the order they were
//! published. Events notified while a listener is reconnecting are lost, as events published
//! before subscribing are: dashboards read the current state with a query, and access
//! subscribers are told to [`AccessSignal::Recheck`] whenever the listener reconnects or a
//! sequence number shows a gap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::Context;
use super::access::{AccessEvent, AccessSignal};
use crate::db::models::McpServerRow;
use crate::db::notify::{Listener, Notification};
use crate::db::{self, DatabaseTarget, Db, DbConn, DbError, DbTime, PoolOptions};
use crate::supervisor::Supervisor;

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

/// The PostgreSQL notification channel that carries status and access events between
/// replicas.
pub const STATUS_CHANNEL: &str = "switchboard_status";

/// PostgreSQL refuses notification payloads of 8000 bytes or more.
const MAX_PAYLOAD_BYTES: usize = 7999;
/// Reasons are short codes; one longer than this is cut when an event would not fit a payload.
const MAX_SHARED_REASON_BYTES: usize = 256;
/// Events waiting to be sent to other replicas before new ones are dropped (not shared).
const OUTBOX_CAPACITY: usize = 4096;
/// Undelivered access signals kept per slow subscriber; one that falls further behind is told
/// to recheck.
const ACCESS_CAPACITY: usize = 1024;
/// Attempts to send one event before giving up on sharing it.
const SEND_ATTEMPTS: u32 = 4;
/// Delay before the second attempt; doubled for each further one.
const SEND_RETRY_DELAY: Duration = Duration::from_millis(200);
/// How long one attempt (connection included) may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A replica silent for this long is forgotten by the duplicate filter.
const ORIGIN_IDLE: Duration = Duration::from_secs(3600);

/// Fan-out of status and access events to this process's subscribers and, on PostgreSQL, to
/// the other replicas'. Clones share the same subscribers; the relay tasks are services of the
/// supervisor given to [`EventBus::replicated`] and stop with it.
#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<StatusEvent>,
    access: broadcast::Sender<AccessSignal>,
    relay: Option<Arc<Relay>>,
}

/// The link of a bus to the other replicas: the queue of events to send. The sending task
/// ends by itself once the queue is closed and drained.
struct Relay {
    outbox: mpsc::Sender<Outgoing>,
}

/// What the bus carries between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Shared {
    /// A status change (under the key `event`, as replicas have always sent it).
    #[serde(rename = "event")]
    Status(StatusEvent),
    /// An access change.
    #[serde(rename = "access")]
    Access(AccessEvent),
}

/// An item of the sending queue.
enum Outgoing {
    /// Send this to the other replicas.
    Event(Shared),
    /// Everything queued before has been sent or given up: say so.
    Flush(oneshot::Sender<()>),
}

/// One event on the wire between replicas.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The bus that published it.
    origin: Uuid,
    /// Its position among that bus's events, from 1.
    seq: u64,
    #[serde(flatten)]
    shared: Shared,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(4096)
    }
}

impl EventBus {
    /// A bus for one process that keeps up to `capacity` undelivered events per slow
    /// subscriber.
    pub fn new(capacity: usize) -> EventBus {
        let (local, _) = broadcast::channel(capacity);
        let (access, _) = broadcast::channel(ACCESS_CAPACITY);
        EventBus {
            local,
            access,
            relay: None,
        }
    }

    /// A bus shared with every replica using the PostgreSQL database at `url`. Returns once the
    /// first attempt to listen has finished, so that, with the database up, events other
    /// replicas publish from then on arrive here. Sending uses a single connection of its own, so
    /// relaying neither waits for nor adds to the requests' pool.
    pub async fn replicated(
        capacity: usize,
        url: &str,
        tasks: &Supervisor,
    ) -> Result<EventBus, DbError> {
        let (local, _) = broadcast::channel(capacity);
        let (access, _) = broadcast::channel(ACCESS_CAPACITY);
        let origin = Uuid::new_v4();
        let sender_db = Db::connect(
            &DatabaseTarget::Postgres(url.to_owned()),
            &PoolOptions {
                max_size: 1,
                ..PoolOptions::default()
            },
        )
        .await?;
        // Both relay tasks are services of the supervisor: restarted if they crash. The queue
        // and the sequence number outlive a crash, so no queued event is lost and other
        // replicas never take a restarted sender's events for repeats.
        let (outbox, queued) = mpsc::channel(OUTBOX_CAPACITY);
        let queued = Arc::new(tokio::sync::Mutex::new(queued));
        let sequence = Arc::new(AtomicU64::new(0));
        tasks.spawn_service("event_relay_send", move || {
            send_to_replicas(sender_db.clone(), origin, queued.clone(), sequence.clone())
        });
        let first = Arc::new(Mutex::new(Some(Listener::start(url, STATUS_CHANNEL).await)));
        let (url, to_local, to_access) = (url.to_owned(), local.clone(), access.clone());
        tasks.spawn_service("event_relay_listen", move || {
            let (first, url, local, access) = (
                first.clone(),
                url.clone(),
                to_local.clone(),
                to_access.clone(),
            );
            async move {
                let ready = first.lock().unwrap_or_else(PoisonError::into_inner).take();
                let listener = match ready {
                    Some(listener) => listener,
                    None => {
                        // Restarted after a crash: changes may have been missed meanwhile.
                        let listener = Listener::start(&url, STATUS_CHANNEL).await;
                        let _ = access.send(AccessSignal::Recheck);
                        listener
                    }
                };
                receive_from_replicas(listener, origin, local, access).await;
            }
        });
        Ok(EventBus {
            local,
            access,
            relay: Some(Arc::new(Relay { outbox })),
        })
    }

    /// Publish one event (call after the change committed). No subscribers is not an error.
    /// Subscribers of this process get it at once; other replicas shortly after.
    pub fn publish(&self, event: StatusEvent) {
        self.share(Shared::Status(event.clone()));
        let _ = self.local.send(event);
    }

    /// Publish one access change (call after it committed), to this process's access
    /// subscribers at once and to other replicas' shortly after.
    pub fn publish_access(&self, event: AccessEvent) {
        self.share(Shared::Access(event.clone()));
        let _ = self.access.send(AccessSignal::Changed(event));
    }

    fn share(&self, shared: Shared) {
        if let Some(relay) = &self.relay
            && let Err(error) = relay.outbox.try_send(Outgoing::Event(shared))
        {
            let reason = error.to_string();
            match error.into_inner() {
                Outgoing::Event(Shared::Status(event)) => tracing::warn!(
                    mcp_server.id = %event.server_id,
                    %reason,
                    "a status event cannot be shared with other replicas"
                ),
                Outgoing::Event(Shared::Access(event)) => tracing::warn!(
                    user.id = %event.user_id(),
                    %reason,
                    "an access change cannot be shared with other replicas"
                ),
                Outgoing::Flush(_) => {}
            }
        }
    }

    /// Wait until every event published so far has been handed to the other replicas (or given
    /// up), for at most `within`; returns whether that happened. Processes that publish and
    /// then exit (the command line) call this last. Immediate without replicas.
    pub async fn flush(&self, within: Duration) -> bool {
        let Some(relay) = &self.relay else {
            return true;
        };
        let (done, flushed) = oneshot::channel();
        tokio::time::timeout(within, async {
            relay.outbox.send(Outgoing::Flush(done)).await.is_ok() && flushed.await.is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// A new subscription, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.local.subscribe()
    }

    /// A new subscription to access changes, from now on.
    pub fn subscribe_access(&self) -> broadcast::Receiver<AccessSignal> {
        self.access.subscribe()
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.local.receiver_count()
    }
}

/// Send queued events, one at a time and in order, with `NOTIFY`. An event is retried a few
/// times (a resend after an ambiguous failure is filtered by its sequence number) and then
/// given up with a warning, so one bad moment of the database never holds later events for
/// long.
async fn send_to_replicas(
    db: Db,
    origin: Uuid,
    queued: Arc<tokio::sync::Mutex<mpsc::Receiver<Outgoing>>>,
    sequence: Arc<AtomicU64>,
) {
    let mut queued = queued.lock().await;
    while let Some(outgoing) = queued.recv().await {
        let shared = match outgoing {
            Outgoing::Event(shared) => shared,
            Outgoing::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let seq = sequence.load(Ordering::Relaxed).saturating_add(1);
        let Some(payload) = encode(origin, seq, shared) else {
            tracing::warn!("an event is too large to share with other replicas");
            continue;
        };
        sequence.store(seq, Ordering::Relaxed);
        let mut delay = SEND_RETRY_DELAY;
        for attempt in 1..=SEND_ATTEMPTS {
            let sent = tokio::time::timeout(SEND_TIMEOUT, async {
                let mut conn = db.conn().await?;
                db::notify::notify(&mut conn, STATUS_CHANNEL, &payload).await
            })
            .await
            .unwrap_or_else(|_| Err(DbError::Connect("timed out".to_owned())));
            match sent {
                Ok(()) => break,
                Err(error) if attempt < SEND_ATTEMPTS => {
                    tracing::debug!(%error, seq, attempt, "retrying a notification");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => tracing::warn!(
                    %error,
                    seq,
                    attempts = SEND_ATTEMPTS,
                    "an event could not be shared with other replicas"
                ),
            }
        }
    }
}

/// The notification payload for an event, cutting over-long reasons if that makes it fit;
/// `None` when it still does not.
fn encode(origin: Uuid, seq: u64, shared: Shared) -> Option<String> {
    let mut envelope = Envelope {
        origin,
        seq,
        shared,
    };
    let payload = serde_json::to_string(&envelope).ok()?;
    if payload.len() <= MAX_PAYLOAD_BYTES {
        return Some(payload);
    }
    if let Shared::Status(event) = &mut envelope.shared {
        shorten(&mut event.current.reason);
        if let Some(previous) = &mut event.previous {
            shorten(&mut previous.reason);
        }
    }
    serde_json::to_string(&envelope)
        .ok()
        .filter(|payload| payload.len() <= MAX_PAYLOAD_BYTES)
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

/// Deliver other replicas' events to this process's subscribers. Whenever events may have been
/// missed (the listener reconnected, or another replica's sequence jumped), access subscribers
/// are told to recheck.
async fn receive_from_replicas(
    listener: Listener,
    origin: Uuid,
    local: broadcast::Sender<StatusEvent>,
    access: broadcast::Sender<AccessSignal>,
) {
    let mut notifications = std::pin::pin!(listener.into_stream());
    let mut seen = SeenSequences::default();
    while let Some(notification) = notifications.next().await {
        let payload = match notification {
            Notification::Payload(payload) => payload,
            Notification::Reconnected => {
                let _ = access.send(AccessSignal::Recheck);
                continue;
            }
        };
        let envelope: Envelope = match serde_json::from_str(&payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed notification");
                continue;
            }
        };
        if envelope.origin == origin {
            continue;
        }
        match seen.check(envelope.origin, envelope.seq) {
            Sequence::Repeat => continue,
            Sequence::Next => {}
            Sequence::AfterGap => {
                let _ = access.send(AccessSignal::Recheck);
            }
        }
        match envelope.shared {
            Shared::Status(event) => {
                let _ = local.send(event);
            }
            Shared::Access(event) => {
                let _ = access.send(AccessSignal::Changed(event));
            }
        }
    }
}

/// How a sequence number from another replica relates to the ones seen before.
#[derive(Debug, PartialEq, Eq)]
enum Sequence {
    /// Seen already: drop it.
    Repeat,
    /// The next one (or the first one heard from that replica).
    Next,
    /// New, but some before it never arrived.
    AfterGap,
}

/// The last sequence number received from each other replica.
#[derive(Default)]
struct SeenSequences {
    last: HashMap<Uuid, (u64, Instant)>,
}

impl SeenSequences {
    /// Classify `seq` from `origin` (and remember it when new). A jump means events were missed,
    /// most likely while this replica was reconnecting.
    fn check(&mut self, origin: Uuid, seq: u64) -> Sequence {
        let now = Instant::now();
        if let Some((last, seen_at)) = self.last.get_mut(&origin) {
            if seq <= *last {
                return Sequence::Repeat;
            }
            let gap = seq - *last - 1;
            *last = seq;
            *seen_at = now;
            if gap > 0 {
                tracing::warn!(
                    replica.origin = %origin,
                    missed = gap,
                    "events from another replica were missed"
                );
                return Sequence::AfterGap;
            }
            return Sequence::Next;
        }
        self.last
            .retain(|_, (_, seen_at)| now.duration_since(*seen_at) < ORIGIN_IDLE);
        self.last.insert(origin, (seq, now));
        Sequence::Next
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
        let payload = encode(origin, 7, Shared::Status(event.clone())).unwrap();
        let wire: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(wire["origin"], origin.to_string());
        assert_eq!(wire["seq"], 7);
        assert_eq!(
            wire["event"]["workspace_id"],
            event.workspace_id.to_string()
        );
        assert_eq!(wire["event"]["current"]["auth"], "authorization_required");
        assert_eq!(wire["event"]["previous"]["auth"], "not_required");
        let back: Envelope = serde_json::from_str(&payload).unwrap();
        assert_eq!(back.shared, Shared::Status(event));

        let mut without_workspace = wire.clone();
        without_workspace["event"]
            .as_object_mut()
            .unwrap()
            .remove("workspace_id");
        assert!(serde_json::from_value::<Envelope>(without_workspace).is_err());
    }

    #[test]
    fn over_long_reasons_are_cut_to_fit_a_notification() {
        let long = "é".repeat(MAX_PAYLOAD_BYTES);
        let payload = encode(Uuid::new_v4(), 1, Shared::Status(event(&long))).unwrap();
        assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        let back: Envelope = serde_json::from_str(&payload).unwrap();
        let Shared::Status(back) = back.shared else {
            panic!("a status event");
        };
        let reason = back.current.reason.unwrap();
        assert!(reason.len() <= MAX_SHARED_REASON_BYTES && long.starts_with(&reason));
    }

    #[test]
    fn repeated_and_old_sequence_numbers_are_dropped_per_replica() {
        let mut seen = SeenSequences::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(seen.check(a, 1), Sequence::Next);
        assert_eq!(seen.check(a, 1), Sequence::Repeat);
        assert_eq!(seen.check(b, 1), Sequence::Next);
        assert_eq!(seen.check(a, 2), Sequence::Next);
        assert_eq!(seen.check(a, 5), Sequence::AfterGap);
        assert_eq!(seen.check(a, 4), Sequence::Repeat);
        assert_eq!(seen.check(b, 2), Sequence::Next);
    }

    #[tokio::test]
    async fn a_single_process_bus_delivers_each_event_once() {
        let bus = EventBus::default();
        let mut receiver = bus.subscribe();
        let first = event("one");
        let second = event("two");
        bus.publish(first.clone());
        bus.publish(second.clone());
        assert_eq!(receiver.recv().await.unwrap(), first);
        assert_eq!(receiver.recv().await.unwrap(), second);
        assert!(receiver.try_recv().is_err());
    }

    #[test]
    fn access_changes_travel_under_their_own_key() {
        let event = AccessEvent::RoleChanged {
            workspace_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            role: crate::domain::access::Role::Viewer,
        };
        let payload = encode(Uuid::new_v4(), 3, Shared::Access(event.clone())).unwrap();
        let wire: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(wire["access"]["kind"], "role_changed");
        assert_eq!(wire["access"]["role"], "viewer");
        assert!(wire.get("event").is_none());
        let back: Envelope = serde_json::from_str(&payload).unwrap();
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
        assert_eq!(access.recv().await.unwrap(), AccessSignal::Changed(revoked));
        assert!(status.try_recv().is_err());
        assert!(bus.flush(Duration::from_millis(10)).await);
    }
}
