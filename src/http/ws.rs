//! GraphQL over WebSocket on `/graphql/ws`: the `graphql-transport-ws` protocol and the legacy
//! `graphql-ws` one (subscriptions-transport-ws), one task per socket.
//!
//! A socket authenticates with the bearer token in its `connection_init` payload (an API token,
//! or a JWT of a configured identity provider), within the init timeout. Every operation it
//! starts authenticates that token again, with the function HTTP uses, and runs with the
//! principal read then: a revoked token starts nothing (the socket closes with 4403) and
//! memberships are always current. A socket opened with an identity provider's JWT closes
//! with 4401 when the token expires. The [`Sockets`] registry holds every
//! open socket by user and token, and follows the access changes the event bus brings from
//! every replica: a revoked token, or a user removed from a workspace, closes the affected
//! sockets with 4403. A changed role (a promotion or a demotion) keeps them open: operations
//! started afterwards run with the new role, and the one long-running operation, the status
//! subscription, needs only the viewer role, which every member has. When the bus may have
//! missed changes (the link to the other replicas was lost for a while), every open socket's
//! token and memberships are checked against the database again.
//!
//! Operations run apart from the socket (see [`super::fanout`]): subscriptions that are the
//! same and run with the same access share one execution, each result serialised once; results
//! wait in the socket's bounded queue until the socket sends them.
//!
//! Close codes, as graphql-transport-ws defines them: 4400 malformed message, 4401 operation
//! before `connection_ack` or the identity token the socket was opened with expired (reconnect
//! with a fresh one), 4403 missing, bad or revoked token or lost membership, 4408 no
//! `connection_init` in time, 4409 an operation id already in use, 4429 a second
//! `connection_init`. Besides: 4413 when the client reads too slowly (more results waited
//! than its queue holds), 1001 when the server shuts down or the socket reached its
//! lifetime (reconnect), 1013 when the user holds too many sockets or the database failed
//! (try again later), 1000 after a legacy `connection_terminate`. On the legacy protocol a
//! refused `connection_init` is answered with `connection_error` before the close.
//!
//! Limits: sockets per process (refused before the upgrade with `503`), sockets per user,
//! operations open per socket (each one over the limit is refused with a `RATE_LIMITED`
//! error and the socket stays open), messages queued per socket, init timeout, lifetime,
//! message size. A send that does not complete in time drops the connection, so a peer that
//! stops reading cannot keep a socket (or a shutdown) waiting.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::Duration;

use async_graphql::http::ClientMessage;
use async_graphql::{ErrorExtensionValues, Request, ServerError};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use rand::RngExt as _;
use serde::Serialize;
use tokio::sync::{Notify, broadcast, oneshot, watch};
use uuid::Uuid;

use crate::app::{App, AppHandle};
use crate::config::WebSocketLimits;
use crate::crypto::Secret;
use crate::domain::access::{self, AccessEvent, AccessSignal, Principal, Role};
use crate::domain::{self};
use crate::graphql::ApiSchema;
use crate::metrics::WebSocketGuard;

use super::fanout::{Delivery, Fanout, Item, Key, Membership, Outbox, Subscriber};

/// How long one message may take to go out before the peer counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Longest accepted operation id.
const MAX_ID_BYTES: usize = 128;
/// Largest share of the lifetime taken off at random, so sockets opened together do not all
/// reconnect together.
const LIFETIME_JITTER: f64 = 0.1;

/// A close frame the server sends: a code and a short reason (at most 123 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The close code.
    pub code: u16,
    /// Why, for the client.
    pub reason: Cow<'static, str>,
}

impl Close {
    const fn fixed(code: u16, reason: &'static str) -> Close {
        Close {
            code,
            reason: Cow::Borrowed(reason),
        }
    }

    /// 1000: the client asked to end the connection (legacy `connection_terminate`).
    pub const TERMINATED: Close = Close::fixed(1000, "Connection terminated");
    /// 1001: the server is shutting down; reconnect (to another replica).
    pub const SHUTDOWN: Close = Close::fixed(1001, "Server shutting down: reconnect");
    /// 1001: the socket reached its maximum lifetime; reconnect.
    pub const LIFETIME: Close = Close::fixed(1001, "Socket lifetime reached: reconnect");
    /// 1013: this user holds as many sockets as allowed.
    pub const TOO_MANY_SOCKETS: Close =
        Close::fixed(1013, "Too many open sockets for this user: try again later");
    /// 1013: the database failed while authenticating.
    pub const UNAVAILABLE: Close = Close::fixed(1013, "Service unavailable: try again later");
    /// 4400: a message that is not JSON, not of a known type, or malformed.
    pub const BAD_MESSAGE: Close = Close::fixed(4400, "Invalid message received");
    /// 4401: an operation before `connection_ack`.
    pub const UNAUTHORIZED: Close = Close::fixed(4401, "Unauthorized");
    /// 4401: the identity token the socket was opened with expired; reconnect with a new one.
    pub const TOKEN_EXPIRED: Close = Close::fixed(4401, "Unauthorized: the token expired");
    /// 4403: no token or a bad one in `connection_init`.
    pub const FORBIDDEN: Close = Close::fixed(4403, "Forbidden");
    /// 4403: the socket's token is no longer valid.
    pub const REVOKED: Close = Close::fixed(4403, "Forbidden: the token is no longer valid");
    /// 4403: the socket's user lost a workspace membership.
    pub const MEMBERSHIP_REMOVED: Close =
        Close::fixed(4403, "Forbidden: a workspace membership was removed");
    /// 4408: no `connection_init` in time.
    pub const INIT_TIMEOUT: Close = Close::fixed(4408, "Connection initialisation timeout");
    /// 4429: a second `connection_init`.
    pub const TOO_MANY_INITS: Close = Close::fixed(4429, "Too many initialisation requests");
    /// 4413: the client read too slowly; more messages waited than allowed. Reconnect and read
    /// the current state.
    pub const TOO_SLOW: Close = Close::fixed(
        4413,
        "Too slow: too many messages waited to be read; reconnect and read the current state",
    );

    /// 4409: an operation id that is already running.
    fn duplicate(id: &str) -> Close {
        let reason = format!("Subscriber for {id} already exists");
        if reason.len() <= 123 {
            Close {
                code: 4409,
                reason: Cow::Owned(reason),
            }
        } else {
            Close::fixed(4409, "Subscriber for this id already exists")
        }
    }
}

/// The WebSocket sub-protocol a socket speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`.
    TransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    LegacyWs,
}

impl Protocol {
    /// Every sub-protocol served, in order of preference.
    pub const ALL: [&'static str; 2] = ["graphql-transport-ws", "graphql-ws"];

    /// The protocol named by a `Sec-WebSocket-Protocol` value.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name.trim() {
            "graphql-transport-ws" => Some(Protocol::TransportWs),
            "graphql-ws" => Some(Protocol::LegacyWs),
            _ => None,
        }
    }
}

/// Every open socket of this process, by user and token, and the caps on them.
pub struct Sockets {
    limits: WebSocketLimits,
    metrics: Arc<crate::metrics::Metrics>,
    /// The executions serving the sockets' operations.
    fanout: Arc<Fanout>,
    registry: Mutex<Registry>,
    /// Woken whenever the last open socket ends.
    emptied: Notify,
}

#[derive(Default)]
struct Registry {
    /// Sockets open, authenticated or not.
    open: usize,
    next_id: u64,
    /// Authenticated sockets.
    sessions: HashMap<u64, Session>,
    by_user: HashMap<Uuid, HashSet<u64>>,
}

/// What the registry knows of an authenticated socket.
struct Session {
    user_id: Uuid,
    /// The API token, when the socket authenticated with one.
    token_id: Option<Uuid>,
    token: Secret,
    /// The memberships last read for it (at `connection_init`, at each operation, and from
    /// role changes since).
    memberships: HashMap<Uuid, Role>,
    close: oneshot::Sender<Close>,
}

impl Registry {
    /// Take a session out of the registry and tell its socket to close.
    fn close(&mut self, id: u64, close: Close) {
        if let Some(session) = self.forget(id) {
            let _ = session.close.send(close);
        }
    }

    fn forget(&mut self, id: u64) -> Option<Session> {
        let session = self.sessions.remove(&id)?;
        if let Some(ids) = self.by_user.get_mut(&session.user_id) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_user.remove(&session.user_id);
            }
        }
        Some(session)
    }

    fn of_user(&self, user_id: Uuid) -> Vec<u64> {
        self.by_user
            .get(&user_id)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    fn apply(&mut self, event: &AccessEvent) {
        match *event {
            AccessEvent::TokenRevoked { user_id, token_id } => {
                for id in self.of_user(user_id) {
                    if self
                        .sessions
                        .get(&id)
                        .is_some_and(|session| session.token_id == Some(token_id))
                    {
                        self.close(id, Close::REVOKED);
                    }
                }
            }
            AccessEvent::MemberRemoved { user_id, .. } => {
                for id in self.of_user(user_id) {
                    self.close(id, Close::MEMBERSHIP_REMOVED);
                }
            }
            AccessEvent::RoleChanged {
                workspace_id,
                user_id,
                role,
            } => {
                for id in self.of_user(user_id) {
                    if let Some(session) = self.sessions.get_mut(&id) {
                        session.memberships.insert(workspace_id, role);
                    }
                }
            }
        }
    }
}

impl Sockets {
    /// An empty registry for `app`, following the access changes on its event bus.
    pub fn start(app: &AppHandle) -> Arc<Sockets> {
        let sockets = Arc::new(Sockets {
            limits: app.config.websocket.clone(),
            metrics: app.metrics.clone(),
            fanout: Fanout::new(),
            registry: Mutex::default(),
            emptied: Notify::new(),
        });
        // Following access changes is a service of the app's supervisor: restarted (after a
        // recheck of every socket, since changes may have been missed) if it crashes; it ends
        // when the registry is gone.
        let (registry, handle) = (Arc::downgrade(&sockets), Arc::downgrade(app));
        let changes = app.events.clone();
        let restarted = std::sync::atomic::AtomicBool::new(false);
        app.tasks.spawn_service("websocket_access", move || {
            let (registry, app) = (registry.clone(), handle.clone());
            let changes = changes.subscribe_access();
            let recheck = restarted.swap(true, std::sync::atomic::Ordering::Relaxed);
            async move {
                if recheck && let (Some(sockets), Some(app)) = (registry.upgrade(), app.upgrade()) {
                    sockets.recheck(&app).await;
                }
                follow_access_changes(registry, app, changes).await;
            }
        });
        sockets
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits sockets are held to.
    pub fn limits(&self) -> &WebSocketLimits {
        &self.limits
    }

    /// Sockets open now, authenticated or not.
    pub fn open(&self) -> usize {
        self.registry().open
    }

    /// Count a new socket, unless as many as allowed are open already.
    pub fn reserve(self: &Arc<Self>) -> Option<Slot> {
        let mut registry = self.registry();
        if registry.open >= self.limits.max_sockets {
            return None;
        }
        registry.open += 1;
        registry.next_id += 1;
        Some(Slot {
            sockets: self.clone(),
            id: registry.next_id,
            _gauge: self.metrics.websocket_opened(),
        })
    }

    /// Wait until no socket is open, for at most `within`; returns whether none is.
    pub async fn wait_closed(&self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                let mut emptied = pin!(self.emptied.notified());
                emptied.as_mut().enable();
                if self.open() == 0 {
                    return;
                }
                emptied.await;
            }
        })
        .await
        .is_ok()
    }

    /// Check every authenticated socket against the database: close those whose token no
    /// longer authenticates or whose user lost a membership, refresh the others' memberships.
    async fn recheck(&self, app: &AppHandle) {
        let mut tokens: HashMap<String, (Secret, Vec<u64>)> = HashMap::new();
        for (id, session) in &self.registry().sessions {
            tokens
                .entry(crate::crypto::sha256_hex(session.token.expose()))
                .or_insert_with(|| (session.token.clone(), Vec::new()))
                .1
                .push(*id);
        }
        for (token, ids) in tokens.into_values() {
            let checked = access::authenticate_fresh(app, token.expose()).await;
            let mut registry = self.registry();
            match checked {
                Ok(principal) => {
                    for id in ids {
                        let Some(session) = registry.sessions.get_mut(&id) else {
                            continue;
                        };
                        if lost_membership(&session.memberships, &principal) {
                            registry.close(id, Close::MEMBERSHIP_REMOVED);
                        } else {
                            session.memberships = principal.memberships.clone();
                        }
                    }
                }
                Err(domain::Error::Unauthenticated) => {
                    for id in ids {
                        registry.close(id, Close::REVOKED);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot recheck open WebSockets on a storage error");
                }
            }
        }
    }
}

/// Apply access changes to the registry for as long as it exists.
/// It holds neither strongly: the app owns the task (through its supervisor), and the task
/// must not keep the app alive.
async fn follow_access_changes(
    sockets: Weak<Sockets>,
    app: Weak<App>,
    mut changes: broadcast::Receiver<AccessSignal>,
) {
    loop {
        let signal = changes.recv().await;
        let (Some(sockets), Some(app)) = (sockets.upgrade(), app.upgrade()) else {
            return;
        };
        match signal {
            Ok(AccessSignal::Changed(event)) => sockets.registry().apply(&event),
            Ok(AccessSignal::Recheck) => sockets.recheck(&app).await,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "access changes were missed; rechecking open WebSockets"
                );
                sockets.recheck(&app).await;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One open socket's place in the registry; dropping it frees the place.
pub struct Slot {
    sockets: Arc<Sockets>,
    id: u64,
    _gauge: WebSocketGuard,
}

impl Slot {
    /// Register the socket as authenticated for `principal` with `token`, unless the user
    /// already holds as many sockets as allowed. The receiver hears when the registry closes
    /// the socket.
    fn admit(
        &self,
        principal: &Principal,
        token: Secret,
    ) -> Result<oneshot::Receiver<Close>, Close> {
        let mut registry = self.sockets.registry();
        let held = registry
            .by_user
            .get(&principal.user_id)
            .map_or(0, HashSet::len);
        if held >= self.sockets.limits.max_sockets_per_user {
            return Err(Close::TOO_MANY_SOCKETS);
        }
        let (close, closed) = oneshot::channel();
        registry.sessions.insert(
            self.id,
            Session {
                user_id: principal.user_id,
                token_id: principal.token_id(),
                token,
                memberships: principal.memberships.clone(),
                close,
            },
        );
        registry
            .by_user
            .entry(principal.user_id)
            .or_default()
            .insert(self.id);
        Ok(closed)
    }

    /// Remember the memberships just read for the socket; `false` (and nothing remembered)
    /// when one it had is gone, which the socket must not survive.
    fn refresh(&self, principal: &Principal) -> bool {
        let mut registry = self.sockets.registry();
        let Some(session) = registry.sessions.get_mut(&self.id) else {
            return true;
        };
        if lost_membership(&session.memberships, principal) {
            return false;
        }
        session.memberships = principal.memberships.clone();
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let emptied = {
            let mut registry = self.sockets.registry();
            registry.forget(self.id);
            registry.open = registry.open.saturating_sub(1);
            registry.open == 0
        };
        if emptied {
            self.sockets.emptied.notify_waiters();
        }
    }
}

/// Whether a workspace of `held` is missing from the memberships `now` has.
fn lost_membership(held: &HashMap<Uuid, Role>, now: &Principal) -> bool {
    held.keys()
        .any(|workspace| !now.memberships.contains_key(workspace))
}

/// Messages the server sends (both protocols), but results (`next`, `data` on the legacy one),
/// which are spliced from a payload serialised once (see [`super::fanout::Payload`]).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Outgoing<'a> {
    ConnectionAck,
    ConnectionError {
        payload: serde_json::Value,
    },
    Error {
        id: &'a str,
        payload: Vec<ServerError>,
    },
    Complete {
        id: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<serde_json::Value>,
    },
}

/// What one turn of a socket's loop leads to.
enum Step {
    Continue,
    /// Close with this frame.
    Close(Close),
    /// The peer closed the connection.
    PeerClosed,
    /// The connection is unusable.
    Gone,
}

/// An authenticated socket's credentials.
struct Authenticated {
    token: Secret,
    /// When the token expires (identity tokens): the socket closes then, with 4401.
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Hears when the registry closes the socket; `None` once its sender is gone.
    closed: Option<oneshot::Receiver<Close>>,
}

/// Serve one upgraded socket until it closes.
pub async fn serve(
    socket: WebSocket,
    protocol: Protocol,
    app: AppHandle,
    schema: ApiSchema,
    slot: Slot,
    shutdown: watch::Receiver<bool>,
) {
    let limits = slot.sockets.limits.clone();
    let driver = Driver {
        socket,
        protocol,
        app,
        schema,
        fanout: slot.sockets.fanout.clone(),
        slot,
        max_operations: limits.max_subscriptions_per_socket,
        session: None,
        operations: HashMap::new(),
        outbox: Outbox::new(limits.max_queued_messages),
        runs: 0,
    };
    let jitter = rand::rng().random_range(0.0..LIFETIME_JITTER);
    let lifetime = limits.max_lifetime.mul_f64(1.0 - jitter);
    driver.run(shutdown, limits.init_timeout, lifetime).await;
}

struct Driver {
    socket: WebSocket,
    protocol: Protocol,
    app: AppHandle,
    schema: ApiSchema,
    fanout: Arc<Fanout>,
    slot: Slot,
    max_operations: usize,
    session: Option<Authenticated>,
    /// Operations running, by id: which run of that id, and its place in an execution
    /// (dropping it stops the operation).
    operations: HashMap<String, (u64, Membership)>,
    /// Results of the operations waiting to be sent; `None` from it means it overflowed.
    outbox: Arc<Outbox>,
    runs: u64,
}

/// What woke a socket's loop.
enum Wake {
    Shutdown,
    Closed(Result<Close, oneshot::error::RecvError>),
    Expired,
    TokenExpired,
    InitTimeout,
    Received(Option<Result<Message, axum::Error>>),
    Output(Option<Delivery>),
}

impl Driver {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>, init: Duration, life: Duration) {
        // Only until the socket is authenticated.
        let mut init_deadline = Some(Box::pin(tokio::time::sleep(init)));
        let mut expiry = pin!(tokio::time::sleep(life));
        let end = loop {
            if self.session.is_some() {
                init_deadline = None;
            }
            let token_left = self
                .session
                .as_ref()
                .and_then(|s| s.expires_at)
                .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
            let closed = self.session.as_mut().and_then(|s| s.closed.as_mut());
            let wake = tokio::select! {
                biased;
                _ = shutdown.wait_for(|closing| *closing) => Wake::Shutdown,
                close = async move {
                    match closed {
                        Some(closed) => closed.await,
                        None => std::future::pending().await,
                    }
                } => Wake::Closed(close),
                () = &mut expiry => Wake::Expired,
                () = async {
                    match token_left {
                        Some(left) => tokio::time::sleep(left).await,
                        None => std::future::pending().await,
                    }
                } => Wake::TokenExpired,
                () = async {
                    match init_deadline.as_mut() {
                        Some(deadline) => deadline.await,
                        None => std::future::pending().await,
                    }
                } => Wake::InitTimeout,
                // Results first: a wake-up for one then does not poll the connection for
                // reading as well. The queue is bounded, so reading waits at most that long.
                delivery = self.outbox.next() => Wake::Output(delivery),
                message = self.socket.recv() => Wake::Received(message),
            };
            // Boxed: handling awaits authentication and sends, whose futures are large, and a
            // socket's task would otherwise reserve room for them for its whole life.
            match Box::pin(self.handle(wake)).await {
                Step::Continue => {}
                end => break end,
            }
        };
        // Stop the operations before saying goodbye.
        self.operations.clear();
        match end {
            Step::Close(close) => Box::pin(self.close(close)).await,
            Step::PeerClosed => {
                // Let the automatic reply to the peer's close frame go out.
                let _ = tokio::time::timeout(SEND_TIMEOUT, self.socket.flush()).await;
            }
            Step::Continue | Step::Gone => {}
        }
    }

    async fn handle(&mut self, wake: Wake) -> Step {
        match wake {
            Wake::Shutdown => Step::Close(Close::SHUTDOWN),
            Wake::Closed(Ok(close)) => Step::Close(close),
            Wake::Closed(Err(_)) => {
                if let Some(session) = &mut self.session {
                    session.closed = None;
                }
                Step::Continue
            }
            Wake::Expired => Step::Close(Close::LIFETIME),
            Wake::TokenExpired => Step::Close(Close::TOKEN_EXPIRED),
            Wake::InitTimeout => Step::Close(Close::INIT_TIMEOUT),
            Wake::Received(message) => self.receive(message).await,
            Wake::Output(output) => self.deliver(output).await,
        }
    }

    async fn receive(&mut self, message: Option<Result<Message, axum::Error>>) -> Step {
        let message = match message {
            Some(Ok(message)) => message,
            None | Some(Err(_)) => return Step::Gone,
        };
        let parsed = match &message {
            Message::Text(text) => ClientMessage::from_bytes(text.as_bytes()),
            Message::Binary(bytes) => ClientMessage::from_bytes(bytes),
            Message::Close(_) => return Step::PeerClosed,
            Message::Ping(_) | Message::Pong(_) => return Step::Continue,
        };
        drop(message);
        match parsed {
            Err(_) => Step::Close(Close::BAD_MESSAGE),
            Ok(ClientMessage::ConnectionInit { payload }) => self.init(payload).await,
            Ok(ClientMessage::Start { id, payload }) => self.start(id, payload).await,
            Ok(ClientMessage::Stop { id }) => self.stop(id).await,
            Ok(ClientMessage::ConnectionTerminate) => match self.protocol {
                Protocol::LegacyWs => Step::Close(Close::TERMINATED),
                Protocol::TransportWs => Step::Close(Close::BAD_MESSAGE),
            },
            Ok(ClientMessage::Ping { payload }) => self.send(&Outgoing::Pong { payload }).await,
            Ok(ClientMessage::Pong { .. }) => Step::Continue,
        }
    }

    /// `connection_init`: authenticate the token and register the socket under its user.
    async fn init(&mut self, payload: Option<serde_json::Value>) -> Step {
        if self.session.is_some() {
            return Step::Close(Close::TOO_MANY_INITS);
        }
        let Some(token) = payload.as_ref().and_then(token_in) else {
            return self.refuse_init(Close::FORBIDDEN).await;
        };
        let principal = match access::authenticate(&self.app, token).await {
            Ok(principal) => principal,
            Err(domain::Error::Unauthenticated) => return self.refuse_init(Close::FORBIDDEN).await,
            Err(error) => {
                tracing::error!(%error, "a WebSocket could not be authenticated on a storage error");
                return self.refuse_init(Close::UNAVAILABLE).await;
            }
        };
        let token = Secret::new(token);
        match self.slot.admit(&principal, token.clone()) {
            Ok(closed) => {
                self.session = Some(Authenticated {
                    token,
                    expires_at: principal.expires_at(),
                    closed: Some(closed),
                });
                self.send(&Outgoing::ConnectionAck).await
            }
            Err(close) => self.refuse_init(close).await,
        }
    }

    async fn refuse_init(&mut self, close: Close) -> Step {
        if self.protocol == Protocol::LegacyWs {
            let payload = serde_json::json!({ "message": close.reason });
            if let Step::Gone = self.send(&Outgoing::ConnectionError { payload }).await {
                return Step::Gone;
            }
        }
        Step::Close(close)
    }

    /// `subscribe` (`start`): authenticate the token again and run the operation with the
    /// principal read now.
    async fn start(&mut self, id: String, request: Request) -> Step {
        let Some(session) = &self.session else {
            return Step::Close(Close::UNAUTHORIZED);
        };
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Step::Close(Close::BAD_MESSAGE);
        }
        if self.operations.contains_key(&id) {
            return Step::Close(Close::duplicate(&id));
        }
        if self.operations.len() >= self.max_operations {
            let message = format!(
                "at most {} operations may run at once on one connection: complete one first",
                self.max_operations
            );
            return self.refuse(&id, message, "RATE_LIMITED").await;
        }
        let principal = match access::authenticate_fresh(&self.app, session.token.expose()).await {
            Ok(principal) => principal,
            Err(domain::Error::Unauthenticated) => return Step::Close(Close::REVOKED),
            Err(error) => {
                tracing::error!(%error, "a WebSocket operation could not be authenticated on a storage error");
                return self
                    .refuse(&id, "internal error".to_owned(), "INTERNAL")
                    .await;
            }
        };
        if !self.slot.refresh(&principal) {
            return Step::Close(Close::MEMBERSHIP_REMOVED);
        }
        // Subscribers of the same subscription with the same access share its execution (and
        // a shared execution carries the span of the subscriber that started it).
        let span = super::trace::operation_span(&request);
        let mut request = request;
        let key = Key::of(&mut request, &principal);
        // Over a socket every operation is validated in full.
        let (request, _) = crate::graphql::prepare(&self.app, request, Some(principal));
        let request = request.data(crate::graphql::subscription::SubscribersCounted);
        let responses = futures_util::StreamExt::boxed(super::trace::InSpan::new(
            self.schema.execute_stream(request),
            span,
        ));
        self.runs += 1;
        let run = self.runs;
        let subscriber = Subscriber {
            outbox: self.outbox.clone(),
            id: Arc::from(id.as_str()),
            run,
        };
        let membership = self.fanout.start(&self.app, key, responses, subscriber);
        self.operations.insert(id, (run, membership));
        Step::Continue
    }

    /// Refuse one operation with a GraphQL error carrying `code`; the socket stays open.
    async fn refuse(&mut self, id: &str, message: String, code: &str) -> Step {
        self.app.metrics.graphql_request([code]);
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", code);
        let mut error = ServerError::new(message, None);
        error.extensions = Some(extensions);
        self.send(&Outgoing::Error {
            id,
            payload: vec![error],
        })
        .await
    }

    /// `complete` (`stop`): end an operation.
    async fn stop(&mut self, id: String) -> Step {
        if self.session.is_none() {
            return Step::Close(Close::UNAUTHORIZED);
        }
        let Some((_, membership)) = self.operations.remove(&id) else {
            return Step::Continue;
        };
        drop(membership);
        match self.protocol {
            // The legacy protocol confirms; graphql-transport-ws sends nothing more for the id.
            Protocol::LegacyWs => self.send(&Outgoing::Complete { id: &id }).await,
            Protocol::TransportWs => Step::Continue,
        }
    }

    /// Forward an operation's result, or its end, unless the client ended it already; close
    /// the socket when its queue overflowed.
    async fn deliver(&mut self, delivery: Option<Delivery>) -> Step {
        let Some(Delivery { id, run, item }) = delivery else {
            return Self::too_slow();
        };
        if self
            .operations
            .get(&*id)
            .is_none_or(|(current, _)| *current != run)
        {
            return Step::Continue;
        }
        match item {
            Item::Next(payload) => {
                let kind = match self.protocol {
                    Protocol::TransportWs => "next",
                    Protocol::LegacyWs => "data",
                };
                match payload.message(kind, &id) {
                    Ok(text) => self.send_text(text).await,
                    Err(error) => {
                        tracing::error!(%error, "a WebSocket message could not be encoded");
                        Step::Close(Close::UNAVAILABLE)
                    }
                }
            }
            Item::Complete => {
                self.operations.remove(&*id);
                self.send(&Outgoing::Complete { id: &id }).await
            }
        }
    }

    fn too_slow() -> Step {
        tracing::warn!(
            code = Close::TOO_SLOW.code,
            "closing a WebSocket that fell too far behind: more messages waited than its queue holds"
        );
        Step::Close(Close::TOO_SLOW)
    }

    async fn send(&mut self, message: &Outgoing<'_>) -> Step {
        let text = match serde_json::to_string(message) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "a WebSocket message could not be encoded");
                return Step::Close(Close::UNAVAILABLE);
            }
        };
        self.send_text(text).await
    }

    /// Send one message; a send still waiting when the queue overflows is given up, and the
    /// socket closes as too slow.
    async fn send_text(&mut self, text: String) -> Step {
        let outbox = self.outbox.clone();
        let mut send = pin!(self.socket.send(Message::text(text)));
        // Nothing is buffered for writing, so a send mostly completes at once: the timer is
        // only armed for one that has to wait.
        if let Poll::Ready(sent) = futures_util::poll!(send.as_mut()) {
            return if sent.is_ok() {
                Step::Continue
            } else {
                Step::Gone
            };
        }
        tokio::select! {
            biased;
            sent = tokio::time::timeout(SEND_TIMEOUT, send) => {
                match sent {
                    Ok(Ok(())) => Step::Continue,
                    Ok(Err(_)) | Err(_) => Step::Gone,
                }
            }
            () = outbox.overflowed() => Self::too_slow(),
        }
    }

    /// Send the close frame and wait a moment for the peer's.
    async fn close(&mut self, close: Close) {
        tracing::debug!(code = close.code, reason = %close.reason, "closing a WebSocket");
        self.app.metrics.websocket_closed(close.code);
        let frame = CloseFrame {
            code: close.code,
            reason: close.reason.as_ref().into(),
        };
        let sent =
            tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Close(Some(frame)))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = self.socket.recv().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
        })
        .await;
    }
}

/// The API token in a `connection_init` payload: `Authorization` (`Bearer …`) or `token`.
fn token_in(payload: &serde_json::Value) -> Option<&str> {
    let text = |key: &str| payload.get(key).and_then(serde_json::Value::as_str);
    text("Authorization")
        .or_else(|| text("authorization"))
        .and_then(access::bearer_token)
        .or_else(|| text("token"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_come_from_authorization_or_token() {
        assert_eq!(
            token_in(&json!({ "Authorization": "Bearer sbt_a" })),
            Some("sbt_a")
        );
        assert_eq!(
            token_in(&json!({ "authorization": "bearer sbt_b" })),
            Some("sbt_b")
        );
        assert_eq!(token_in(&json!({ "token": "sbt_c" })), Some("sbt_c"));
        assert_eq!(token_in(&json!({ "Authorization": "Basic x" })), None);
        assert_eq!(token_in(&json!({ "token": 1 })), None);
        assert_eq!(token_in(&json!("sbt_d")), None);
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        for close in [
            Close::TERMINATED,
            Close::SHUTDOWN,
            Close::LIFETIME,
            Close::TOO_MANY_SOCKETS,
            Close::UNAVAILABLE,
            Close::BAD_MESSAGE,
            Close::UNAUTHORIZED,
            Close::TOKEN_EXPIRED,
            Close::FORBIDDEN,
            Close::REVOKED,
            Close::MEMBERSHIP_REMOVED,
            Close::INIT_TIMEOUT,
            Close::TOO_MANY_INITS,
            Close::TOO_SLOW,
            Close::duplicate("1"),
            Close::duplicate(&"x".repeat(MAX_ID_BYTES)),
        ] {
            assert!(close.reason.len() <= 123, "{close:?}");
        }
        assert_eq!(
            Close::duplicate("7").reason,
            "Subscriber for 7 already exists"
        );
        assert_eq!(Close::duplicate(&"x".repeat(MAX_ID_BYTES)).code, 4409);
    }

    fn session(
        registry: &mut Registry,
        id: u64,
        user_id: Uuid,
        token_id: Uuid,
        workspace: Uuid,
    ) -> oneshot::Receiver<Close> {
        let (close, closed) = oneshot::channel();
        registry.sessions.insert(
            id,
            Session {
                user_id,
                token_id: Some(token_id),
                token: Secret::new("sbt_x"),
                memberships: HashMap::from([(workspace, Role::Editor)]),
                close,
            },
        );
        registry.by_user.entry(user_id).or_default().insert(id);
        closed
    }

    #[test]
    fn access_changes_close_exactly_the_affected_sessions() {
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, second_token, other_token) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let workspace = Uuid::new_v4();
        let mut registry = Registry::default();
        let mut revoked = session(&mut registry, 1, user, token, workspace);
        let mut kept = session(&mut registry, 2, user, second_token, workspace);
        let mut removed = session(&mut registry, 3, other, other_token, workspace);

        registry.apply(&AccessEvent::TokenRevoked {
            user_id: user,
            token_id: token,
        });
        assert_eq!(revoked.try_recv(), Ok(Close::REVOKED));
        assert!(kept.try_recv().is_err() && removed.try_recv().is_err());
        assert_eq!(registry.of_user(user), vec![2]);

        registry.apply(&AccessEvent::RoleChanged {
            workspace_id: workspace,
            user_id: user,
            role: Role::Viewer,
        });
        assert!(kept.try_recv().is_err(), "a demotion keeps the session");
        assert_eq!(
            registry.sessions[&2].memberships.get(&workspace),
            Some(&Role::Viewer)
        );

        registry.apply(&AccessEvent::MemberRemoved {
            workspace_id: workspace,
            user_id: other,
        });
        assert_eq!(removed.try_recv(), Ok(Close::MEMBERSHIP_REMOVED));
        assert!(kept.try_recv().is_err());
        assert!(!registry.by_user.contains_key(&other));
        assert_eq!(registry.sessions.len(), 1);
    }

    #[test]
    fn protocols_by_name() {
        assert_eq!(
            Protocol::from_name("graphql-transport-ws"),
            Some(Protocol::TransportWs)
        );
        assert_eq!(Protocol::from_name(" graphql-ws"), Some(Protocol::LegacyWs));
        assert_eq!(Protocol::from_name("graphql"), None);
    }
}
