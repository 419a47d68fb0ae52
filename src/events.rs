//! The event bus: fan-out of two streams of events to this process's subscribers and, on
//! PostgreSQL, to the other replicas'. Infrastructure: it knows nothing of what the events
//! say. The domain names the payloads (`domain::status::EventBus` carries status changes and
//! access changes); here they are any [`Event`], serialised with serde.
//!
//! The two streams differ in what a subscriber that misses events is told. Status events go to
//! [`Bus::subscribe`]rs, and one that falls behind loses the oldest (dashboards read the
//! current state with a query). Access events go to [`Bus::subscribe_access`]rs wrapped in a
//! [`Signal`], and whenever some may have been missed they are sent [`Signal::Recheck`].
//!
//! On PostgreSQL the bus relays both streams between replicas sharing the database: each
//! published event is delivered locally at once and handed, in publishing order, to one task
//! that sends it with `NOTIFY` on [`CHANNEL`], stamped with the bus's random origin and a
//! sequence number. Another task listens on that channel, skips its own origin (already
//! delivered) and any sequence number it has seen before (a resend after an ambiguous
//! failure), and delivers the rest locally. PostgreSQL delivers notifications in commit order
//! and the sender commits one at a time, so every replica sees another's events in the order
//! they were published. Events notified while a listener is reconnecting are lost, as events
//! published before subscribing are: access subscribers are told to recheck whenever the
//! listener reconnects or a sequence number shows a gap.
//!
//! The wire form is one JSON [`Envelope`] per notification: `origin`, `seq`, and the event under
//! the key `event` (status) or `access`. Replicas of different versions share a database
//! during a rolling upgrade, so it does not change.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::db::notify::{Listener, Notification};
use crate::db::{self, DatabaseTarget, Db, DbError, PoolOptions};
use crate::supervisor::Supervisor;

/// The PostgreSQL notification channel that carries events between replicas.
pub const CHANNEL: &str = "switchboard_status";

/// PostgreSQL refuses notification payloads of 8000 bytes or more.
pub const MAX_PAYLOAD_BYTES: usize = 7999;
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

/// What the bus can carry.
pub trait Event: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Make the event smaller when its notification payload is over PostgreSQL's limit (cut
    /// free text, say). Called at most once; an event that still does not fit is not shared.
    fn shrink(&mut self) {}

    /// Log, with the ids that name it, that this event cannot be shared with other replicas
    /// (`reason`: the queue is full or closed).
    fn warn_unshared(&self, reason: &str);
}

/// What subscribers of the access stream receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal<A> {
    /// One change.
    Changed(A),
    /// Changes may have been missed (the link to the other replicas was lost for a while, or
    /// this subscriber fell behind): check every open session against the database again.
    Recheck,
}

/// Fan-out of status events `S` and access events `A` to this process's subscribers and, on
/// PostgreSQL, to the other replicas'. Clones share the same subscribers; the relay tasks are
/// services of the supervisor given to [`Bus::replicated`] and stop with it.
#[derive(Clone)]
pub struct Bus<S, A> {
    local: broadcast::Sender<S>,
    access: broadcast::Sender<Signal<A>>,
    relay: Option<Arc<Relay<S, A>>>,
}

/// The link of a bus to the other replicas: the queue of events to send. The sending task
/// ends by itself once the queue is closed and drained.
struct Relay<S, A> {
    outbox: mpsc::Sender<Outgoing<S, A>>,
}

/// What the bus carries between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shared<S, A> {
    /// A status event (under the key `event`, as replicas have always sent it).
    #[serde(rename = "event")]
    Status(S),
    /// An access event.
    #[serde(rename = "access")]
    Access(A),
}

/// An item of the sending queue.
enum Outgoing<S, A> {
    /// Send this to the other replicas.
    Event(Shared<S, A>),
    /// Everything queued before has been sent or given up: say so.
    Flush(oneshot::Sender<()>),
}

/// One event on the wire between replicas.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<S, A> {
    /// The bus that published it.
    pub origin: Uuid,
    /// Its position among that bus's events, from 1.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub shared: Shared<S, A>,
}

impl<S: Event, A: Event> Default for Bus<S, A> {
    fn default() -> Self {
        Bus::new(4096)
    }
}

impl<S: Event, A: Event> Bus<S, A> {
    /// A bus for one process that keeps up to `capacity` undelivered status events per slow
    /// subscriber.
    pub fn new(capacity: usize) -> Bus<S, A> {
        let (local, _) = broadcast::channel(capacity);
        let (access, _) = broadcast::channel(ACCESS_CAPACITY);
        Bus {
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
    ) -> Result<Bus<S, A>, DbError> {
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
        let first = Arc::new(Mutex::new(Some(Listener::start(url, CHANNEL).await)));
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
                        let listener = Listener::start(&url, CHANNEL).await;
                        let _ = access.send(Signal::Recheck);
                        listener
                    }
                };
                receive_from_replicas(listener, origin, local, access).await;
            }
        });
        Ok(Bus {
            local,
            access,
            relay: Some(Arc::new(Relay { outbox })),
        })
    }

    /// Publish one status event (call after the change committed). No subscribers is not an
    /// error. Subscribers of this process get it at once; other replicas shortly after.
    pub fn publish(&self, event: S) {
        // Traced as a step of whatever changed the status, never as a trace of its own.
        let _span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                target: crate::telemetry::SPANS,
                "status.publish",
                otel.name = "publish mcpServerStatus",
                otel.kind = "producer",
                messaging.operation.type = "publish",
                messaging.destination.name = "mcpServerStatus",
            )
        }
        .entered();
        self.share(Shared::Status(event.clone()));
        let _ = self.local.send(event);
    }

    /// Publish one access event (call after it committed), to this process's access
    /// subscribers at once and to other replicas' shortly after.
    pub fn publish_access(&self, event: A) {
        self.share(Shared::Access(event.clone()));
        let _ = self.access.send(Signal::Changed(event));
    }

    fn share(&self, shared: Shared<S, A>) {
        if let Some(relay) = &self.relay
            && let Err(error) = relay.outbox.try_send(Outgoing::Event(shared))
        {
            let reason = error.to_string();
            match error.into_inner() {
                Outgoing::Event(Shared::Status(event)) => event.warn_unshared(&reason),
                Outgoing::Event(Shared::Access(event)) => event.warn_unshared(&reason),
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

    /// A new subscription to status events, receiving those published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<S> {
        self.local.subscribe()
    }

    /// A new subscription to access events, from now on.
    pub fn subscribe_access(&self) -> broadcast::Receiver<Signal<A>> {
        self.access.subscribe()
    }

    /// Number of live status subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.local.receiver_count()
    }
}

/// Send queued events, one at a time and in order, with `NOTIFY`. An event is retried a few
/// times (a resend after an ambiguous failure is filtered by its sequence number) and then
/// given up with a warning, so one bad moment of the database never holds later events for
/// long.
async fn send_to_replicas<S: Event, A: Event>(
    db: Db,
    origin: Uuid,
    queued: Arc<tokio::sync::Mutex<mpsc::Receiver<Outgoing<S, A>>>>,
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
                db::notify::notify(&mut conn, CHANNEL, &payload).await
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

/// The notification payload for an event, [shrunk](Event::shrink) if that makes it fit;
/// `None` when it still does not.
pub fn encode<S: Event, A: Event>(origin: Uuid, seq: u64, shared: Shared<S, A>) -> Option<String> {
    let mut envelope = Envelope {
        origin,
        seq,
        shared,
    };
    let payload = serde_json::to_string(&envelope).ok()?;
    if payload.len() <= MAX_PAYLOAD_BYTES {
        return Some(payload);
    }
    match &mut envelope.shared {
        Shared::Status(event) => event.shrink(),
        Shared::Access(event) => event.shrink(),
    }
    serde_json::to_string(&envelope)
        .ok()
        .filter(|payload| payload.len() <= MAX_PAYLOAD_BYTES)
}

/// Deliver other replicas' events to this process's subscribers. Whenever events may have been
/// missed (the listener reconnected, or another replica's sequence jumped), access subscribers
/// are told to recheck.
async fn receive_from_replicas<S: Event, A: Event>(
    listener: Listener,
    origin: Uuid,
    local: broadcast::Sender<S>,
    access: broadcast::Sender<Signal<A>>,
) {
    let mut notifications = std::pin::pin!(listener.into_stream());
    let mut seen = SeenSequences::default();
    while let Some(notification) = notifications.next().await {
        let payload = match notification {
            Notification::Payload(payload) => payload,
            Notification::Reconnected => {
                let _ = access.send(Signal::Recheck);
                continue;
            }
        };
        let envelope: Envelope<S, A> = match serde_json::from_str(&payload) {
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
                let _ = access.send(Signal::Recheck);
            }
        }
        match envelope.shared {
            Shared::Status(event) => {
                let _ = local.send(event);
            }
            Shared::Access(event) => {
                let _ = access.send(Signal::Changed(event));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A status-like event: a name and free text that may be cut.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Note {
        name: String,
        text: String,
    }

    impl Event for Note {
        fn shrink(&mut self) {
            self.text.truncate(16);
        }

        fn warn_unshared(&self, reason: &str) {
            tracing::warn!(note = %self.name, %reason, "a note cannot be shared");
        }
    }

    /// An access-like event that cannot be shrunk.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Grant {
        user: String,
    }

    impl Event for Grant {
        fn warn_unshared(&self, reason: &str) {
            tracing::warn!(user = %self.user, %reason, "a grant cannot be shared");
        }
    }

    type TestBus = Bus<Note, Grant>;

    fn note(text: &str) -> Note {
        Note {
            name: "n".to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn the_envelope_names_origin_sequence_and_stream() {
        let origin = Uuid::new_v4();
        let payload = encode::<Note, Grant>(origin, 7, Shared::Status(note("hello"))).unwrap();
        let wire: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "origin": origin.to_string(),
                "seq": 7,
                "event": {"name": "n", "text": "hello"},
            })
        );
        let grant = Grant {
            user: "u".to_owned(),
        };
        let payload = encode::<Note, Grant>(origin, 8, Shared::Access(grant.clone())).unwrap();
        let back: Envelope<Note, Grant> = serde_json::from_str(&payload).unwrap();
        assert_eq!((back.origin, back.seq), (origin, 8));
        assert_eq!(back.shared, Shared::Access(grant));
    }

    #[test]
    fn an_event_too_large_is_shrunk_once_then_dropped() {
        let long = note(&"x".repeat(MAX_PAYLOAD_BYTES));
        let payload = encode::<Note, Grant>(Uuid::new_v4(), 1, Shared::Status(long)).unwrap();
        assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        let back: Envelope<Note, Grant> = serde_json::from_str(&payload).unwrap();
        assert_eq!(back.shared, Shared::Status(note(&"x".repeat(16))));

        let unshrinkable = Grant {
            user: "u".repeat(MAX_PAYLOAD_BYTES),
        };
        assert!(encode::<Note, Grant>(Uuid::new_v4(), 2, Shared::Access(unshrinkable)).is_none());
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
        let bus = TestBus::default();
        let mut receiver = bus.subscribe();
        bus.publish(note("one"));
        bus.publish(note("two"));
        assert_eq!(receiver.recv().await.unwrap(), note("one"));
        assert_eq!(receiver.recv().await.unwrap(), note("two"));
        assert!(receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn access_events_reach_local_access_subscribers_only() {
        let bus = TestBus::default();
        let mut status = bus.subscribe();
        let mut access = bus.subscribe_access();
        let grant = Grant {
            user: "u".to_owned(),
        };
        bus.publish_access(grant.clone());
        assert_eq!(access.recv().await.unwrap(), Signal::Changed(grant));
        assert!(status.try_recv().is_err());
        assert!(bus.flush(Duration::from_millis(10)).await);
    }
}
