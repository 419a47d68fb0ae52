//! Shared executions of WebSocket subscriptions, and the bounded queue of each socket.
//!
//! Subscribers whose operation is the same (document text, operation name, variables and
//! extensions) and whose access is the same (everything of the [`Principal`] a resolver can
//! read: user, credential, memberships, kind, operator, scope) get the same results, so they
//! share one [`Execution`]: each event runs the selection set once and is serialised once. The
//! execution starts with its first subscriber and ends when its last one leaves (stops, or its
//! socket closes for whatever reason); every subscriber keeps its own operation id, spliced
//! into the message when its socket sends it.
//!
//! An execution never waits for a socket: it puts each result in every subscriber's
//! [`Outbox`], a queue of at most `capacity` messages. A socket whose queue is full when a
//! result arrives has fallen too far behind: its queue is dropped and the socket closes with
//! 4413 (see `ws::Close::TOO_SLOW`), while the others carry on.
//!
//! Only subscriptions are shared, and only once they started without error: a subscriber's
//! own operation is polled once before sharing, so an error at subscribe time (a validation
//! error, `FORBIDDEN`) reaches that subscriber alone. Queries and mutations sent over the
//! socket run on their own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_graphql::parser::types::OperationType;
use async_graphql::{Request, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::app::AppHandle;
use crate::domain::access::{Credential, Principal, Role, UserKind};
use crate::metrics::{ExecutionGuard, SubscriptionGuard};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What makes two subscriptions give the same results.
#[derive(PartialEq, Eq, Hash)]
pub struct Key {
    /// Document text, operation name, variables and extensions, as JSON.
    operation: String,
    scope: Scope,
}

/// Everything of a principal a resolver may read.
#[derive(PartialEq, Eq, Hash)]
struct Scope {
    user_id: Uuid,
    credential: CredentialKey,
    /// Sorted by workspace.
    memberships: Vec<(Uuid, Role)>,
    kind: UserKind,
    operator: bool,
    scope_workspace_id: Option<Uuid>,
}

#[derive(PartialEq, Eq, Hash)]
enum CredentialKey {
    ApiToken(Uuid),
    IdentityProvider {
        issuer: String,
        expires_at: DateTime<Utc>,
    },
}

impl Key {
    /// The key of `request` run as `principal`; `None` when the request cannot be shared (it is
    /// not a subscription, does not parse, or names no single operation).
    pub fn of(request: &mut Request, principal: &Principal) -> Option<Key> {
        if !is_subscription(request) {
            return None;
        }
        let operation = serde_json::to_string(&(
            &request.query,
            &request.operation_name,
            &request.variables,
            &request.extensions,
        ))
        .ok()?;
        // Every field, so that a field added to the principal cannot be forgotten here.
        let Principal {
            user_id,
            credential,
            memberships,
            kind,
            operator,
            scope_workspace_id,
        } = principal;
        let credential = match credential {
            Credential::ApiToken { token_id } => CredentialKey::ApiToken(*token_id),
            Credential::IdentityProvider { issuer, expires_at } => {
                CredentialKey::IdentityProvider {
                    issuer: issuer.clone(),
                    expires_at: *expires_at,
                }
            }
        };
        let mut memberships: Vec<(Uuid, Role)> = memberships
            .iter()
            .map(|(workspace, role)| (*workspace, *role))
            .collect();
        memberships.sort_unstable();
        Some(Key {
            operation,
            scope: Scope {
                user_id: *user_id,
                credential,
                memberships,
                kind: *kind,
                operator: *operator,
                scope_workspace_id: *scope_workspace_id,
            },
        })
    }
}

/// Whether the operation `request` runs is a subscription (parsing it now, which the execution
/// then reuses).
fn is_subscription(request: &mut Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let mut operations = document.operations.iter();
    let chosen = match name.as_deref() {
        Some(name) => operations.find(|(found, _)| found.is_some_and(|found| found == name)),
        None => match (operations.next(), operations.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        },
    };
    chosen.is_some_and(|(_, operation)| operation.node.ty == OperationType::Subscription)
}

/// One result, serialised once for every subscriber.
pub struct Payload {
    json: String,
}

impl Payload {
    fn encode(response: &Response) -> serde_json::Result<Payload> {
        Ok(Payload {
            json: serde_json::to_string(response)?,
        })
    }

    /// The message carrying this result to operation `id`: `{"type":kind,"id":id,"payload":…}`,
    /// as if serialised whole.
    pub fn message(&self, kind: &str, id: &str) -> serde_json::Result<String> {
        let id = serde_json::to_string(id)?;
        let mut text = String::with_capacity(self.json.len() + kind.len() + id.len() + 32);
        text.push_str(r#"{"type":""#);
        text.push_str(kind);
        text.push_str(r#"","id":"#);
        text.push_str(&id);
        text.push_str(r#","payload":"#);
        text.push_str(&self.json);
        text.push('}');
        Ok(text)
    }
}

/// What an execution sends one of its subscribers.
pub enum Item {
    /// A result.
    Next(Arc<Payload>),
    /// The operation ended.
    Complete,
}

/// An item for the operation `id` (its `run`) of a socket.
pub struct Delivery {
    /// The operation id the subscriber chose.
    pub id: Arc<str>,
    /// Which run of that id (ids may be reused once an operation ended).
    pub run: u64,
    /// The item.
    pub item: Item,
}

/// A socket's queue of results waiting to be sent, shared by every execution it subscribes
/// to. Bounded: an execution never waits for it.
pub struct Outbox {
    capacity: usize,
    queue: Mutex<Queue>,
    /// Woken when something was queued or the queue overflowed.
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Delivery>,
    /// The socket fell too far behind: nothing more is queued.
    overflowed: bool,
}

/// Queues at most this large are kept allocated once drained.
const KEPT_QUEUE_CAPACITY: usize = 8;

impl Outbox {
    /// An empty queue of at most `capacity` messages.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            capacity: capacity.max(1),
            queue: Mutex::default(),
            ready: Notify::new(),
        })
    }

    /// Queue `delivery`; `false` when the queue was full, which it stays from then on.
    fn push(&self, delivery: Delivery) -> bool {
        let mut queue = lock(&self.queue);
        if queue.overflowed {
            return false;
        }
        if queue.items.len() >= self.capacity {
            queue.overflowed = true;
            queue.items = VecDeque::new();
            drop(queue);
            self.ready.notify_one();
            tracing::debug!(
                queued = self.capacity,
                "a WebSocket's queue overflowed; it closes"
            );
            return false;
        }
        queue.items.push_back(delivery);
        drop(queue);
        self.ready.notify_one();
        true
    }

    /// The next delivery, waiting for one; `None` once the queue overflowed.
    /// Cancel-safe: nothing is taken out until it is returned.
    pub async fn next(&self) -> Option<Delivery> {
        loop {
            {
                let mut queue = lock(&self.queue);
                if queue.overflowed {
                    return None;
                }
                if let Some(delivery) = queue.items.pop_front() {
                    if queue.items.is_empty() && queue.items.capacity() > KEPT_QUEUE_CAPACITY {
                        queue.items = VecDeque::new();
                    }
                    return Some(delivery);
                }
            }
            self.ready.notified().await;
        }
    }

    /// Resolves once the queue overflowed.
    pub async fn overflowed(&self) {
        loop {
            if lock(&self.queue).overflowed {
                return;
            }
            self.ready.notified().await;
        }
    }
}

/// The executions running for this process's sockets, shared ones by key.
pub struct Fanout {
    shared: Mutex<HashMap<Arc<Key>, Arc<Execution>>>,
}

/// One running operation and the subscribers it serves.
struct Execution {
    /// Its key in the table, when shared.
    key: Option<Arc<Key>>,
    members: Mutex<Members>,
    /// Stops the task that drives it.
    task: Mutex<Option<tokio::task::AbortHandle>>,
    _counted: ExecutionGuard,
}

#[derive(Default)]
struct Members {
    next: u64,
    by_number: HashMap<u64, Member>,
    /// Ended (every subscriber was told, or the last one left): nobody joins any more.
    ended: bool,
}

/// A subscriber of an execution: an operation of a socket.
struct Member {
    outbox: Arc<Outbox>,
    id: Arc<str>,
    run: u64,
}

impl Members {
    fn add(&mut self, member: Member) -> u64 {
        self.next += 1;
        self.by_number.insert(self.next, member);
        self.next
    }
}

/// An operation of a socket as a subscriber of an execution: dropping it leaves (and the last
/// one to leave ends the execution).
pub struct Membership {
    fanout: Arc<Fanout>,
    execution: Arc<Execution>,
    number: u64,
    /// Counts an open subscription while it lives.
    _open: Option<SubscriptionGuard>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.fanout.leave(&self.execution, self.number);
    }
}

/// The subscriber an operation starts: where its results go, under which id and run.
pub struct Subscriber {
    /// The socket's queue.
    pub outbox: Arc<Outbox>,
    /// The operation id.
    pub id: Arc<str>,
    /// Which run of that id.
    pub run: u64,
}

impl Fanout {
    /// No executions yet.
    pub fn new() -> Arc<Fanout> {
        Arc::new(Fanout {
            shared: Mutex::default(),
        })
    }

    /// Executions running now (shared or not).
    #[cfg(test)]
    fn shared_count(&self) -> usize {
        lock(&self.shared).len()
    }

    /// Run `responses` (the operation of `request`, already started) for `subscriber`: shared
    /// with the subscribers of the same `key` when it is a subscription that started without
    /// error (joining a running execution, whose results the fresh `responses` would repeat,
    /// or starting one), on its own otherwise.
    pub fn start(
        self: &Arc<Self>,
        app: &AppHandle,
        key: Option<Key>,
        mut responses: BoxStream<'static, Response>,
        subscriber: Subscriber,
    ) -> Membership {
        let Some(key) = key else {
            return self.alone(app, responses, subscriber, false);
        };
        // A subscription's errors at subscribe time come at the first poll, before it waits
        // for events: they stay with this subscriber.
        let first = futures_util::FutureExt::now_or_never(responses.next());
        match first {
            None => self.share(app, key, responses, subscriber),
            Some(None) => self.alone(
                app,
                futures_util::stream::empty().boxed(),
                subscriber,
                false,
            ),
            Some(Some(first)) => {
                // An event may also have come that fast; the subscription then runs on its own.
                let counted = first.errors.is_empty();
                let responses = futures_util::stream::once(async move { first })
                    .chain(responses)
                    .boxed();
                self.alone(app, responses, subscriber, counted)
            }
        }
    }

    fn share(
        self: &Arc<Self>,
        app: &AppHandle,
        key: Key,
        responses: BoxStream<'static, Response>,
        subscriber: Subscriber,
    ) -> Membership {
        let open = Some(app.metrics.subscription_opened());
        let mut shared = lock(&self.shared);
        if let Some(execution) = shared.get(&key) {
            let mut members = lock(&execution.members);
            if !members.ended {
                let number = members.add(subscriber.into());
                let execution = execution.clone();
                drop(members);
                drop(shared);
                drop(responses);
                return Membership {
                    fanout: self.clone(),
                    execution,
                    number,
                    _open: open,
                };
            }
        }
        let key = Arc::new(key);
        let (execution, number) = self.spawn(app, Some(key.clone()), responses, subscriber);
        shared.insert(key, execution.clone());
        Membership {
            fanout: self.clone(),
            execution,
            number,
            _open: open,
        }
    }

    fn alone(
        self: &Arc<Self>,
        app: &AppHandle,
        responses: BoxStream<'static, Response>,
        subscriber: Subscriber,
        counted: bool,
    ) -> Membership {
        let (execution, number) = self.spawn(app, None, responses, subscriber);
        Membership {
            fanout: self.clone(),
            execution,
            number,
            _open: counted.then(|| app.metrics.subscription_opened()),
        }
    }

    /// Start the task driving a new execution with its first subscriber.
    fn spawn(
        self: &Arc<Self>,
        app: &AppHandle,
        key: Option<Arc<Key>>,
        responses: BoxStream<'static, Response>,
        subscriber: Subscriber,
    ) -> (Arc<Execution>, u64) {
        let mut members = Members::default();
        let number = members.add(subscriber.into());
        let execution = Arc::new(Execution {
            key,
            members: Mutex::new(members),
            task: Mutex::new(None),
            _counted: app.metrics.subscription_execution_started(),
        });
        let task = tokio::spawn(drive(
            self.clone(),
            execution.clone(),
            responses,
            app.clone(),
        ));
        *lock(&execution.task) = Some(task.abort_handle());
        (execution, number)
    }

    /// A subscriber leaves; the last one ends the execution.
    fn leave(&self, execution: &Arc<Execution>, number: u64) {
        let mut shared = lock(&self.shared);
        let mut members = lock(&execution.members);
        members.by_number.remove(&number);
        if !members.by_number.is_empty() || members.ended {
            return;
        }
        members.ended = true;
        drop(members);
        self.forget(&mut shared, execution);
        drop(shared);
        if let Some(task) = lock(&execution.task).take() {
            task.abort();
        }
    }

    /// The execution's results are over: tell every subscriber.
    fn end(&self, execution: &Arc<Execution>) {
        let mut shared = lock(&self.shared);
        self.forget(&mut shared, execution);
        drop(shared);
        let members = {
            let mut members = lock(&execution.members);
            members.ended = true;
            std::mem::take(&mut members.by_number)
        };
        for member in members.into_values() {
            let Member { outbox, id, run } = member;
            outbox.push(Delivery {
                id,
                run,
                item: Item::Complete,
            });
        }
    }

    fn forget(&self, shared: &mut HashMap<Arc<Key>, Arc<Execution>>, execution: &Arc<Execution>) {
        if let Some(key) = &execution.key
            && shared
                .get(key)
                .is_some_and(|running| Arc::ptr_eq(running, execution))
        {
            shared.remove(key);
        }
    }
}

impl From<Subscriber> for Member {
    fn from(subscriber: Subscriber) -> Member {
        Member {
            outbox: subscriber.outbox,
            id: subscriber.id,
            run: subscriber.run,
        }
    }
}

/// Run an execution: finish and serialise each result once, queue it for every subscriber,
/// and tell them when it is over. Aborted when the last subscriber leaves.
async fn drive(
    fanout: Arc<Fanout>,
    execution: Arc<Execution>,
    mut responses: BoxStream<'static, Response>,
    app: AppHandle,
) {
    while let Some(mut response) = responses.next().await {
        app.metrics.subscription_result();
        // Finished (and counted) once here; every further subscriber is counted below, so the
        // request counter still counts one response per subscriber.
        crate::graphql::finish(&app, &mut response);
        let payload = match Payload::encode(&response) {
            Ok(payload) => Arc::new(payload),
            Err(error) => {
                tracing::error!(%error, "a subscription result could not be encoded");
                continue;
            }
        };
        let codes: Vec<&str> = response
            .errors
            .iter()
            .filter_map(|error| match error.extensions.as_ref()?.get("code")? {
                async_graphql::Value::String(code) => Some(code.as_str()),
                _ => None,
            })
            .collect();
        let members = lock(&execution.members);
        for (index, member) in members.by_number.values().enumerate() {
            if index > 0 {
                app.metrics.graphql_request(codes.iter().copied());
            }
            member.outbox.push(Delivery {
                id: member.id.clone(),
                run: member.run,
                item: Item::Next(payload.clone()),
            });
        }
    }
    fanout.end(&execution);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spliced_message_reads_as_the_whole_message() {
        let response = Response::new(async_graphql::Value::from_json(json!({ "a": 1 })).unwrap());
        let payload = Payload::encode(&response).unwrap();
        let text = payload.message("next", "id \"7\"\n").unwrap();
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            message,
            json!({ "type": "next", "id": "id \"7\"\n", "payload": { "data": { "a": 1 } } })
        );
    }

    fn delivery(run: u64) -> Delivery {
        Delivery {
            id: Arc::from("1"),
            run,
            item: Item::Complete,
        }
    }

    #[tokio::test]
    async fn an_outbox_keeps_order_and_overflows_once_full() {
        let outbox = Outbox::new(2);
        assert!(outbox.push(delivery(1)));
        assert!(outbox.push(delivery(2)));
        assert_eq!(outbox.next().await.map(|d| d.run), Some(1));
        assert!(outbox.push(delivery(3)));
        assert!(
            !outbox.push(delivery(4)),
            "a third waiting message is one too many"
        );
        assert!(!outbox.push(delivery(5)));
        assert!(outbox.next().await.is_none(), "the queue was dropped");
        outbox.overflowed().await;
    }

    #[test]
    fn only_a_single_subscription_is_shared() {
        let principal = Principal {
            user_id: Uuid::new_v4(),
            credential: Credential::ApiToken {
                token_id: Uuid::new_v4(),
            },
            memberships: HashMap::from([
                (Uuid::new_v4(), Role::Viewer),
                (Uuid::new_v4(), Role::Admin),
            ]),
            kind: UserKind::Human,
            operator: false,
            scope_workspace_id: None,
        };
        let key = |query: &str, name: Option<&str>| {
            let mut request = Request::new(query);
            request.operation_name = name.map(str::to_owned);
            Key::of(&mut request, &principal)
        };
        assert!(key("subscription { a }", None).is_some());
        assert!(key("subscription S { a } query Q { b }", Some("S")).is_some());
        assert!(key("subscription S { a } query Q { b }", Some("Q")).is_none());
        assert!(key("subscription S { a } query Q { b }", None).is_none());
        assert!(key("{ a }", None).is_none());
        assert!(key("mutation { a }", None).is_none());
        assert!(key("subscription {", None).is_none());
        // The same memberships in any order make the same key; another role does not.
        let same = Principal {
            memberships: principal.memberships.clone().into_iter().collect(),
            ..principal.clone()
        };
        let mut request = Request::new("subscription { a }");
        assert!(Key::of(&mut request, &same) == key("subscription { a }", None));
        let mut demoted = principal.clone();
        for role in demoted.memberships.values_mut() {
            *role = Role::Viewer;
        }
        assert!(Key::of(&mut request, &demoted) != key("subscription { a }", None));
        let mut other_token = principal.clone();
        other_token.credential = Credential::ApiToken {
            token_id: Uuid::new_v4(),
        };
        assert!(Key::of(&mut request, &other_token) != key("subscription { a }", None));
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_ends_a_shared_execution() {
        let fanout = Fanout::new();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let (outbox, other) = (Outbox::new(4), Outbox::new(4));
        let execution = Arc::new(Execution {
            key: Some(Arc::new(Key {
                operation: "op".to_owned(),
                scope: Scope {
                    user_id: Uuid::nil(),
                    credential: CredentialKey::ApiToken(Uuid::nil()),
                    memberships: Vec::new(),
                    kind: UserKind::Human,
                    operator: false,
                    scope_workspace_id: None,
                },
            })),
            members: Mutex::default(),
            task: Mutex::new(None),
            _counted: metrics.subscription_execution_started(),
        });
        let numbers: Vec<u64> = [&outbox, &other]
            .into_iter()
            .map(|outbox| {
                lock(&execution.members).add(Member {
                    outbox: outbox.clone(),
                    id: Arc::from("1"),
                    run: 1,
                })
            })
            .collect();
        let key = execution.key.clone().unwrap();
        lock(&fanout.shared).insert(key, execution.clone());
        fanout.leave(&execution, numbers[0]);
        assert_eq!(fanout.shared_count(), 1, "one subscriber is left");
        fanout.leave(&execution, numbers[1]);
        assert_eq!(fanout.shared_count(), 0);
        assert!(lock(&execution.members).ended);
    }
}
