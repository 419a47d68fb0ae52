//! One MCP client session over Streamable HTTP or the legacy HTTP+SSE transport: open, list the
//! tools, call a tool, close. Also the mapping of rmcp's errors to [`McpError`].
//!
//! Two eras of the protocol are spoken over Streamable HTTP. A *modern* server (revision
//! 2026-07-28) is stateless: the session is opened with `server/discover`, and every request
//! then carries its protocol version, client capabilities and client info in `_meta` and the
//! standard headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`), all
//! written by rmcp. A *legacy* server (2025-11-25 and earlier) is opened with the `initialize`
//! handshake and keeps a session. Which to try first is the caller's [`Era`] hint (what the
//! server spoke last time); the other is tried when the answer says the server is of the other
//! era, following the specification's fallback rules:
//! - `server/discover` answered with a JSON-RPC error other than the modern ones (`-32020`,
//!   `-32021`), or with another 4xx than 401/403 → legacy;
//! - `initialize` answered `-32022` (unsupported version), or HTTP 400/404/405 → try modern.
//!
//! A modern server may answer a tool call with `input_required` (multi round-trip requests):
//! the call returns the server's input requests and its opaque request state, and the caller
//! retries with the answers ([`ToolCall::resume`]). Switchboard declares form and URL
//! elicitation to modern servers, and nothing to legacy ones; a legacy server that asks for
//! elicitation anyway gets `cancel`, never an invented answer, and the call's result lists what
//! it asked ([`ToolCallOutcome::unanswered`]).

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult,
    CancelledNotification, CancelledNotificationParam, ClientCapabilities, ClientRequest,
    ElicitRequestParams, ElicitResult, ErrorData, Implementation, InitializeRequestParams,
    InputRequiredResult, PaginatedRequestParams, ProtocolVersion, RequestId, ServerResult, Tool,
};
use rmcp::model::{GetMeta as _, RequestParamsMeta as _, ServerNotification, SubscriptionFilter};
use rmcp::service::{
    ClientInitializeError, InboundStreamOrigin, PeerRequestOptions, RequestContext, RunningService,
    Subscription,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, Peer, RoleClient, ServiceError,
    ServiceExt,
};
use serde_json::{Map, Value};
use tracing::Instrument as _;
use url::Url;

use super::direct::DirectCalls;
use super::ids::{FreshCallIds, fresh_call_id};
use super::sse::{SseClientTransport, SseTransportError};
use super::traced::{SessionId, TracedHttp};
use super::unanswered::{Unanswered, UnansweredInput};
use super::{RESERVED_HEADERS, Transport};
use crate::crypto::Secret;
use crate::net::{self, GuardedClient, NetError};

/// Most `tools/list` pages followed before the listing is given up as endless.
const MAX_TOOL_PAGES: usize = 100;

/// Largest JSON reply, and largest event of an event-stream reply, accepted from a server.
/// rmcp's own default (16 MiB) is more than a tool result shown through the API should be.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// How much of an error body rmcp may read. The text is never passed on, so little is needed.
const MAX_ERROR_BODY_BYTES: usize = 1024;

/// Longest server-supplied error message kept in an [`McpError::Protocol`].
const MAX_SERVER_MESSAGE_CHARS: usize = 200;

/// Caps on one listing of a server's tools. The listing stops as soon as one is passed, so it
/// never holds more than the caps plus the page being read (itself at most
/// [`MAX_MESSAGE_BYTES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingCaps {
    /// Most distinct tools.
    pub max_tools: usize,
    /// Most bytes of tool definitions, counted as their JSON, duplicates included.
    pub max_bytes: u64,
}

/// A server's tools as listed, each name once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// The tools, in listing order; of several with one name, the first.
    pub tools: Vec<ToolInfo>,
    /// How many later tools were dropped because an earlier one had the same name.
    pub duplicates: usize,
    /// How long the server said the listing stays fresh: the shortest `ttlMs` of its pages,
    /// at most [`MAX_FRESH_FOR`]; none when a page gave none (or zero).
    pub fresh_for: Option<Duration>,
}

/// The longest a listing is taken as fresh, whatever the server says.
pub const MAX_FRESH_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Where and how to reach one MCP server.
#[derive(Clone, Debug)]
pub struct McpTarget {
    /// The server's endpoint URL.
    pub url: Url,
    /// The transport the server speaks.
    pub transport: Transport,
    /// Static headers sent with every request. `Authorization` among them is dropped when
    /// [`McpTarget::bearer`] is set; headers the transport owns are always dropped.
    pub headers: Vec<(String, Secret)>,
    /// Access token sent as `Authorization: Bearer <token>`.
    pub bearer: Option<Secret>,
    /// Upper bound for each operation: opening, listing the tools, one tool call, closing.
    pub timeout: Duration,
    /// Which protocol era to try first (what the server spoke last time).
    pub era: Era,
    /// The token comes from the OAuth client-credentials grant: a modern server is told the
    /// client speaks that extension (`io.modelcontextprotocol/oauth-client-credentials`).
    pub machine_client: bool,
}

/// What is known of the protocol era a server speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Era {
    /// Never reached: modern first, then legacy.
    #[default]
    Unknown,
    /// Spoke a stateless revision (2026-07-28 or later) last time: modern first.
    Modern,
    /// Spoke a revision with the `initialize` handshake last time: legacy first.
    Legacy,
}

impl Era {
    /// The era of a negotiated protocol version, as stored.
    pub fn of_version(version: Option<&str>) -> Era {
        match version {
            None => Era::Unknown,
            Some(version) if is_modern(version) => Era::Modern,
            Some(_) => Era::Legacy,
        }
    }
}

/// The first protocol revision of the stateless era (without `initialize`), the one
/// Switchboard speaks to such servers.
pub const STATELESS_REVISION: &str = "2026-07-28";

/// Whether a protocol version is of the stateless era. Versions are dates, so they compare as
/// text.
fn is_modern(version: &str) -> bool {
    version >= STATELESS_REVISION
}

/// An open, initialized MCP client session.
///
/// Dropping it without [`McpSession::close`] also ends the session: the same close runs in
/// the background, so the server is told to delete the session either way.
pub struct McpSession {
    peer: Peer<RoleClient>,
    /// Taken by [`McpSession::close`] or on drop.
    service: Option<RunningService<RoleClient, Client>>,
    timeout: Duration,
    /// The negotiated protocol version.
    protocol_version: String,
    /// Whether `tools/list` ran on this session, so rmcp knows the input schemas it needs to
    /// write `Mcp-Param-*` headers for a modern server.
    listed: tokio::sync::OnceCell<()>,
    /// What a legacy server asked for during this session's calls.
    unanswered: Arc<Unanswered>,
    /// The transport the session runs on: the target's, or HTTP+SSE when a server registered
    /// for Streamable HTTP turned out to speak only that.
    transport: Transport,
    /// For a legacy server over Streamable HTTP: its tool calls, posted from the caller's
    /// task rather than through rmcp's service ([`super::direct`]).
    direct: Option<DirectCalls>,
}

impl fmt::Debug for McpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSession")
            .field("timeout", &self.timeout)
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

/// A tool as the server describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolInfo {
    /// The name to call it by.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the tool does.
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
    /// JSON Schema of the structured result, when the tool declares one.
    pub output_schema: Option<Value>,
    /// Behaviour hints (`readOnlyHint`, `destructiveHint`, …), as sent.
    pub annotations: Option<Value>,
}

impl ToolInfo {
    /// Whether the input schema names `x-mcp-header` parameters (somewhere; rmcp decides
    /// which are valid), so a modern server must know the schema before the tool is called.
    pub fn names_header_parameters(&self) -> bool {
        self.input_schema
            .to_string()
            .contains(HEADER_PARAMETER_KEYWORD)
    }
}

/// The schema keyword of parameters sent as `Mcp-Param-*` headers.
const HEADER_PARAMETER_KEYWORD: &str = "x-mcp-header";

/// The result of one tool call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCallOutcome {
    /// Content blocks (`{"type": "text", "text": …}` and the like), as sent.
    pub content: Vec<Value>,
    /// Structured result, when the tool returns one.
    pub structured_content: Option<Value>,
    /// The tool ran and reported a failure. This is the tool's answer, not a protocol error.
    pub is_error: bool,
    /// Input the server asked for during the call and got `cancel` for (a server of an
    /// earlier revision asking mid-call); the result is what the tool did without it.
    pub unanswered: Vec<UnansweredInput>,
}

/// A stream of a server's tool-list changes; see [`McpSession::listen_tools`].
pub struct ToolChanges {
    subscription: Subscription,
}

impl fmt::Debug for ToolChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolChanges").finish_non_exhaustive()
    }
}

impl ToolChanges {
    /// Wait for the next change: `Ok(true)` when the server said its tools changed,
    /// `Ok(false)` when it ended the stream. Other notifications are skipped.
    pub async fn changed(&mut self) -> Result<bool, McpError> {
        loop {
            match self
                .subscription
                .next()
                .await
                .map_err(|err| service_error(&err))?
            {
                Some(ServerNotification::ToolListChangedNotification(_)) => return Ok(true),
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }
}

/// One tool call: the tool, its arguments and, when it continues a call the server answered
/// with `input_required`, the answers and the server's request state.
#[derive(Clone, Debug, Default)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON object.
    pub arguments: Map<String, Value>,
    /// Set when the tool's input schema names `x-mcp-header` parameters: a modern server is
    /// then sent them as `Mcp-Param-*` headers, which rmcp writes from the schemas listed on
    /// the same session, so a session that has not listed yet lists first, within these caps.
    pub header_parameters: Option<ListingCaps>,
    /// The answers to the server's input requests, and its request state, when retrying.
    pub resume: Option<Resume>,
    /// The tool says running it twice does no harm ([`may_run_twice`]): a call whose
    /// answer was lost with its stream is sent once more, as a new request.
    pub rerunnable: bool,
}

/// Whether a tool's annotations say a repeated call does no harm: it is read-only
/// (`readOnlyHint`) or idempotent (`idempotentHint`). Hints from the server, about its own
/// tool; anything else (absent, not `true`) says no.
pub fn may_run_twice(annotations: &Value) -> bool {
    ["readOnlyHint", "idempotentHint"]
        .iter()
        .any(|hint| annotations.get(hint) == Some(&Value::Bool(true)))
}

/// The answers of a retried call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resume {
    /// The answer to each input request, by the key the server gave it (`ElicitResult` and
    /// the like, as JSON).
    pub responses: Map<String, Value>,
    /// The server's request state, exactly as received; none when it sent none.
    pub request_state: Option<String>,
}

/// What a tool call came back with.
#[derive(Clone, Debug, PartialEq)]
pub enum CallResult {
    /// The tool ran.
    Complete(ToolCallOutcome),
    /// The server needs input before the tool can run (or continue).
    InputRequired(InputRequired),
}

/// A server's `input_required` answer.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRequired {
    /// What the server asks, by key, in the server's order of keys.
    pub requests: Vec<InputRequest>,
    /// The opaque request state to send back unchanged, if the server sent one.
    pub request_state: Option<String>,
}

/// One input request of an `input_required` answer.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRequest {
    /// The key its answer is sent under.
    pub key: String,
    /// `elicitation/create`, `sampling/createMessage` or `roots/list`.
    pub method: String,
    /// The request's parameters, as sent.
    pub params: Value,
}

/// Why an MCP operation failed. Messages carry no secrets and no response bodies.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// HTTP 401: the server wants (other) credentials.
    #[error("the MCP server requires authorization")]
    Unauthorized {
        /// The raw `WWW-Authenticate` challenge, when the server sent one.
        www_authenticate: Option<String>,
    },
    /// HTTP 403, e.g. `insufficient_scope`.
    #[error("the MCP server refused access")]
    Forbidden {
        /// The raw `WWW-Authenticate` challenge, when the server sent one.
        www_authenticate: Option<String>,
    },
    /// The target's timeout elapsed.
    #[error("the MCP server did not answer in time")]
    Timeout,
    /// The server no longer knows the session (HTTP 404 on a request carrying a session id).
    #[error("the MCP session expired")]
    SessionExpired,
    /// Invalid JSON-RPC, a JSON-RPC error, or a reply of an unexpected shape.
    #[error("MCP protocol error: {0}")]
    Protocol(String),
    /// The connection failed, a body was too large, or the server answered another HTTP status.
    #[error("MCP transport error: {0}")]
    Transport(String),
    /// The request went out and its answer never came: the stream carrying it broke off. The
    /// server may have acted on it.
    #[error("MCP transport error: the connection to the server broke before it answered")]
    Interrupted,
    /// The outbound rules refused the URL or an address it resolves to.
    #[error(transparent)]
    Net(NetError),
    /// The server lists more tools than [`ListingCaps::max_tools`].
    #[error("the server lists more than {limit} tools")]
    TooManyTools {
        /// The cap.
        limit: usize,
    },
    /// The server's tool definitions are larger than [`ListingCaps::max_bytes`].
    #[error("the server's tool list is larger than {limit} bytes")]
    CatalogueTooLarge {
        /// The cap.
        limit: u64,
    },
}

impl McpError {
    /// A low-cardinality name of the failure, for a span's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            McpError::Unauthorized { .. } => "unauthorized",
            McpError::Forbidden { .. } => "forbidden",
            McpError::Timeout => "timeout",
            McpError::SessionExpired => "session_expired",
            McpError::Protocol(_) => "protocol",
            McpError::Transport(_) => "transport",
            McpError::Interrupted => "interrupted",
            McpError::Net(_) => "refused",
            McpError::TooManyTools { .. } => "too_many_tools",
            McpError::CatalogueTooLarge { .. } => "catalogue_too_large",
        }
    }
}

/// Open a session: check the URL against the outbound rules, then discover the server or run
/// the `initialize` handshake, in the order [`McpTarget::era`] suggests. Bounded by
/// `target.timeout`.
pub async fn open(http: &GuardedClient, target: McpTarget) -> Result<McpSession, McpError> {
    let timeout = target.timeout;
    let (service, transport) = if crate::telemetry::exporting() {
        bounded(timeout, connect_detached(http, &target)).await?
    } else {
        bounded(timeout, connect(http, &target)).await?
    };
    let protocol_version = service
        .peer()
        .peer_info()
        .map(|info| info.protocol_version.as_str().to_owned())
        .unwrap_or_default();
    let direct = match transport {
        Transport::StreamableHttp if !is_modern(&protocol_version) => Some(DirectCalls::new(
            http.reqwest_client().clone(),
            transport_config(&target)?,
            service.service().session.clone(),
            &protocol_version,
        )?),
        _ => None,
    };
    Ok(McpSession {
        peer: service.peer().clone(),
        transport,
        unanswered: service.service().unanswered.clone(),
        service: Some(service),
        timeout,
        protocol_version,
        listed: tokio::sync::OnceCell::new(),
        direct,
    })
}

impl McpSession {
    /// Every tool of the server, following `nextCursor` to the last page, within `caps`. Of
    /// several tools with one name the first listed is kept and the others are counted in
    /// [`Listing::duplicates`].
    pub async fn list_tools(&self, caps: ListingCaps) -> Result<Listing, McpError> {
        let listing = bounded(self.timeout, self.list_all_tools(caps)).await?;
        // The transport now knows every listed tool's schema.
        let _already = self.listed.set(());
        Ok(listing)
    }

    /// The protocol version negotiated with the server.
    pub fn protocol_version(&self) -> &str {
        &self.protocol_version
    }

    /// The transport the session runs on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the server speaks the stateless era of the protocol.
    pub fn is_modern(&self) -> bool {
        is_modern(&self.protocol_version)
    }

    /// Listen for changes of the server's tool list (`subscriptions/listen`, modern servers
    /// only). The stream stays open until the server ends it or the result is dropped; keep
    /// the session alive meanwhile.
    pub async fn listen_tools(&self) -> Result<ToolChanges, McpError> {
        if !self.is_modern() {
            return Err(McpError::Protocol(
                "the server's protocol revision has no change streams".to_owned(),
            ));
        }
        let filter: SubscriptionFilter =
            serde_json::from_value(serde_json::json!({ "toolsListChanged": true }))
                .map_err(|_| McpError::Protocol("a subscription could not be written".into()))?;
        let subscription = bounded(self.timeout, async {
            self.peer
                .listen(filter)
                .await
                .map_err(|err| service_error(&err))
        })
        .await?;
        if subscription.acknowledged().tools_list_changed != Some(true) {
            return Err(McpError::Protocol(
                "the server does not announce changes of its tools".to_owned(),
            ));
        }
        Ok(ToolChanges { subscription })
    }

    /// Call one tool. A tool that reports a failure is an `Ok` with
    /// [`ToolCallOutcome::is_error`] set; a modern server asking for input first is an
    /// [`CallResult::InputRequired`]. Each call, a retry included, is a new JSON-RPC request.
    ///
    /// When the call's answer is lost with its stream ([`McpError::Interrupted`]), the server
    /// may have run the tool: the call is sent once more, on this session and so under a new
    /// request id, only when [`ToolCall::rerunnable`] says that does no harm.
    pub async fn call(&self, call: ToolCall) -> Result<CallResult, McpError> {
        let span = tracing::info_span!(
            target: crate::telemetry::SPANS,
            "mcp.request",
            otel.name = %format!("tools/call {}", call.name),
            otel.kind = "client",
            mcp.method.name = "tools/call",
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = %call.name,
            mcp.protocol.version = %self.protocol_version,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // Boxed once here rather than moved through the span's and the timeout's wrappers.
        let result = Box::pin(self.call_bounded(call))
            .instrument(span.clone())
            .await;
        if let Err(error) = &result
            && !span.is_disabled()
        {
            span.record("error.type", error.kind());
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn call_bounded(&self, call: ToolCall) -> Result<CallResult, McpError> {
        bounded(self.timeout, async {
            match self.call_inner(call.clone()).await {
                Err(McpError::Interrupted) if call.rerunnable && !self.is_closed() => {
                    tracing::info!("a tool call's answer was lost with its stream; calling again");
                    self.call_inner(call).await
                }
                other => other,
            }
        })
        .await
    }

    async fn call_inner(&self, call: ToolCall) -> Result<CallResult, McpError> {
        let modern = self.is_modern();
        if !modern {
            if call.resume.is_some() {
                return Err(McpError::Protocol(
                    "the server no longer speaks a revision that takes input responses".to_owned(),
                ));
            }
            let params = CallToolRequestParams::new(call.name).with_arguments(call.arguments);
            return self.call_legacy(params).await.map(CallResult::Complete);
        }
        if modern && let Some(caps) = call.header_parameters {
            self.listed
                .get_or_try_init(|| async { self.list_all_tools(caps).await.map(drop) })
                .await?;
        }
        let mut params = CallToolRequestParams::new(call.name).with_arguments(call.arguments);
        // The revision defines the trace keys of `_meta`; the transport also sends them as
        // headers ([`super::traced`]).
        if let Some(context) = crate::telemetry::propagation::context_of(&tracing::Span::current())
        {
            params.set_traceparent(&context.traceparent);
            if let Some(state) = &context.tracestate {
                params.set_tracestate(state);
            }
        }
        if let Some(resume) = call.resume {
            params.input_responses = Some(resume.responses.into_iter().collect());
            params.request_state = resume.request_state;
        }
        match self
            .peer
            .call_tool_once(params)
            .await
            .map_err(|err| service_error(&err))?
        {
            CallToolResponse::Complete(result) => complete(result).map(CallResult::Complete),
            CallToolResponse::InputRequired(result) if modern => {
                input_required(result).map(CallResult::InputRequired)
            }
            CallToolResponse::InputRequired(_) => Err(McpError::Protocol(
                "the server asked for input in a revision that has no input requests".to_owned(),
            )),
            _ => Err(McpError::Protocol(
                "the server answered with a task, which Switchboard does not run".to_owned(),
            )),
        }
    }

    /// A call to a server that keeps sessions, which may ask for input mid-call: what it
    /// asked is read back by the call's request id. Abandoned (timed out, dropped), the call
    /// is cancelled on the server.
    async fn call_legacy(
        &self,
        params: CallToolRequestParams,
    ) -> Result<ToolCallOutcome, McpError> {
        let mut request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // Carried to the transport, which sends it as headers only ([`super::traced`]).
        if let Some(context) = crate::telemetry::propagation::context_of(&tracing::Span::current())
        {
            let meta = request.get_meta_mut();
            meta.set_traceparent(context.traceparent);
            if let Some(state) = context.tracestate {
                meta.set_tracestate(state);
            }
        }
        // The call's id, and its answer still to come: posted from this task on a session
        // that allows it, else handed to rmcp's service.
        let (id, answer) = match &self.direct {
            Some(direct) => {
                let id = fresh_call_id();
                let answer = direct.call(request, id.clone(), &self.unanswered);
                (id, Either::Left(answer))
            }
            None => {
                let handle = self
                    .peer
                    .send_request_with_option(request, PeerRequestOptions::no_options())
                    .await
                    .map_err(|err| service_error(&err))?;
                let id = handle.id.clone();
                let answer = async move {
                    handle
                        .await_response()
                        .await
                        .map_err(|err| service_error(&err))
                };
                (id, Either::Right(answer))
            }
        };
        let mut in_flight = InFlight {
            peer: &self.peer,
            id: Some(id),
            unanswered: &self.unanswered,
        };
        let result = answer.await;
        let unanswered = in_flight.finish();
        let result = match result? {
            ServerResult::CallToolResult(result) => result,
            // A result without `content` decodes as another shape; read it again as a result.
            other => serde_json::to_value(&other)
                .and_then(serde_json::from_value::<CallToolResult>)
                .map_err(|_| {
                    McpError::Protocol("the server answered the call with something else".into())
                })?,
        };
        let mut outcome = complete(result)?;
        outcome.unanswered = unanswered;
        Ok(outcome)
    }

    /// How many tool calls were posted from the caller's task ([`super::direct`]) rather
    /// than handed to rmcp's service.
    #[cfg(test)]
    pub(super) fn calls_posted_itself(&self) -> usize {
        self.direct.as_ref().map_or(0, |direct| {
            direct.posted.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// The session has ended: closed, cancelled, or its transport gave up.
    pub fn is_closed(&self) -> bool {
        self.service
            .as_ref()
            .is_none_or(|service| service.is_closed())
    }

    /// End the session, best effort: the server is told to delete it when it assigned one.
    pub async fn close(mut self) {
        if let Some(service) = self.service.take() {
            close_service(service, self.timeout).await;
        }
    }

    async fn list_all_tools(&self, caps: ListingCaps) -> Result<Listing, McpError> {
        let peer = &self.peer;
        let mut listing = Listing::default();
        let mut names = HashSet::new();
        let mut bytes: u64 = 0;
        let mut cursor: Option<String> = None;
        let mut seen_cursors = HashSet::new();
        let mut fresh_for = Some(MAX_FRESH_FOR);
        for _ in 0..MAX_TOOL_PAGES {
            let params = cursor
                .take()
                .map(|cursor| PaginatedRequestParams::default().with_cursor(Some(cursor)));
            // A page lost with its stream is asked for again, once, as a new request: listing
            // changes nothing on the server.
            let page = match peer.list_tools(params.clone()).await {
                Err(ServiceError::TransportClosed) if !self.is_closed() => {
                    peer.list_tools(params).await
                }
                other => other,
            }
            .map_err(|err| service_error(&err))?;
            let page_fresh = page
                .ttl_ms
                .filter(|ttl| *ttl > 0)
                .map(Duration::from_millis);
            fresh_for = fresh_for.zip(page_fresh).map(|(a, b)| a.min(b));
            for tool in page.tools {
                // Counted as sent, duplicates too, so a server repeating itself still stops.
                bytes = bytes.saturating_add(json_size(&tool)?);
                if bytes > caps.max_bytes {
                    return Err(McpError::CatalogueTooLarge {
                        limit: caps.max_bytes,
                    });
                }
                if !names.insert(tool.name.to_string()) {
                    listing.duplicates = listing.duplicates.saturating_add(1);
                    continue;
                }
                if listing.tools.len() >= caps.max_tools {
                    return Err(McpError::TooManyTools {
                        limit: caps.max_tools,
                    });
                }
                listing.tools.push(tool_info(tool)?);
            }
            match page.next_cursor {
                None => {
                    listing.fresh_for = fresh_for;
                    return Ok(listing);
                }
                // A server handing out a cursor twice would keep us paging forever.
                Some(next) if !seen_cursors.insert(next.clone()) => {
                    return Err(McpError::Protocol(
                        "the server repeated a tools/list cursor".to_owned(),
                    ));
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(McpError::Protocol(format!(
            "the tool list has more than {MAX_TOOL_PAGES} pages"
        )))
    }
}

fn complete(result: CallToolResult) -> Result<ToolCallOutcome, McpError> {
    let content = result
        .content
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| McpError::Protocol("a content block could not be read".to_owned()))?;
    Ok(ToolCallOutcome {
        content,
        structured_content: result.structured_content,
        is_error: result.is_error.unwrap_or(false),
        unanswered: Vec::new(),
    })
}

/// A legacy call awaiting its result. Dropped before [`InFlight::finish`] (the call timed out
/// or its caller went away), it tells the server the call is cancelled, best effort, and
/// forgets what the call was asked.
struct InFlight<'a> {
    peer: &'a Peer<RoleClient>,
    id: Option<RequestId>,
    unanswered: &'a Unanswered,
}

impl InFlight<'_> {
    /// The result arrived: what the call was asked for on the way.
    fn finish(&mut self) -> Vec<UnansweredInput> {
        self.id
            .take()
            .map(|id| self.unanswered.take(&id))
            .unwrap_or_default()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        self.unanswered.take(&id);
        let peer = self.peer.clone();
        let notification = CancelledNotification::new(CancelledNotificationParam::new(
            Some(id),
            Some("the caller stopped waiting".to_owned()),
        ));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // The session may be gone already; there is nobody else to tell.
                let _ = peer.send_notification(notification.into()).await;
            });
        }
    }
}

/// Most input requests accepted in one `input_required` answer.
pub const MAX_INPUT_REQUESTS: usize = 16;

/// Longest request state accepted, in bytes. The state travels back to the caller sealed, so
/// it is kept to what a continuation can carry.
pub const MAX_REQUEST_STATE_BYTES: usize = 64 * 1024;

fn input_required(result: InputRequiredResult) -> Result<InputRequired, McpError> {
    let requests = result.input_requests.unwrap_or_default();
    if requests.is_empty() && result.request_state.is_none() {
        return Err(McpError::Protocol(
            "the server asked for input without saying what".to_owned(),
        ));
    }
    if requests.len() > MAX_INPUT_REQUESTS {
        return Err(McpError::Protocol(format!(
            "the server asked for more than {MAX_INPUT_REQUESTS} inputs at once"
        )));
    }
    if result
        .request_state
        .as_ref()
        .is_some_and(|state| state.len() > MAX_REQUEST_STATE_BYTES)
    {
        return Err(McpError::Protocol(format!(
            "the server's request state is larger than {MAX_REQUEST_STATE_BYTES} bytes"
        )));
    }
    let requests = requests
        .into_iter()
        .map(|(key, request)| {
            let mut value = serde_json::to_value(&request)
                .map_err(|_| McpError::Protocol("an input request could not be read".to_owned()))?;
            let method = value
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let params = value
                .get_mut("params")
                .map(Value::take)
                .unwrap_or(Value::Object(Map::new()));
            Ok(InputRequest {
                key,
                method,
                params,
            })
        })
        .collect::<Result<Vec<_>, McpError>>()?;
    Ok(InputRequired {
        requests,
        request_state: result.request_state,
    })
}

/// The size of a tool's definition as JSON, without building the text.
fn json_size(tool: &Tool) -> Result<u64, McpError> {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .saturating_add(u64::try_from(buf.len()).unwrap_or(u64::MAX));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, tool)
        .map_err(|_| McpError::Protocol("a tool could not be read".to_owned()))?;
    Ok(counter.0)
}

impl Drop for McpSession {
    fn drop(&mut self) {
        if let Some(service) = self.service.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(close_service(service, self.timeout));
        }
    }
}

async fn close_service(mut service: RunningService<RoleClient, Client>, timeout: Duration) {
    match service.close_with_timeout(timeout).await {
        Ok(Some(_)) => {}
        Ok(None) => tracing::debug!("closing the MCP session timed out"),
        Err(err) => tracing::debug!(error = %err, "closing the MCP session failed"),
    }
}

async fn bounded<T>(
    timeout: Duration,
    operation: impl Future<Output = Result<T, McpError>>,
) -> Result<T, McpError> {
    tokio::time::timeout(timeout, operation)
        .await
        .map_err(|_| McpError::Timeout)?
}

type Service = RunningService<RoleClient, Client>;

/// [`connect`] on a task of its own, outside the caller's span: rmcp runs a session in a task
/// that keeps the span current when it started, so a session opened inside a traced call would
/// hold that call's span (and its whole trace) open for as long as the session lives. The
/// task stops when this future is dropped.
async fn connect_detached(
    http: &GuardedClient,
    target: &McpTarget,
) -> Result<(Service, Transport), McpError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let (http, target) = (http.clone(), target.clone());
    let mut task = AbortOnDrop(tokio::spawn(async move { connect(&http, &target).await }));
    (&mut task.0)
        .await
        .map_err(|_| McpError::Transport("opening the session stopped unexpectedly".to_owned()))?
}

async fn connect(
    http: &GuardedClient,
    target: &McpTarget,
) -> Result<(Service, Transport), McpError> {
    net::check_url(&target.url, http.policy())
        .await
        .map_err(McpError::Net)?;
    match target.transport {
        Transport::StreamableHttp => match streamable(http, target).await {
            Ok(service) => Ok((service, Transport::StreamableHttp)),
            // Neither era over Streamable HTTP, and `initialize` refused the way a server
            // without that transport refuses a POST: the endpoint may be an HTTP+SSE one.
            Err(Refused::Older(error)) => {
                tracing::debug!("the MCP server refused both eras' POSTs; trying HTTP+SSE");
                match initialize_sse(http, target).await {
                    Ok(service) => Ok((service, Transport::Sse)),
                    Err(_) => Err(error),
                }
            }
            Err(Refused::Other(error)) => Err(error),
        },
        Transport::Sse => Ok((initialize_sse(http, target).await?, Transport::Sse)),
    }
}

/// Why Streamable HTTP could not be opened.
pub(super) enum Refused {
    /// `initialize` got HTTP 400, 404 or 405 and discovery found no stateless server either:
    /// what a server of the HTTP+SSE transport answers.
    Older(McpError),
    /// Anything else.
    Other(McpError),
}

impl Refused {
    /// The error, whatever it suggests.
    #[cfg(test)]
    pub(super) fn into_error(self) -> McpError {
        match self {
            Refused::Older(error) | Refused::Other(error) => error,
        }
    }
}

/// Open over Streamable HTTP in the era the target suggests, then in the other when the
/// answer says the server is of the other era.
pub(super) async fn streamable(
    http: &GuardedClient,
    target: &McpTarget,
) -> Result<Service, Refused> {
    let other = |opening: Opening| Refused::Other(opening.into_error());
    match target.era {
        Era::Legacy => match initialize(http, target).await {
            Err(Opening::Failed(err)) if suggests_modern(&err) => {
                tracing::debug!("the MCP server refused initialize; discovering it instead");
                match discover(http, target).await {
                    // Of neither era: what `initialize` met says most.
                    Err(Opening::Legacy) => Err(refused_initialize(&err)),
                    other_era => other_era.map_err(other),
                }
            }
            opened => opened.map_err(other),
        },
        Era::Modern | Era::Unknown => match discover(http, target).await {
            Err(Opening::Legacy) => match initialize(http, target).await {
                Err(Opening::Failed(err)) => Err(refused_initialize(&err)),
                opened => opened.map_err(other),
            },
            opened => opened.map_err(other),
        },
    }
}

/// A failed `initialize` of a server that is not of the stateless era either.
fn refused_initialize(err: &ClientInitializeError) -> Refused {
    let error = initialize_error(err);
    match err {
        ClientInitializeError::TransportError { error: failure, .. }
            if matches!(http_status(failure.error.as_ref()), Some(400 | 404 | 405)) =>
        {
            Refused::Older(error)
        }
        _ => Refused::Other(error),
    }
}

/// Why opening in one era failed.
enum Opening {
    /// `server/discover` found a legacy server.
    Legacy,
    /// The server answered, and not as hoped.
    Failed(Box<ClientInitializeError>),
    /// The request could not be made.
    Error(McpError),
}

impl Opening {
    fn into_error(self) -> McpError {
        match self {
            Opening::Legacy => {
                McpError::Protocol("the server does not speak a stateless revision".to_owned())
            }
            Opening::Failed(err) => initialize_error(&err),
            Opening::Error(err) => err,
        }
    }
}

/// The stateless era: `server/discover`, then self-contained requests. rmcp retries once with
/// a version the server names in a `-32022` answer.
async fn discover(http: &GuardedClient, target: &McpTarget) -> Result<Service, Opening> {
    let client = Client::modern(target.machine_client);
    let transport = FreshCallIds::new(StreamableHttpClientTransport::with_client(
        TracedHttp::new(http.reqwest_client().clone(), true, client.session.clone()),
        transport_config(target).map_err(Opening::Error)?,
    ));
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    match client.serve_with_lifecycle(transport, lifecycle).await {
        Ok(service) => Ok(service),
        Err(ClientInitializeError::JsonRpcError(data)) if !is_modern_error(&data) => {
            Err(Opening::Legacy)
        }
        // A 4xx without an error of the stateless era (401 and 403 ask for credentials).
        Err(ClientInitializeError::TransportError { error, .. })
            if http_status(error.error.as_ref())
                .is_some_and(|s| (400..500).contains(&s) && s != 401 && s != 403) =>
        {
            Err(Opening::Legacy)
        }
        Err(err) => Err(Opening::Failed(Box::new(err))),
    }
}

/// The `initialize` handshake. rmcp sends with the guarded client's `reqwest::Client`, so each
/// of its requests is checked again when it connects, whatever URL it goes to.
async fn initialize(http: &GuardedClient, target: &McpTarget) -> Result<Service, Opening> {
    let client = Client::legacy(ProtocolVersion::LATEST_WITH_INITIALIZE);
    let transport = FreshCallIds::new(StreamableHttpClientTransport::with_client(
        TracedHttp::new(http.reqwest_client().clone(), false, client.session.clone()),
        transport_config(target).map_err(Opening::Error)?,
    ));
    client
        .serve(transport)
        .await
        .map_err(|err| Opening::Failed(Box::new(err)))
}

/// The JSON-RPC errors by which a stateless server refuses a request (header mismatch,
/// missing capability, unsupported version): a modern server, whatever it refused.
fn is_modern_error(data: &ErrorData) -> bool {
    matches!(data.code.0, -32022..=-32020)
}

/// Whether a failed `initialize` says the server may be of the stateless era: it refused the
/// version with `-32022`, or answered 400, 404 or 405.
fn suggests_modern(err: &ClientInitializeError) -> bool {
    match err {
        ClientInitializeError::JsonRpcError(data) => data.code.0 == -32022,
        ClientInitializeError::TransportError { error, .. } => {
            matches!(http_status(error.error.as_ref()), Some(400 | 404 | 405))
        }
        _ => false,
    }
}

/// The `initialize` handshake over HTTP+SSE: the event stream is opened, and the message
/// endpoint learnt, before rmcp takes over. Every request goes out on the guarded client.
async fn initialize_sse(http: &GuardedClient, target: &McpTarget) -> Result<Service, McpError> {
    let mut headers: HeaderMap = static_headers(target)?.into_iter().collect();
    if let Some(bearer) = &target.bearer {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", bearer.expose())).map_err(|_| {
                McpError::Transport("the access token is not a valid header".to_owned())
            })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let transport = FreshCallIds::new(
        SseClientTransport::connect(http.reqwest_client().clone(), target.url.clone(), headers)
            .await?,
    );
    // HTTP+SSE belongs to revision 2024-11-05; a server speaking it may know no later one.
    Client::legacy(ProtocolVersion::V_2024_11_05)
        .serve(transport)
        .await
        .map_err(|err| initialize_error(&err))
}

/// The MCP extension of machine clients, declared to modern servers by one.
pub const CLIENT_CREDENTIALS_EXTENSION: &str = "io.modelcontextprotocol/oauth-client-credentials";

/// Switchboard's side of a session: what it announces, and its answers to the server's own
/// requests.
///
/// To a modern server it declares form and URL elicitation, which arrive as `input_required`
/// answers and are passed to the caller. To a legacy server it declares no capabilities (no
/// sampling, roots or elicitation), since a server request in the middle of a call has nobody
/// to answer it; an `elicitation/create` sent anyway is answered `cancel`.
#[derive(Clone, Debug)]
pub(super) struct Client {
    info: InitializeRequestParams,
    unanswered: Arc<Unanswered>,
    /// The session the server assigns, noted by the transport's client.
    session: Arc<SessionId>,
}

impl Client {
    fn modern(machine_client: bool) -> Client {
        let mut capabilities = serde_json::json!({ "elicitation": { "form": {}, "url": {} } });
        if machine_client {
            capabilities["extensions"] = serde_json::json!({ CLIENT_CREDENTIALS_EXTENSION: {} });
        }
        let capabilities: ClientCapabilities =
            serde_json::from_value(capabilities).unwrap_or_default();
        Client {
            info: InitializeRequestParams::new(capabilities, implementation())
                .with_protocol_version(ProtocolVersion::V_2026_07_28),
            unanswered: Arc::default(),
            session: Arc::default(),
        }
    }

    pub(super) fn legacy(version: ProtocolVersion) -> Client {
        Client {
            info: InitializeRequestParams::new(ClientCapabilities::default(), implementation())
                .with_protocol_version(version),
            unanswered: Arc::default(),
            session: Arc::default(),
        }
    }
}

fn implementation() -> Implementation {
    Implementation::new("switchboard", env!("CARGO_PKG_VERSION"))
}

impl ClientHandler for Client {
    fn get_info(&self) -> InitializeRequestParams {
        self.info.clone()
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        match context.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(call)) => {
                Ok(self.unanswered.cancel(call.clone(), &request))
            }
            _ => {
                tracing::info!("the MCP server asked for input outside any call; answered cancel");
                Ok(ElicitResult::new(rmcp::model::ElicitationAction::Cancel))
            }
        }
    }
}

fn transport_config(target: &McpTarget) -> Result<StreamableHttpClientTransportConfig, McpError> {
    let headers = static_headers(target)?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(target.url.as_str())
        .custom_headers(headers)
        .max_json_response_size(MAX_MESSAGE_BYTES)
        .max_sse_event_size(MAX_MESSAGE_BYTES)
        .max_error_response_size(MAX_ERROR_BODY_BYTES)
        // A silent re-initialize would hide the expiry from the caller, whose decision a
        // retry is.
        .reinit_on_expired_session(false);
    if let Some(bearer) = &target.bearer {
        config = config.auth_header(bearer.expose());
    }
    Ok(config)
}

/// The target's static headers as sent, without those the transport owns and without
/// `Authorization` when a bearer token replaces it.
fn static_headers(target: &McpTarget) -> Result<HashMap<HeaderName, HeaderValue>, McpError> {
    let mut headers = HashMap::new();
    for (name, value) in &target.headers {
        let lower = name.to_ascii_lowercase();
        // The token must win: reqwest appends headers, so keeping both would send two
        // Authorization values and leave the choice to the server.
        if target.bearer.is_some() && lower == "authorization" {
            continue;
        }
        // Input validation refuses these already; a row written before a rule was added
        // must not break the transport either.
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            tracing::debug!(header = %name, "skipping a static header the transport owns");
            continue;
        }
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            McpError::Transport(format!("the static header name {name:?} is not valid"))
        })?;
        let mut header_value = HeaderValue::from_str(value.expose()).map_err(|_| {
            McpError::Transport(format!(
                "the value of the static header {name} is not valid"
            ))
        })?;
        header_value.set_sensitive(true);
        headers.insert(header_name, header_value);
    }
    Ok(headers)
}

fn tool_info(tool: Tool) -> Result<ToolInfo, McpError> {
    let annotations = tool
        .annotations
        .map(serde_json::to_value)
        .transpose()
        .map_err(|_| McpError::Protocol("a tool's annotations could not be read".to_owned()))?;
    Ok(ToolInfo {
        name: tool.name.into_owned(),
        title: tool.title,
        description: tool.description.map(|text| text.into_owned()),
        input_schema: Value::Object(Arc::unwrap_or_clone(tool.input_schema)),
        output_schema: tool
            .output_schema
            .map(|schema| Value::Object(Arc::unwrap_or_clone(schema))),
        annotations,
    })
}

// ---------------------------------------------------------------------------
// Errors. rmcp's messages may quote response bodies and reqwest's name the URL, so none of
// them is passed on; each case gets a message of its own.

fn initialize_error(err: &ClientInitializeError) -> McpError {
    match err {
        ClientInitializeError::TransportError { error, .. } => {
            transport_error(error.error.as_ref())
        }
        ClientInitializeError::JsonRpcError(data) => rpc_error(data),
        ClientInitializeError::ConnectionClosed(_) => {
            McpError::Transport("the connection closed before initialization completed".to_owned())
        }
        ClientInitializeError::Cancelled => {
            McpError::Transport("initialization was cancelled".to_owned())
        }
        _ => McpError::Protocol("the server did not complete the initialize handshake".to_owned()),
    }
}

fn service_error(err: &ServiceError) -> McpError {
    match err {
        ServiceError::McpError(data) => rpc_error(data),
        ServiceError::TransportSend(error) => transport_error(error.error.as_ref()),
        ServiceError::TransportClosed => McpError::Interrupted,
        ServiceError::Timeout { .. } => McpError::Timeout,
        ServiceError::Cancelled { .. } => {
            McpError::Transport("the request was cancelled".to_owned())
        }
        _ => McpError::Protocol("the server answered with an unexpected result".to_owned()),
    }
}

pub(super) fn rpc_error(data: &ErrorData) -> McpError {
    let message: String = data
        .message
        .chars()
        .take(MAX_SERVER_MESSAGE_CHARS)
        .collect();
    McpError::Protocol(format!(
        "the server answered with error {}: {message}",
        data.code.0
    ))
}

fn transport_error(err: &(dyn StdError + 'static)) -> McpError {
    let mut source = Some(err);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            return http_error(http);
        }
        if let Some(sse) = current.downcast_ref::<SseTransportError>() {
            return sse.to_mcp_error();
        }
        source = current.source();
    }
    match NetError::find_in(err) {
        Some(refused) => net_error(refused),
        None => McpError::Transport("the transport failed".to_owned()),
    }
}

pub(super) fn http_error(err: &StreamableHttpError<reqwest::Error>) -> McpError {
    use StreamableHttpError as E;

    match err {
        E::AuthRequired(challenge) => McpError::Unauthorized {
            www_authenticate: Some(challenge.www_authenticate_header.clone()),
        },
        E::InsufficientScope(challenge) => McpError::Forbidden {
            www_authenticate: Some(challenge.www_authenticate_header.clone()),
        },
        E::SessionExpired => McpError::SessionExpired,
        E::Client(err) => net_error(NetError::from_reqwest(err)),
        E::HttpStatus(status) => status_error(status.status),
        E::UnexpectedServerResponse(message) => match status_in_message(message) {
            Some(status) => status_error(status),
            None => McpError::Protocol("the server sent an unexpected response".to_owned()),
        },
        E::ResponseBodyTooLarge { max_size } => {
            McpError::Transport(format!("the response body exceeds {max_size} bytes"))
        }
        E::UnexpectedContentType(_) => {
            McpError::Protocol("the server answered with an unexpected content type".to_owned())
        }
        E::Deserialize(_) => {
            McpError::Protocol("the server sent a message that is not JSON-RPC".to_owned())
        }
        E::Sse(_) => McpError::Transport("the server's event stream failed".to_owned()),
        E::UnexpectedEndOfStream => {
            McpError::Transport("the server's event stream ended before the answer".to_owned())
        }
        E::MissingSessionIdInResponse => {
            McpError::Protocol("the server assigned no session".to_owned())
        }
        E::ControlRequestTimeout => McpError::Timeout,
        E::ReservedHeaderConflict(name) => {
            McpError::Transport(format!("the header {name} is reserved by the transport"))
        }
        E::Io(err) => McpError::Transport(format!("i/o error ({})", err.kind())),
        _ => McpError::Transport("the transport failed".to_owned()),
    }
}

/// The HTTP status a Streamable HTTP request was refused with, if that is what failed.
fn http_status(err: &(dyn StdError + 'static)) -> Option<u16> {
    use StreamableHttpError as E;

    let mut source = Some(err);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            return match http {
                E::HttpStatus(status) => Some(status.status),
                E::UnexpectedServerResponse(message) => status_in_message(message),
                E::SessionExpired => Some(404),
                _ => None,
            };
        }
        source = current.source();
    }
    None
}

/// The HTTP status of an error rmcp reports only as text. Its reqwest client turns an error
/// status that carries no challenge (and is neither 429 nor 5xx) into
/// `UnexpectedServerResponse("HTTP {status}: {body}")`, so the status is read from that prefix
/// and the rest, which quotes the body, is dropped.
fn status_in_message(message: &str) -> Option<u16> {
    let rest = message.strip_prefix("HTTP ")?;
    let digits = rest.get(..3)?;
    let follows = rest[3..].chars().next();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || follows.is_some_and(|c| c != ' ' && c != ':')
    {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn status_error(status: u16) -> McpError {
    match status {
        401 => McpError::Unauthorized {
            www_authenticate: None,
        },
        403 => McpError::Forbidden {
            www_authenticate: None,
        },
        _ => McpError::Transport(format!("the server answered HTTP {status}")),
    }
}

pub(super) fn net_error(err: NetError) -> McpError {
    match err {
        NetError::Timeout => McpError::Timeout,
        NetError::Connect(_) | NetError::Request(_) | NetError::BodyTooLarge { .. } => {
            McpError::Transport(err.to_string())
        }
        refused => McpError::Net(refused),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::status_in_message;

    #[test]
    fn reads_the_status_of_unchallenged_http_errors() {
        assert_eq!(
            status_in_message("HTTP 401 Unauthorized: {\"secret\": 1}"),
            Some(401)
        );
        assert_eq!(status_in_message("HTTP 403 Forbidden: "), Some(403));
        assert_eq!(status_in_message("HTTP 400"), Some(400));
        assert_eq!(status_in_message("expect initialized, accepted"), None);
        assert_eq!(status_in_message("HTTP 4011 nonsense"), None);
        assert_eq!(status_in_message("HTTP x01"), None);
    }
}
