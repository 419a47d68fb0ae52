//! Open MCP sessions kept between tool calls, one per server and grant.
//!
//! Opening a session costs a round trip for `initialize` and another for the `initialized`
//! notification, and closing it a third; a tool call on an open session costs one request.
//! So a call borrows the server's open session when it was opened for exactly the same
//! target — URL, transport, timeout, static headers and access token — and opens (and keeps)
//! a new one otherwise. A refreshed token, an edited URL or header, or a rotated grant
//! therefore never reuses a session opened with the old credentials.
//!
//! Invariants:
//! - At most one session per server and grant (the workspace's shared grant, or one user's
//!   own): concurrent callers that find none wait for one opener instead of each running the
//!   handshake. One user's session is never handed to another: its key names the user, and its
//!   fingerprint covers the access token.
//! - At most [`MAX_KEPT`] sessions are kept: past that, the least recently used are ended, so
//!   a thousand users of a hundred servers cannot hold a hundred thousand connections.
//! - The pool stores a SHA-256 fingerprint of the target, never the credentials themselves.
//! - A session that failed, that the server ended, or that sat idle longer than
//!   [`IDLE_TIMEOUT`] is never handed out again; dropping the last reference ends it (rmcp
//!   closes the transport, which deletes the session on the server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::session::{self, McpError, McpSession, McpTarget};
use crate::net::GuardedClient;

/// How long an unused session is kept. Servers expire idle sessions on their own schedule;
/// one that expired sooner answers 404 and is replaced by the caller.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Slots above which idle ones are swept when a new session opens.
const SWEEP_ABOVE: usize = 256;

/// Sessions kept at most; the least recently used go first.
pub const MAX_KEPT: usize = 1024;

/// Which session: a server, reached with the workspace's shared grant (`user: None`) or with
/// one user's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The server.
    pub server: Uuid,
    /// The user whose own grant the session was opened with.
    pub user: Option<Uuid>,
}

/// Open sessions by server and grant.
#[derive(Default)]
pub struct SessionPool {
    slots: Mutex<HashMap<SessionKey, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Kept>>,
    /// Held while a session is being opened, so only one caller runs the handshake.
    opening: tokio::sync::Mutex<()>,
}

struct Kept {
    session: Arc<McpSession>,
    fingerprint: [u8; 32],
    last_used: Instant,
}

impl SessionPool {
    /// The open session of `key` for `target`, or a newly opened one (kept for later calls).
    pub async fn lease(
        &self,
        http: &GuardedClient,
        key: SessionKey,
        target: McpTarget,
    ) -> Result<Arc<McpSession>, McpError> {
        let fingerprint = fingerprint(&target);
        let slot = self.slot(key);
        if let Some(session) = slot.usable(&fingerprint) {
            return Ok(session);
        }
        let _opening = slot.opening.lock().await;
        // Another caller may have opened it while this one waited.
        if let Some(session) = slot.usable(&fingerprint) {
            return Ok(session);
        }
        // Boxed: opening is rare, and its future would otherwise weigh on every lease's.
        let session = Arc::new(Box::pin(session::open(http, target)).await?);
        let replaced = lock(&slot.current).replace(Kept {
            session: Arc::clone(&session),
            fingerprint,
            last_used: Instant::now(),
        });
        drop(replaced);
        self.sweep_if_large();
        Ok(session)
    }

    /// Stop handing out `session` for this key (it failed, or the server ended it). Calls
    /// still using it finish; the session ends when the last of them lets go.
    pub fn discard(&self, key: SessionKey, session: &Arc<McpSession>) {
        let slot = lock(&self.slots).get(&key).cloned();
        if let Some(slot) = slot {
            let mut current = lock(&slot.current);
            if current
                .as_ref()
                .is_some_and(|kept| Arc::ptr_eq(&kept.session, session))
            {
                current.take();
            }
        }
    }

    /// Forget every session of the server (the server was deleted or changed).
    pub fn forget(&self, server_id: Uuid) {
        let mut removed = Vec::new();
        lock(&self.slots).retain(|key, slot| {
            if key.server == server_id {
                removed.push(Arc::clone(slot));
            }
            key.server != server_id
        });
        drop(removed);
    }

    /// Forget one session (its grant was withdrawn).
    pub fn forget_key(&self, key: SessionKey) {
        let removed = lock(&self.slots).remove(&key);
        drop(removed);
    }

    /// How many servers have a session kept open.
    pub fn open_sessions(&self) -> usize {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        slots
            .iter()
            .filter(|slot| lock(&slot.current).is_some())
            .count()
    }

    fn slot(&self, key: SessionKey) -> Arc<Slot> {
        Arc::clone(lock(&self.slots).entry(key).or_default())
    }

    /// Drop idle sessions and empty slots once many have been opened, then the least recently
    /// used beyond [`MAX_KEPT`].
    fn sweep_if_large(&self) {
        if lock(&self.slots).len() > SWEEP_ABOVE {
            self.reap_idle(IDLE_TIMEOUT);
        }
        self.cap(MAX_KEPT);
    }

    /// End the least recently used sessions until at most `max` are kept; returns how many
    /// were ended.
    pub(crate) fn cap(&self, max: usize) -> usize {
        let slots = lock(&self.slots);
        let mut kept: Vec<(Instant, SessionKey)> = slots
            .iter()
            .filter_map(|(key, slot)| lock(&slot.current).as_ref().map(|k| (k.last_used, *key)))
            .collect();
        if kept.len() <= max {
            return 0;
        }
        kept.sort_unstable_by_key(|(last_used, _)| *last_used);
        let excess = kept.len() - max;
        let mut ended = Vec::with_capacity(excess);
        for (_, key) in kept.into_iter().take(excess) {
            if let Some(slot) = slots.get(&key) {
                ended.push(lock(&slot.current).take());
            }
        }
        drop(slots);
        let count = ended.len();
        drop(ended);
        count
    }

    /// End the sessions unused for `idle` or longer, or that the server ended, and forget
    /// empty slots; returns how many sessions were ended. Run periodically, so an idle session
    /// does not hold its connection (and the credentials it was opened with) for long.
    pub fn reap_idle(&self, idle: Duration) -> usize {
        let mut ended = 0;
        let mut slots = lock(&self.slots);
        slots.retain(|_, slot| {
            let mut current = lock(&slot.current);
            if current
                .as_ref()
                .is_some_and(|kept| kept.session.is_closed() || kept.last_used.elapsed() >= idle)
            {
                current.take();
                ended += 1;
            }
            // A slot someone is opening a session in stays.
            current.is_some() || slot.opening.try_lock().is_err()
        });
        ended
    }
}

impl Slot {
    /// The kept session when it matches the target and can still be used.
    fn usable(&self, fingerprint: &[u8; 32]) -> Option<Arc<McpSession>> {
        let mut current = lock(&self.current);
        let kept = current.as_mut()?;
        if kept.fingerprint != *fingerprint || !kept.fresh() {
            return None;
        }
        kept.last_used = Instant::now();
        Some(Arc::clone(&kept.session))
    }
}

impl Kept {
    fn fresh(&self) -> bool {
        !self.session.is_closed() && self.last_used.elapsed() < IDLE_TIMEOUT
    }
}

/// A digest of everything a session was opened with. Fields are length-prefixed so that no
/// two different targets run together into the same bytes.
fn fingerprint(target: &McpTarget) -> [u8; 32] {
    fn field(hasher: &mut Sha256, value: &[u8]) {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
    let mut hasher = Sha256::new();
    field(&mut hasher, target.url.as_str().as_bytes());
    field(&mut hasher, target.transport.as_str().as_bytes());
    field(&mut hasher, &target.timeout.as_millis().to_be_bytes());
    hasher.update((target.headers.len() as u64).to_be_bytes());
    for (name, value) in &target.headers {
        field(&mut hasher, name.as_bytes());
        field(&mut hasher, value.expose().as_bytes());
    }
    match &target.bearer {
        Some(bearer) => {
            hasher.update([1]);
            field(&mut hasher, bearer.expose().as_bytes());
        }
        None => hasher.update([0]),
    }
    hasher.finalize().into()
}

/// The pool's maps hold no invariant a panic could break halfway, so a poisoned lock is used
/// as is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Secret;
    use crate::mcp::Transport;

    fn target(bearer: Option<&str>) -> McpTarget {
        McpTarget {
            url: url::Url::parse("https://mcp.example.com/mcp").expect("url"),
            transport: Transport::StreamableHttp,
            headers: vec![("X-Team".to_owned(), Secret::new("blue".to_owned()))],
            bearer: bearer.map(|b| Secret::new(b.to_owned())),
            timeout: Duration::from_secs(30),
            era: crate::mcp::Era::Unknown,
            machine_client: false,
        }
    }

    #[test]
    fn fingerprints_differ_whenever_the_credentials_do() {
        let base = fingerprint(&target(Some("token-1")));
        assert_eq!(base, fingerprint(&target(Some("token-1"))));
        assert_ne!(base, fingerprint(&target(Some("token-2"))));
        assert_ne!(base, fingerprint(&target(None)));
        let mut header = target(Some("token-1"));
        header.headers[0].1 = Secret::new("green".to_owned());
        assert_ne!(base, fingerprint(&header));
        let mut url = target(Some("token-1"));
        url.url = url::Url::parse("https://mcp.example.com/other").expect("url");
        assert_ne!(base, fingerprint(&url));
        let mut transport = target(Some("token-1"));
        transport.transport = Transport::Sse;
        assert_ne!(base, fingerprint(&transport));
    }
}
