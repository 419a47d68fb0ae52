//! The HTTP client of the Streamable HTTP transport: the guarded `reqwest::Client`, plus the
//! W3C trace context of each request.
//!
//! While traces are exported, the session puts the context of its call's span in the
//! request's `_meta` (`traceparent`, `tracestate`). rmcp sends requests from a worker task of
//! its own, outside that span, so the context travels with the message: here each request
//! that carries one gets a span of its own for the HTTP exchange, child of that context, and
//! its `traceparent` header names that span. A server of the stateless revision (2026-07-28)
//! keeps the `_meta` keys, where the revision defines them; an older one gets only the header,
//! the keys taken out of its `_meta`.
//!
//! It also notes the session id a server assigned ([`SessionId`]), for the calls posted
//! outside rmcp's transport ([`super::direct`]). Everything else is reqwest's own
//! implementation, limits included.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, GetMeta as _, JsonRpcMessage, MetaObject,
    RequestParamsMeta as _,
};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::{Error as SseError, Sse};
use tracing::Instrument as _;

use crate::telemetry::propagation::{self, TRACEPARENT, TRACESTATE, TraceContext};
use crate::telemetry::{self, SPANS};

/// The guarded client, passing each request's trace context on as headers.
#[derive(Clone, Debug)]
pub(super) struct TracedHttp {
    inner: reqwest::Client,
    /// Whether the server's revision defines the trace keys of `_meta`.
    keep_meta: bool,
    /// The session the server assigned, once an exchange has named it.
    session: Arc<SessionId>,
}

/// The id of the session a server assigned (`Mcp-Session-Id`) in its answer to `initialize`,
/// as rmcp keeps and sends it. Shared by the clones of
/// one transport's client, so a call posted outside rmcp's transport ([`super::direct`])
/// names the session rmcp opened.
#[derive(Debug, Default)]
pub(super) struct SessionId(OnceLock<Arc<str>>);

impl SessionId {
    /// The session's id, when the server assigned one.
    pub(super) fn get(&self) -> Option<Arc<str>> {
        self.0.get().cloned()
    }

    fn note(&self, id: &str) {
        if self.0.get().is_none() {
            let _first = self.0.set(Arc::from(id));
        }
    }
}

impl TracedHttp {
    pub(super) fn new(inner: reqwest::Client, keep_meta: bool, session: Arc<SessionId>) -> Self {
        TracedHttp {
            inner,
            keep_meta,
            session,
        }
    }

    /// Note the session an exchange named: the one rmcp sends (the session it holds), or the
    /// one the answer to `initialize` assigns. A session named in any other answer is not
    /// the session rmcp keeps, and is not noted.
    fn note_session(&self, sent: Option<&str>, initialize: bool, result: &PostResult) {
        let assigned = match result {
            Ok(
                StreamableHttpPostResponse::Json(_, Some(id))
                | StreamableHttpPostResponse::Sse(_, Some(id)),
            ) if initialize => Some(id.as_str()),
            _ => None,
        };
        if let Some(id) = sent.or(assigned) {
            self.session.note(id);
        }
    }

    /// One POST, made by `send` (one of reqwest's): in its span, with its trace context as
    /// headers, and the session it names noted.
    async fn exchange<F, Fut>(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        mut headers: HashMap<HeaderName, HeaderValue>,
        send: F,
    ) -> PostResult
    where
        F: FnOnce(
            Arc<str>,
            ClientJsonRpcMessage,
            Option<Arc<str>>,
            HashMap<HeaderName, HeaderValue>,
        ) -> Fut,
        Fut: Future<Output = PostResult>,
    {
        let span = self.exchange_span(&uri, &mut message, &mut headers);
        let (sent, initialize) = (session_id.clone(), is_initialize(&message));
        let result = traced(span, send(uri, message, session_id, headers)).await;
        self.note_session(sent.as_deref(), initialize, &result);
        result
    }

    /// The span of the exchange, with its context added to `headers`, when `message` carries
    /// a trace context; the `_meta` keys are dropped for an older server.
    fn exchange_span(
        &self,
        uri: &str,
        message: &mut ClientJsonRpcMessage,
        headers: &mut HashMap<HeaderName, HeaderValue>,
    ) -> tracing::Span {
        if !telemetry::exporting() {
            return tracing::Span::none();
        }
        let JsonRpcMessage::Request(request) = message else {
            return tracing::Span::none();
        };
        let Some(context) = take_context(&mut request.request, self.keep_meta) else {
            return tracing::Span::none();
        };
        let url = url::Url::parse(uri).ok();
        let span = tracing::info_span!(
            target: SPANS,
            "mcp.http",
            otel.name = "POST",
            otel.kind = "client",
            http.request.method = "POST",
            mcp.method.name = request.request.method(),
            server.address = url.as_ref().and_then(|url| url.host_str()),
            server.port = url
                .as_ref()
                .and_then(url::Url::port_or_known_default)
                .map(i64::from),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        propagation::continue_from(&span, &context);
        if let Some(own) = propagation::context_of(&span) {
            let pairs = [
                (TRACEPARENT, Some(own.traceparent)),
                (TRACESTATE, own.tracestate),
            ];
            for (name, value) in pairs {
                if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
        }
        span
    }
}

/// Whether `message` is the `initialize` request, whose answer assigns the session.
fn is_initialize(message: &ClientJsonRpcMessage) -> bool {
    matches!(message, JsonRpcMessage::Request(request)
        if matches!(request.request, ClientRequest::InitializeRequest(_)))
}

/// The trace context in a request's `_meta` (the envelope's, else the call's parameters'),
/// removed from it unless `keep`.
fn take_context(request: &mut ClientRequest, keep: bool) -> Option<TraceContext> {
    let from = |meta: &mut MetaObject| {
        let traceparent = meta.get_traceparent()?.to_owned();
        let tracestate = meta.get_tracestate().map(str::to_owned);
        if !keep {
            meta.0.remove(TRACEPARENT);
            meta.0.remove(TRACESTATE);
        }
        Some(TraceContext {
            traceparent,
            tracestate,
        })
    };
    let envelope = from(&mut *request.get_meta_mut());
    let params = match request {
        ClientRequest::CallToolRequest(call) => call
            .params
            .meta_mut()
            .as_mut()
            .and_then(|meta| from(&mut *meta)),
        _ => None,
    };
    envelope.or(params)
}

type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;

/// Run a POST exchange in its span and record how it ended there.
async fn traced(span: tracing::Span, exchange: impl Future<Output = PostResult>) -> PostResult {
    let result = exchange.instrument(span.clone()).await;
    record(&span, &result);
    result
}

/// Record how the exchange ended: the status when the answer tells it (202 for an accepted
/// notification or response, the status of a refusal), and the kind of failure.
fn record(span: &tracing::Span, result: &PostResult) {
    if span.is_disabled() {
        return;
    }
    let error = match result {
        Ok(StreamableHttpPostResponse::Accepted) => {
            span.record("http.response.status_code", 202_i64);
            return;
        }
        Ok(_) => return,
        Err(error) => error,
    };
    let status = match error {
        StreamableHttpError::HttpStatus(status) => Some(status.status),
        StreamableHttpError::AuthRequired(_) => Some(401),
        StreamableHttpError::InsufficientScope(_) => Some(403),
        StreamableHttpError::SessionExpired => Some(404),
        _ => None,
    };
    match status {
        Some(status) => {
            span.record("http.response.status_code", i64::from(status));
            span.record("error.type", status.to_string().as_str());
        }
        None => {
            span.record("error.type", "transport");
        }
    }
    span.record("otel.status_code", "ERROR");
}

impl StreamableHttpClient for TracedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> PostResult {
        self.exchange(
            uri,
            message,
            session_id,
            custom_headers,
            |uri, message, session_id, headers| {
                self.inner
                    .post_message(uri, message, session_id, auth_header, headers)
            },
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> PostResult {
        self.exchange(
            uri,
            message,
            session_id,
            custom_headers,
            |uri, message, session_id, headers| {
                self.inner.post_message_with_max_sse_event_size(
                    uri,
                    message,
                    session_id,
                    auth_header,
                    headers,
                    max_sse_event_size,
                )
            },
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> PostResult {
        self.exchange(
            uri,
            message,
            session_id,
            custom_headers,
            |uri, message, session_id, headers| {
                self.inner.post_message_with_response_limits(
                    uri,
                    message,
                    session_id,
                    auth_header,
                    headers,
                    limits,
                )
            },
        )
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<reqwest::Error>> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>
    {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>
    {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
