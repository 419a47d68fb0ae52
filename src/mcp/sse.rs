//! The legacy HTTP+SSE transport of MCP revision 2024-11-05, as an rmcp [`Transport`].
//!
//! The client opens one event stream with `GET` on the server's URL. The server's first
//! `endpoint` event names the URL that client messages are `POST`ed to; every later `message`
//! event carries one JSON-RPC message from the server. rmcp drives the protocol; this module
//! only frames messages: it serializes what rmcp sends, and parses what the stream delivers.
//!
//! Invariants:
//! - Every request goes through the guarded `reqwest::Client` it is given, so the outbound
//!   rules hold for the stream and for every post.
//! - The message endpoint must be on the server URL's origin: a server cannot make the client
//!   post (with its credentials) anywhere else.
//! - No event larger than [`MAX_MESSAGE_BYTES`] is buffered.
//! - Closing the transport drops the event stream, which ends the connection.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use url::Url;

use super::session::{MAX_MESSAGE_BYTES, McpError, net_error, status_error};
use crate::net::NetError;

/// Why sending a message failed. Carries no bodies and no header values.
#[derive(Debug, thiserror::Error)]
pub enum SseTransportError {
    /// The server refused the post with an error status.
    #[error("the server answered HTTP {status}")]
    Status {
        status: u16,
        /// The raw `WWW-Authenticate` challenge of a 401 or 403, when sent.
        www_authenticate: Option<String>,
    },
    /// The request failed before a status arrived.
    #[error("the request failed")]
    Client(#[source] reqwest::Error),
    /// The message could not be serialized.
    #[error("the message could not be serialized")]
    Encode(#[source] serde_json::Error),
}

impl SseTransportError {
    /// The error as callers of the session see it.
    pub(super) fn to_mcp_error(&self) -> McpError {
        match self {
            SseTransportError::Status {
                status,
                www_authenticate,
            } => refusal(*status, www_authenticate.clone()),
            SseTransportError::Client(err) => net_error(NetError::from_reqwest(err)),
            SseTransportError::Encode(_) => {
                McpError::Protocol("a message could not be serialized".to_owned())
            }
        }
    }
}

/// A client session over HTTP+SSE: the open event stream and where to post messages.
pub struct SseClientTransport {
    client: reqwest::Client,
    headers: HeaderMap,
    endpoint: Url,
    /// `None` once closed.
    events: Option<EventReader>,
}

impl SseClientTransport {
    /// Open the event stream on `url` and wait for the server's message endpoint. `headers`
    /// go with every request (static headers and the bearer token).
    pub async fn connect(
        client: reqwest::Client,
        url: Url,
        headers: HeaderMap,
    ) -> Result<SseClientTransport, McpError> {
        let response = client
            .get(url.clone())
            .headers(headers.clone())
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .send()
            .await
            .map_err(|err| net_error(NetError::from_reqwest(&err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(status.as_u16(), challenge(response.headers())));
        }
        let is_event_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        if !is_event_stream {
            return Err(McpError::Protocol(
                "the server did not answer with an event stream".to_owned(),
            ));
        }
        let mut events = EventReader::new(response.bytes_stream().boxed());
        let endpoint = loop {
            match events.next_event().await? {
                Some(event) if event.kind == "endpoint" => break endpoint_url(&url, &event.data)?,
                // The endpoint comes first; nothing sent before it can answer anything.
                Some(_) => continue,
                None => {
                    return Err(McpError::Transport(
                        "the event stream ended before the server named its message endpoint"
                            .to_owned(),
                    ));
                }
            }
        };
        Ok(SseClientTransport {
            client,
            headers,
            endpoint,
            events: Some(events),
        })
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseTransportError;

    fn name() -> Cow<'static, str> {
        "SseClientTransport".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let request = serde_json::to_vec(&item)
            .map_err(SseTransportError::Encode)
            .map(|body| {
                self.client
                    .post(self.endpoint.clone())
                    .headers(self.headers.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body)
            });
        async move {
            let response = request?.send().await.map_err(SseTransportError::Client)?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            Err(SseTransportError::Status {
                status: status.as_u16(),
                www_authenticate: challenge(response.headers()),
            })
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let events = self.events.as_mut()?;
        loop {
            let event = match events.next_event().await {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(err) => {
                    tracing::debug!(error = %err, "the MCP event stream failed");
                    return None;
                }
            };
            if event.kind != "message" {
                continue;
            }
            match serde_json::from_str(&event.data) {
                Ok(message) => return Some(message),
                Err(_) => {
                    // A stream that delivers garbage cannot be trusted to answer; ending it
                    // fails the pending requests at once instead of at their timeout.
                    tracing::debug!("the MCP server sent an event that is not JSON-RPC");
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.events = None;
        Ok(())
    }
}

/// The message endpoint named by an `endpoint` event, refused unless same-origin.
fn endpoint_url(server: &Url, data: &str) -> Result<Url, McpError> {
    let endpoint = server.join(data.trim()).map_err(|_| {
        McpError::Protocol("the server named a message endpoint that is not a URL".to_owned())
    })?;
    if endpoint.origin() != server.origin() {
        return Err(McpError::Transport(
            "the server named a message endpoint on another origin".to_owned(),
        ));
    }
    Ok(endpoint)
}

fn challenge(headers: &HeaderMap) -> Option<String> {
    headers
        .get(WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn refusal(status: u16, www_authenticate: Option<String>) -> McpError {
    match StatusCode::from_u16(status) {
        Ok(StatusCode::UNAUTHORIZED) => McpError::Unauthorized { www_authenticate },
        Ok(StatusCode::FORBIDDEN) => McpError::Forbidden { www_authenticate },
        _ => status_error(status),
    }
}

/// One dispatched server-sent event.
#[derive(Debug, PartialEq)]
struct Event {
    /// The `event:` field; `message` when absent.
    kind: String,
    data: String,
}

/// Splits a byte stream into server-sent events (lines ending in LF or CRLF).
struct EventReader {
    body: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    buffer: BytesMut,
    kind: Option<String>,
    data: String,
    has_data: bool,
}

impl EventReader {
    fn new(body: BoxStream<'static, Result<Bytes, reqwest::Error>>) -> EventReader {
        EventReader {
            body,
            buffer: BytesMut::new(),
            kind: None,
            data: String::new(),
            has_data: false,
        }
    }

    /// The next event, or `None` when the stream ends.
    async fn next_event(&mut self) -> Result<Option<Event>, McpError> {
        loop {
            while let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let mut line = self.buffer.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                if let Some(event) = self.take_line(&line)? {
                    return Ok(Some(event));
                }
            }
            if self.buffer.len() + self.data.len() > MAX_MESSAGE_BYTES {
                return Err(too_large());
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(chunk.chunk()),
                Some(Err(err)) => return Err(net_error(NetError::from_reqwest(&err))),
                None => return Ok(None),
            }
        }
    }

    fn take_line(&mut self, line: &[u8]) -> Result<Option<Event>, McpError> {
        if line.is_empty() {
            let kind = self.kind.take();
            let data = std::mem::take(&mut self.data);
            if !std::mem::replace(&mut self.has_data, false) {
                return Ok(None);
            }
            return Ok(Some(Event {
                kind: kind.unwrap_or_else(|| "message".to_owned()),
                data,
            }));
        }
        if line.starts_with(b":") {
            return Ok(None);
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| McpError::Protocol("the server's event stream is not UTF-8".to_owned()))?;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.kind = Some(value.to_owned()),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_MESSAGE_BYTES {
                    return Err(too_large());
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id`, `retry` and unknown fields mean nothing to this transport.
            _ => {}
        }
        Ok(None)
    }
}

fn too_large() -> McpError {
    McpError::Transport(format!(
        "an event of the server's stream exceeds {MAX_MESSAGE_BYTES} bytes"
    ))
}

#[cfg(test)]
mod unit_tests {
    use futures_util::stream;

    use super::*;

    fn reader(chunks: &[&'static str]) -> EventReader {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk.as_bytes())))
            .collect();
        EventReader::new(stream::iter(chunks).boxed())
    }

    #[tokio::test]
    async fn splits_events_across_chunks_and_line_endings() {
        let mut events = reader(&[
            ": comment\r\nevent: endpoint\r\ndata: /messages",
            "?session=1\r\n\r\nid: 7\ndata: {\"a\":\ndata: 1}\n\n",
            "event: ping\n\n",
        ]);
        assert_eq!(
            events.next_event().await.unwrap(),
            Some(Event {
                kind: "endpoint".into(),
                data: "/messages?session=1".into()
            })
        );
        assert_eq!(
            events.next_event().await.unwrap(),
            Some(Event {
                kind: "message".into(),
                data: "{\"a\":\n1}".into()
            })
        );
        // An event without data is not dispatched.
        assert_eq!(events.next_event().await.unwrap(), None);
    }

    #[tokio::test]
    async fn refuses_oversized_events() {
        let big: &'static str = "x".repeat(MAX_MESSAGE_BYTES + 1).leak();
        let mut events = reader(&["data: ", big, "\n\n"]);
        assert!(matches!(
            events.next_event().await,
            Err(McpError::Transport(_))
        ));
    }

    #[test]
    fn refused_posts_keep_their_challenge() {
        let refused = |status, challenge: Option<&str>| {
            SseTransportError::Status {
                status,
                www_authenticate: challenge.map(str::to_owned),
            }
            .to_mcp_error()
        };
        assert!(matches!(
            refused(401, Some("Bearer realm=\"x\"")),
            McpError::Unauthorized { www_authenticate: Some(ref c) } if c == "Bearer realm=\"x\""
        ));
        assert!(matches!(
            refused(403, None),
            McpError::Forbidden {
                www_authenticate: None
            }
        ));
        assert!(matches!(refused(500, None), McpError::Transport(_)));
    }

    #[test]
    fn the_endpoint_must_be_same_origin() {
        let server = Url::parse("http://127.0.0.1:8000/sse").unwrap();
        assert_eq!(
            endpoint_url(&server, "/messages?session=1")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8000/messages?session=1"
        );
        assert_eq!(
            endpoint_url(&server, "http://127.0.0.1:8000/m")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8000/m"
        );
        for foreign in [
            "http://127.0.0.1:8001/m",
            "https://127.0.0.1:8000/m",
            "http://localhost:8000/m",
            "//evil.example/m",
        ] {
            assert!(
                matches!(endpoint_url(&server, foreign), Err(McpError::Transport(_))),
                "{foreign}"
            );
        }
    }

    mod properties {
        use futures_util::FutureExt as _;
        use proptest::prelude::*;

        use super::*;

        /// Every event a reader yields from `bytes` cut into chunks at `cuts`, until the end
        /// or the first error.
        fn read_all(bytes: &[u8], cuts: &[usize]) -> (Vec<Event>, bool) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            points.dedup();
            let chunks: Vec<Result<Bytes, reqwest::Error>> = points
                .windows(2)
                .map(|w| Ok(Bytes::copy_from_slice(&bytes[w[0]..w[1]])))
                .collect();
            let mut reader = EventReader::new(stream::iter(chunks).boxed());
            let mut events = Vec::new();
            loop {
                // The stream never waits, so each read completes at once.
                match reader.next_event().now_or_never() {
                    Some(Ok(Some(event))) => events.push(event),
                    Some(Ok(None)) => return (events, true),
                    Some(Err(_)) | None => return (events, false),
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..400),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let _ = read_all(&bytes, &cuts);
            }

            #[test]
            fn events_read_the_same_however_the_stream_is_cut(
                events in prop::collection::vec(
                    (prop::option::of("[a-z]{1,8}"), prop::collection::vec("[^\\r\\n]{0,30}", 1..4)),
                    0..6,
                ),
                crlf in prop::bool::ANY,
                cuts in prop::collection::vec(any::<usize>(), 0..12),
            ) {
                let end = if crlf { "\r\n" } else { "\n" };
                let mut text = String::new();
                let mut expected = Vec::new();
                for (kind, lines) in &events {
                    text.push_str(&format!(": a comment{end}"));
                    if let Some(kind) = kind {
                        text.push_str(&format!("event: {kind}{end}"));
                    }
                    for line in lines {
                        text.push_str(&format!("data: {line}{end}"));
                    }
                    text.push_str(end);
                    expected.push(Event {
                        kind: kind.clone().unwrap_or_else(|| "message".to_owned()),
                        data: lines.join("\n"),
                    });
                }
                let (read, ended) = read_all(text.as_bytes(), &cuts);
                prop_assert!(ended);
                prop_assert_eq!(read, expected);
            }
        }
    }
}
