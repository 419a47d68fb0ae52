//! `subscriptions/listen`: long-lived event streams carrying change notifications.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::modern::{META_SUBSCRIPTION_ID, server_info_meta};
use super::{Caller, Shared};

/// How long a stream stays quiet before it gets an SSE comment, as servers send to keep
/// intermediaries and idle timeouts from closing a listen stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The open listen streams.
#[derive(Default)]
pub(super) struct Listeners {
    next_key: u64,
    open: Vec<Listener>,
}

struct Listener {
    key: u64,
    /// The listen request's id: the subscription id.
    id: Value,
    /// The caller's subject under OAuth.
    subject: Option<String>,
    /// Whether `toolsListChanged` was asked for (and granted).
    tools: bool,
    events: UnboundedSender<String>,
}

impl Listeners {
    pub(super) fn len(&self) -> usize {
        self.open.len()
    }

    /// Tell the streams that asked for it that the tools changed: all of them, or only those
    /// of `subject`'s callers.
    pub(super) fn tools_changed(&mut self, subject: Option<&str>) {
        self.open.retain(|listener| {
            let concerned = listener.tools
                && subject.is_none_or(|subject| listener.subject.as_deref() == Some(subject));
            if !concerned {
                return true;
            }
            let notification = json!({
                "jsonrpc": "2.0",
                "method": "notifications/tools/list_changed",
                "params": { "_meta": { META_SUBSCRIPTION_ID: listener.id } },
            });
            listener.events.send(event(&notification)).is_ok()
        });
    }

    /// End every stream, after its final result when `graceful`.
    pub(super) fn close_all(&mut self, graceful: bool) {
        for listener in self.open.drain(..) {
            if graceful {
                let mut meta = server_info_meta();
                meta[META_SUBSCRIPTION_ID] = listener.id.clone();
                let result = json!({
                    "jsonrpc": "2.0",
                    "id": listener.id,
                    "result": { "resultType": "complete", "_meta": meta },
                });
                // A stream whose client left has nobody to tell.
                let _ = listener.events.send(event(&result));
            }
        }
    }

    fn remove(&mut self, key: u64) {
        self.open.retain(|listener| listener.key != key);
    }
}

fn event(message: &Value) -> String {
    format!("event: message\ndata: {message}\n\n")
}

/// Keeps a stream counted among the open ones until its body is dropped: when the stream ends
/// or the client goes away.
struct Registration {
    shared: Arc<Shared>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Never panic in drop: a poisoned lock has already failed the test.
        if let Ok(mut state) = self.shared.state.lock() {
            state.listeners.remove(self.key);
        }
    }
}

/// Answer a listen request with its event stream: the acknowledgement first, then whatever
/// the server sends until it ends the stream or the client leaves.
pub(super) fn open(
    shared: &Arc<Shared>,
    id: Value,
    params: &Value,
    caller: Option<&Caller>,
) -> Response {
    let tools = params
        .get("notifications")
        .and_then(|filter| filter.get("toolsListChanged"))
        == Some(&Value::Bool(true));
    let granted = if tools {
        json!({ "toolsListChanged": true })
    } else {
        json!({})
    };
    let (events, receiver) = unbounded_channel();
    let acknowledgement = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": { "_meta": { META_SUBSCRIPTION_ID: id }, "notifications": granted },
    });
    // The receiver is right here, so this cannot fail.
    let _ = events.send(event(&acknowledgement));
    let key = {
        let mut state = shared.lock();
        let key = state.listeners.next_key;
        state.listeners.next_key += 1;
        state.listeners.open.push(Listener {
            key,
            id,
            subject: caller.map(|caller| caller.subject.clone()),
            tools,
            events,
        });
        key
    };
    let registration = Registration {
        shared: shared.clone(),
        key,
    };
    let stream = futures_util::stream::unfold(
        (receiver, registration),
        |(mut receiver, registration)| async move {
            next_event(&mut receiver).await.map(|event| {
                (
                    Ok::<_, Infallible>(Bytes::from(event)),
                    (receiver, registration),
                )
            })
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The next event to write: one the server sent, or a keep-alive comment after a quiet
/// while; `None` once the server ended the stream.
async fn next_event(receiver: &mut UnboundedReceiver<String>) -> Option<String> {
    match tokio::time::timeout(KEEP_ALIVE, receiver.recv()).await {
        Ok(event) => event,
        Err(_) => Some(":\n\n".to_owned()),
    }
}
