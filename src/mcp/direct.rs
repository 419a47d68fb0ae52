//! A tool call to a server of the earlier revisions over Streamable HTTP, posted and answered
//! in the caller's own task.
//!
//! Through rmcp's service a call crosses four tasks each way: the caller hands it to the
//! service's task, which hands it to the transport's worker, which posts it; an answer in an
//! event stream is read by a task of its own and travels back the same way. Each hand-over is
//! a wake-up, often of the other worker thread, and while calls wait on a slow server those
//! wake-ups cost more than the call's own work. Here the call is posted through the session's
//! HTTP client (so with the same limits, refusals and trace headers, see [`super::traced`])
//! and its answer read where it is awaited. The session stays rmcp's: it was opened there, it
//! lists the tools, it answers whatever arrives on the session's own stream, and it is closed
//! there.
//!
//! Invariants:
//! - The call goes out as rmcp's transport would send it: the session's id, the negotiated
//!   version (`MCP-Protocol-Version`), the static headers and the bearer token, under a
//!   request id never used before ([`super::ids::fresh_call_id`]).
//! - A request the server sends on the call's stream is answered: `ping` with an empty
//!   result, `elicitation/create` with `cancel` (and remembered for the call), anything else
//!   with "method not found", since Switchboard declares no capability to such a server.
//!   Notifications are passed over.
//! - Each answer and event is bounded by the transport's own limits, the exchange as a whole
//!   by the session's timeout, which the caller applies.
//! - A stream that ends, or breaks, before the answer is [`McpError::Interrupted`]: the
//!   server may have run the tool.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt as _;
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ClientResult, ErrorCode, ErrorData, JsonRpcMessage,
    JsonRpcRequest, RequestId, ServerJsonRpcMessage, ServerRequest, ServerResult,
};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient as _, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::Error as SseError;

use super::session::{McpError, http_error, rpc_error};
use super::traced::{SessionId, TracedHttp};
use super::unanswered::Unanswered;

/// Where and how a session's calls are posted.
pub(super) struct DirectCalls {
    http: TracedHttp,
    uri: Arc<str>,
    /// The bearer token, as the session's transport sends it.
    auth: Option<String>,
    /// The transport's static headers and `MCP-Protocol-Version`.
    headers: HashMap<HeaderName, HeaderValue>,
    limits: StreamableHttpResponseLimits,
    session: Arc<SessionId>,
    /// Calls posted so far, for the tests to tell this path from rmcp's.
    #[cfg(test)]
    pub(super) posted: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for DirectCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectCalls").finish_non_exhaustive()
    }
}

impl DirectCalls {
    /// Calls sent as the transport configured by `config` sends its requests (the same URL,
    /// token, headers and limits), on the session `session` names, at the negotiated
    /// `version`.
    pub(super) fn new(
        client: reqwest::Client,
        config: StreamableHttpClientTransportConfig,
        session: Arc<SessionId>,
        version: &str,
    ) -> Result<DirectCalls, McpError> {
        let mut headers = config.custom_headers;
        let version = HeaderValue::from_str(version).map_err(|_| {
            McpError::Protocol("the server negotiated a version that is not a header".to_owned())
        })?;
        headers.insert(HeaderName::from_static("mcp-protocol-version"), version);
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = config.max_sse_event_size;
        limits.max_json_response_size = config.max_json_response_size;
        limits.max_error_response_size = config.max_error_response_size;
        Ok(DirectCalls {
            http: TracedHttp::new(client, false, session.clone()),
            uri: config.uri,
            auth: config.auth_header,
            headers,
            limits,
            session,
            #[cfg(test)]
            posted: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Post `request` under `id` and read its answer, answering what the server asks on the
    /// way; what it asked for input is recorded in `unanswered` under `id`.
    pub(super) async fn call(
        &self,
        request: ClientRequest,
        id: RequestId,
        unanswered: &Unanswered,
    ) -> Result<ServerResult, McpError> {
        #[cfg(test)]
        self.posted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = self
            .post(ClientJsonRpcMessage::request(request, id.clone()))
            .await
            .map_err(|error| http_error(&error))?;
        let mut stream = match sent {
            StreamableHttpPostResponse::Json(message, _) => {
                return answer_to(message, &id)?.ok_or_else(|| {
                    McpError::Protocol("the server answered the call with something else".into())
                });
            }
            StreamableHttpPostResponse::Sse(stream, _) => stream,
            StreamableHttpPostResponse::Accepted => {
                return Err(McpError::Protocol(
                    "the server accepted the call without answering it".to_owned(),
                ));
            }
            _ => {
                return Err(McpError::Protocol(
                    "the server answered the call in a way Switchboard does not read".to_owned(),
                ));
            }
        };
        while let Some(event) = stream.next().await {
            let data = match event {
                Ok(event) => event.data.unwrap_or_default(),
                Err(error) => return Err(stream_error(&error, self.limits.max_sse_event_size)),
            };
            // An event without data primes the stream for resumption.
            if data.is_empty() {
                continue;
            }
            let message = serde_json::from_str::<ServerJsonRpcMessage>(&data).map_err(|_| {
                McpError::Protocol("the server sent a message that is not JSON-RPC".to_owned())
            })?;
            match message {
                JsonRpcMessage::Request(request) => self.reply(request, &id, unanswered).await,
                JsonRpcMessage::Notification(_) => {}
                answer => {
                    if let Some(result) = answer_to(answer, &id)? {
                        return Ok(result);
                    }
                }
            }
        }
        Err(McpError::Interrupted)
    }

    /// Answer a request the server sent while the call `call` ran.
    async fn reply(
        &self,
        request: JsonRpcRequest<ServerRequest>,
        call: &RequestId,
        unanswered: &Unanswered,
    ) {
        let JsonRpcRequest { id, request, .. } = request;
        // Switchboard declares no sampling and no roots to a legacy server: those, like any
        // other method, are not found.
        let answer = match request {
            ServerRequest::PingRequest(_) => Ok(ClientResult::empty(())),
            ServerRequest::ElicitRequest(request) => Ok(ClientResult::ElicitResult(
                unanswered.cancel(call.clone(), &request.params),
            )),
            ServerRequest::CreateMessageRequest(_) => Err("sampling/createMessage".to_owned()),
            ServerRequest::CustomRequest(request) => Err(request.method),
            _ => Err("the method".to_owned()),
        };
        let message = match answer {
            Ok(result) => ClientJsonRpcMessage::response(result, id),
            Err(method) => ClientJsonRpcMessage::error(
                ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("{method} is not supported"),
                    None,
                ),
                Some(id),
            ),
        };
        // The server waits for the answer before it goes on; if it cannot be delivered, the
        // call's own stream says what became of the call.
        if let Err(error) = self.post(message).await {
            tracing::debug!(error = %http_error(&error), "an answer to the MCP server's request was not delivered");
        }
    }

    async fn post(
        &self,
        message: ClientJsonRpcMessage,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        self.http
            .post_message_with_response_limits(
                self.uri.clone(),
                message,
                self.session.get(),
                self.auth.clone(),
                self.headers.clone(),
                self.limits,
            )
            .await
    }
}

/// The call's result from a response or an error naming `id`; `None` for an answer to
/// another request. An error without an id (the server could not read the request) fails the
/// call too.
fn answer_to(
    message: ServerJsonRpcMessage,
    id: &RequestId,
) -> Result<Option<ServerResult>, McpError> {
    match message {
        JsonRpcMessage::Response(response) if response.id == *id => Ok(Some(response.result)),
        JsonRpcMessage::Error(error) if error.id.as_ref().is_none_or(|of| of == id) => {
            Err(rpc_error(&error.error))
        }
        _ => Ok(None),
    }
}

/// What a failed read of the call's event stream means: an event over the size limit
/// (`max_event_bytes`), or one that is not an event, is the server's doing; a failed read of
/// the body broke the stream, and with it the answer. rmcp reports the first only in its message, which it writes as
/// "SSE event exceeded the maximum size of N bytes".
fn stream_error(error: &SseError, max_event_bytes: usize) -> McpError {
    match error {
        SseError::Body(body) if body.to_string().contains("exceeded the maximum size") => {
            McpError::Transport(format!(
                "an event of the server's stream exceeds {max_event_bytes} bytes"
            ))
        }
        SseError::Body(_) => McpError::Interrupted,
        _ => McpError::Protocol("the server's event stream is malformed".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_stream_is_an_interruption_and_a_bad_event_the_servers_doing() {
        let too_large = SseError::Body("SSE event exceeded the maximum size of 16 bytes".into());
        assert!(matches!(
            stream_error(&too_large, 16),
            McpError::Transport(_)
        ));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let broken = SseError::Body(Box::new(reset));
        assert!(matches!(stream_error(&broken, 16), McpError::Interrupted));
        assert!(matches!(
            stream_error(&SseError::InvalidLine, 16),
            McpError::Protocol(_)
        ));
    }

    #[test]
    fn only_an_answer_naming_the_call_ends_it() {
        let call = RequestId::String("call-1".into());
        let other = RequestId::String("call-2".into());
        let response = |id: &RequestId| -> ServerJsonRpcMessage {
            serde_json::from_value(serde_json::json!({
                "jsonrpc": "2.0", "id": id, "result": { "content": [] }
            }))
            .unwrap()
        };
        let error = |id: Option<&RequestId>| -> ServerJsonRpcMessage {
            let mut message = serde_json::json!({
                "jsonrpc": "2.0", "error": { "code": -32000, "message": "no" }
            });
            if let Some(id) = id {
                message["id"] = serde_json::json!(id);
            }
            serde_json::from_value(message).unwrap()
        };
        assert!(answer_to(response(&call), &call).unwrap().is_some());
        assert!(answer_to(response(&other), &call).unwrap().is_none());
        assert!(answer_to(error(Some(&other)), &call).unwrap().is_none());
        for unreadable_or_ours in [error(Some(&call)), error(None)] {
            assert!(matches!(
                answer_to(unreadable_or_ours, &call),
                Err(McpError::Protocol(_))
            ));
        }
    }
}
