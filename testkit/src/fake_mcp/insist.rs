//! The `insist` tool: a server of the 2025-11-25 revision that asks for input in the middle
//! of a call whatever the client declared.
//!
//! A legacy-era call answers with an event stream: first an `elicitation/create` request of
//! the server's own, then, once the client has posted its answer (or after
//! [`ANSWER_TIMEOUT`]), the call's result, whose text names the action received. In the
//! modern era the tool is unknown to the input-request machinery and echoes like any other.
//! [`super::FakeMcpServer::elicitation_answers`] gives the answers received.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Shared;

/// The tool's name.
pub const INSIST: &str = "insist";

/// How long the server waits for the client's answer before it goes on without one.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The `insist` tool's definition.
pub fn insist_tool() -> Value {
    json!({
        "name": INSIST,
        "description": "Asks for confirmation mid-call, whether or not the client can answer.",
        "inputSchema": { "type": "object", "properties": {} },
    })
}

impl Shared {
    /// Answer a legacy `tools/call` of [`INSIST`] with its event stream.
    pub(super) fn insist(self: &Arc<Self>, id: Value) -> Response {
        let (answer, answered) = oneshot::channel();
        let ask_id = {
            let mut state = self.lock();
            state.next_server_request += 1;
            let ask_id = format!("server-request-{}", state.next_server_request);
            state.awaiting_answers.insert(ask_id.clone(), answer);
            ask_id
        };
        let ask = json!({
            "jsonrpc": "2.0",
            "id": ask_id,
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": "Really go ahead?",
                "requestedSchema": {
                    "type": "object",
                    "properties": { "go": { "type": "boolean" } },
                    "required": ["go"],
                },
            },
        });
        let shared = self.clone();
        let result = async move {
            let action = match tokio::time::timeout(ANSWER_TIMEOUT, answered).await {
                Ok(Ok(answer)) => {
                    let action = answer
                        .pointer("/result/action")
                        .and_then(Value::as_str)
                        .unwrap_or("none")
                        .to_owned();
                    shared.lock().elicitation_answers.push(answer);
                    action
                }
                _ => {
                    shared.lock().awaiting_answers.remove(&ask_id);
                    "none".to_owned()
                }
            };
            let result = json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {
                    "content": [{ "type": "text", "text": format!("went on; the answer was {action}") }],
                    "isError": false,
                },
            });
            Ok::<_, Infallible>(Bytes::from(event(&result)))
        };
        let stream = futures_util::stream::iter([Ok(Bytes::from(event(&ask)))])
            .chain(futures_util::stream::once(result));
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response()
    }

    /// A client's answer to one of the server's requests: handed to the call waiting for it.
    /// Whether one was waiting.
    pub(super) fn answered(&self, message: &Value) -> bool {
        let Some(id) = message.get("id").and_then(Value::as_str) else {
            return false;
        };
        let Some(waiting) = self.lock().awaiting_answers.remove(id) else {
            return false;
        };
        waiting.send(message.clone()).is_ok()
    }
}

fn event(message: &Value) -> String {
    format!("event: message\ndata: {message}\n\n")
}
