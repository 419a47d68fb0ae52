//! A fake remote MCP server on `127.0.0.1:0`.
//!
//! It speaks the protocol of the [`Era`] it is set to, switched at runtime with
//! [`FakeMcpServer::set_era`]:
//!
//! - [`Era::Legacy`] (the default): Streamable HTTP with JSON responses only, protocol version
//!   2025-11-25. `POST` carries one JSON-RPC message, `DELETE` ends a session, `GET` is refused
//!   with 405 because the server never opens an event stream. It serves `initialize`, `ping`, a
//!   paginated `tools/list` and a `tools/call` where every tool echoes its arguments except
//!   `fail`, and `whoami`, which names the subject of the caller's token. Anything else, such
//!   as a 2026 client's `server/discover`, gets the JSON-RPC error -32601 (or, with
//!   [`McpConfig::sessions`], the 400 a session-less request gets), which such a client reads
//!   as "legacy server".
//! - [`Era::Modern`]: revision 2026-07-28 only ([`MODERN_PROTOCOL_VERSION`]), stateless. No
//!   handshake (`initialize` gets 400 with -32022 and `data.supported`), no sessions
//!   (`Mcp-Session-Id` is ignored and never issued; `GET` and `DELETE` get 405). Every request
//!   must carry `_meta["io.modelcontextprotocol/protocolVersion"]` and
//!   `_meta["io.modelcontextprotocol/clientCapabilities"]` (else 400, -32602), and the headers
//!   mirroring its body: `MCP-Protocol-Version` equal to that version, `Mcp-Method`, `Mcp-Name`
//!   for `tools/call`, and `Mcp-Param-*` for the arguments a tool's input schema annotates with
//!   `x-mcp-header` (else 400, -32020); an unknown version gets 400 with -32022 and an unknown
//!   method 404 with -32601. It serves `server/discover`, `tools/list` and `tools/call` (with
//!   `resultType`, and `ttlMs`/`cacheScope` from [`McpConfig::list_ttl_ms`] on lists and
//!   discovery), and `subscriptions/listen`.
//! - [`Era::Both`]: answers `initialize` and legacy requests as [`Era::Legacy`] does, and
//!   requests carrying the 2026 `_meta` or `MCP-Protocol-Version` as [`Era::Modern`] does.
//!
//! Multi round-trip tools ([`confirm_tool`], [`survey_tool`], [`open_url_tool`],
//! [`confirm_stateless_tool`]) answer a modern call with `resultType: "input_required"`:
//! elicitation requests the client answers by retrying the call with `inputResponses` and the
//! `requestState` it received. The state is sealed (HMAC-SHA256 under a key drawn when the
//! server starts) and bound to the tool, the caller's subject and the round; a retry with a
//! missing, tampered or foreign state gets -32602 "invalid request state". A form elicitation
//! needs the client to declare `elicitation` (a URL one `elicitation.url`), otherwise the call
//! gets 400 with -32021. The legacy eras cannot ask, so there these tools answer a tool error
//! "needs input". [`FakeMcpServer::input_responses`] gives the answers received. The legacy
//! [`insist_tool`] asks anyway, with an `elicitation/create` of the server's own in the middle
//! of the call ([`FakeMcpServer::elicitation_answers`]).
//!
//! A `subscriptions/listen` request is answered with an event stream that stays open: first
//! `notifications/subscriptions/acknowledged` with the granted filter (only `toolsListChanged`
//! is supported), then `notifications/tools/list_changed` whenever the catalogue changes, each
//! carrying the listen request's id as `_meta["io.modelcontextprotocol/subscriptionId"]`.
//! [`FakeMcpServer::listeners`] counts the open streams, [`FakeMcpServer::close_listeners`] ends
//! them gracefully and [`FakeMcpServer::drop_listeners`] abruptly.
//!
//! With [`McpConfig::sse`] it speaks the legacy HTTP+SSE transport (revision 2024-11-05)
//! instead, whatever the era: `GET` on the endpoint opens an event stream whose first
//! `endpoint` event names `{path}/messages?session=ID`; each message posted there is answered
//! 202, and its JSON-RPC response arrives on the stream as a `message` event.
//!
//! It can be protected by a static header, by a bare `invalid_token` challenge, by a 401 without
//! any challenge, or by OAuth against a [`FakeAuthServer`] (with per-method scope
//! requirements), publishing protected resource metadata (RFC 9728) where the [`PrmLocation`]
//! says. Under OAuth each caller is the subject of its token, as the authorization server
//! knows it, and may be shown a catalogue of its own ([`FakeMcpServer::set_tools_for`]); under
//! any other scheme every caller is [`ANONYMOUS`]. Runtime [`Mode`]s make the MCP endpoint
//! slow, broken, silent or oversized, or its listing loop on one cursor; they never affect the
//! metadata documents. Sessions can be expired at any time. Every request is recorded with its
//! headers and body, and [`FakeMcpServer::posted`] gives the JSON-RPC messages among them.

mod insist;
mod listen;
mod modern;
mod mrtr;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::fake_as::FakeAuthServer;
pub use crate::fake_http::Recorded;
use crate::fake_http::{self, HangUp, RequestLog, ServerTask};

/// The protocol version the server announces in answer to `initialize`.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The only protocol version the server speaks in the modern era.
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";

pub use insist::{INSIST, insist_tool};
pub use mrtr::{
    confirm_stateless_tool, confirm_tool, invalid_header_tool, open_url_tool, region_tool,
    survey_tool,
};

/// Which revisions of the protocol the Streamable HTTP endpoint speaks, switched at runtime
/// with [`FakeMcpServer::set_era`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25 with the `initialize` handshake (and optional sessions) only.
    #[default]
    Legacy,
    /// 2026-07-28 only: stateless, per-request `_meta` and headers, no `initialize`.
    Modern,
    /// Both: `initialize` and the requests that follow it as [`Era::Legacy`]; requests carrying
    /// the 2026 `_meta` or `MCP-Protocol-Version` (and every `server/discover` and
    /// `subscriptions/listen`) as [`Era::Modern`].
    Both,
}

const SESSION_HEADER: &str = "mcp-session-id";

/// The body of the 401 under [`McpAuth::BareUnauthorized`], for asserting that a client does not
/// pass it on.
pub const UNAUTHORIZED_BODY: &str = "who are you?";

/// What `whoami` answers when the server is not protected by OAuth.
pub const ANONYMOUS: &str = "anonymous";

/// How the MCP endpoint behaves, switched at runtime with [`FakeMcpServer::set_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Normal,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer 200 `application/json` with a truncated JSON body.
    InvalidJson,
    /// Answer 200 with a valid JSON-RPC response of this many bytes.
    Oversized(usize),
    /// Answer 500.
    ServerError,
    /// Answer every `tools/list` with no tools and the same `nextCursor`, a listing that never
    /// ends.
    RepeatingCursor,
}

/// Where the protected resource metadata document is published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrmLocation {
    /// At the path-inserted well-known URL, also named in `resource_metadata` of challenges.
    #[default]
    Header,
    /// At the path-inserted well-known URL only: `/.well-known/oauth-protected-resource/mcp`.
    Path,
    /// At the root well-known URL only, with the origin as `resource`.
    Root,
    /// At this path only, named in `resource_metadata` of challenges.
    HeaderCustomPath(String),
    /// Nowhere. The authorization server's routes are served on this origin as well, as in the
    /// 2025-03-26 layout where the MCP server's origin is the authorization base URL.
    None,
}

/// How the server authenticates requests.
#[derive(Clone, Debug, Default)]
pub enum McpAuth {
    #[default]
    None,
    /// Requests must carry this header with exactly this value; otherwise 401
    /// `Bearer realm="fake"`.
    StaticHeader { name: String, value: String },
    /// Requests without an `Authorization: Bearer …` header get 401
    /// `Bearer error="invalid_token"` with no `resource_metadata`; any bearer token is accepted.
    BareInvalidToken,
    /// Every request gets 401 without a `WWW-Authenticate` header, with the plain-text body
    /// [`UNAUTHORIZED_BODY`].
    BareUnauthorized,
    /// Bearer tokens issued by `auth_server`.
    OAuth {
        auth_server: FakeAuthServer,
        prm: PrmLocation,
        /// `scope` in the 401 challenge.
        challenge_scope: Option<String>,
        /// `scopes_supported` in the metadata document.
        scopes_supported: Option<Vec<String>>,
        /// `resource` in the metadata document, instead of the server's own.
        resource_override: Option<String>,
        /// Scopes a token needs per JSON-RPC method (`"tools/call"`); missing ones get 403.
        required_scopes: HashMap<String, Vec<String>>,
    },
}

impl McpAuth {
    /// OAuth against `auth_server` with the metadata advertised in the challenge and no scope
    /// requirements.
    pub fn oauth(auth_server: &FakeAuthServer) -> McpAuth {
        McpAuth::OAuth {
            auth_server: auth_server.clone(),
            prm: PrmLocation::Header,
            challenge_scope: None,
            scopes_supported: None,
            resource_override: None,
            required_scopes: HashMap::new(),
        }
    }
}

/// The configuration of a [`FakeMcpServer`].
#[derive(Clone, Debug)]
pub struct McpConfig {
    /// The MCP endpoint's path.
    pub path: String,
    /// Issue an `Mcp-Session-Id` on `initialize` and require it afterwards.
    pub sessions: bool,
    /// Tool definitions as listed. `fail` fails, `whoami` names the caller; every other tool
    /// echoes its arguments.
    pub tools: Vec<Value>,
    /// Tools per `tools/list` page.
    pub page_size: usize,
    pub auth: McpAuth,
    /// Speak HTTP+SSE instead of Streamable HTTP.
    pub sse: bool,
    /// Under [`McpConfig::sse`], the endpoint announced instead of the server's own.
    pub sse_endpoint: Option<String>,
    /// The protocol era the Streamable HTTP endpoint starts in.
    pub era: Era,
    /// `ttlMs` on modern `tools/list` and `server/discover` results.
    pub list_ttl_ms: u64,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            path: "/mcp".into(),
            sessions: false,
            tools: vec![echo_tool(), fail_tool()],
            page_size: 100,
            auth: McpAuth::None,
            sse: false,
            sse_endpoint: None,
            era: Era::Legacy,
            list_ttl_ms: 0,
        }
    }
}

/// The `echo` tool: returns its arguments as text and as structured content.
pub fn echo_tool() -> Value {
    json!({
        "name": "echo",
        "title": "Echo",
        "description": "Returns its arguments.",
        "inputSchema": {
            "type": "object",
            "properties": { "message": { "type": "string" } },
        },
        "annotations": { "readOnlyHint": true },
    })
}

/// The `fail` tool: always returns a tool error.
pub fn fail_tool() -> Value {
    json!({
        "name": "fail",
        "title": "Fail",
        "description": "Always fails.",
        "inputSchema": { "type": "object" },
        "annotations": { "readOnlyHint": true },
    })
}

/// The `whoami` tool: returns one text block holding the subject of the caller's bearer token,
/// as the authorization server sees it, or [`ANONYMOUS`] when the server is not protected by
/// OAuth.
pub fn whoami_tool() -> Value {
    json!({
        "name": "whoami",
        "title": "Who am I",
        "description": "Names the account the caller is connected as.",
        "inputSchema": { "type": "object" },
        "annotations": { "readOnlyHint": true },
    })
}

/// Another tool that echoes its arguments, e.g. to fill several pages.
pub fn tool(name: &str) -> Value {
    json!({
        "name": name,
        "description": format!("The {name} tool."),
        "inputSchema": { "type": "object" },
    })
}

/// A running fake MCP server; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeMcpServer {
    shared: Arc<Shared>,
    _task: Arc<ServerTask>,
}

impl std::fmt::Debug for FakeMcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeMcpServer")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

struct Shared {
    config: McpConfig,
    origin: String,
    url: String,
    log: RequestLog,
    state: Mutex<McpState>,
    /// Seals and opens the `requestState` of multi round-trip tools.
    state_key: mrtr::StateKey,
}

#[derive(Default)]
struct McpState {
    mode: Mode,
    era: Era,
    live_sessions: HashSet<String>,
    /// Every session id handed out, in order.
    sessions_issued: Vec<String>,
    sessions_deleted: Vec<String>,
    /// Open HTTP+SSE streams by session id.
    sse_streams: HashMap<String, tokio::sync::mpsc::UnboundedSender<String>>,
    /// The authorization server the resource moved to, replacing the configured one in its
    /// metadata and for token validation.
    migrated_to: Option<FakeAuthServer>,
    /// The tools listed: [`McpConfig::tools`] until [`FakeMcpServer::set_tools`].
    tools: Arc<Vec<Value>>,
    /// The tools listed to callers of one subject instead, by subject.
    tools_by_subject: HashMap<String, Arc<Vec<Value>>>,
    /// Every `inputResponses` object received on a modern `tools/call`, with the tool's name.
    input_responses: Vec<(String, Value)>,
    /// Open `subscriptions/listen` streams.
    listeners: listen::Listeners,
    /// Requests of the server's own awaiting the client's answer, by id.
    awaiting_answers: HashMap<String, tokio::sync::oneshot::Sender<Value>>,
    /// How many requests of its own the server has sent.
    next_server_request: u64,
    /// Every answer received to an `elicitation/create` of the server's own.
    elicitation_answers: Vec<Value>,
    /// How many of the next modern requests of a method get a stream that breaks off.
    broken_streams: HashMap<String, usize>,
}

/// Who an OAuth-protected request comes from, per the authorization server.
struct Caller {
    scopes: Vec<String>,
    subject: String,
}

impl FakeMcpServer {
    /// Start the server on a fresh loopback port.
    pub async fn start(config: McpConfig) -> FakeMcpServer {
        let listener = fake_http::bind().await;
        let origin = format!("http://{}", listener.local_addr().expect("local address"));
        let url = format!("{origin}{}", config.path);
        let state = McpState {
            era: config.era,
            tools: Arc::new(config.tools.clone()),
            ..McpState::default()
        };
        let shared = Arc::new(Shared {
            config,
            origin,
            url,
            log: RequestLog::default(),
            state: Mutex::new(state),
            state_key: mrtr::StateKey::generate(),
        });
        let task = fake_http::serve(listener, routes(&shared));
        FakeMcpServer {
            shared,
            _task: Arc::new(task),
        }
    }

    /// Point the resource at another authorization server: its metadata names `to` from now
    /// on, and only tokens `to` issued are accepted.
    pub fn migrate_authorization_server(&self, to: &FakeAuthServer) {
        self.shared.lock().migrated_to = Some(to.clone());
    }

    /// The MCP endpoint: `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// Where the protected resource metadata document is served, if anywhere.
    pub fn prm_url(&self) -> Option<String> {
        prm_path(&self.shared.config).map(|path| format!("{}{path}", self.shared.origin))
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.lock().mode = mode;
    }

    /// Speak this era from the next request on. Open listen streams stay open.
    pub fn set_era(&self, era: Era) {
        self.shared.lock().era = era;
    }

    /// The era the server speaks now.
    pub fn era(&self) -> Era {
        self.shared.lock().era
    }

    /// List (and call) these tools from now on, e.g. to change the catalogue between
    /// refreshes. Any list: duplicates, tens of thousands, huge schemas. Every open listen
    /// stream that asked for `toolsListChanged` gets `notifications/tools/list_changed`.
    pub fn set_tools(&self, tools: Vec<Value>) {
        let mut state = self.shared.lock();
        state.tools = Arc::new(tools);
        state.listeners.tools_changed(None);
    }

    /// List (and call) these tools for callers whose token is `subject`'s, instead of the
    /// common ones, from now on: one account's catalogue differs from another's. Only under
    /// OAuth, where callers have subjects. The open listen streams of `subject`'s callers that
    /// asked for `toolsListChanged` get `notifications/tools/list_changed`; others do not.
    pub fn set_tools_for(&self, subject: &str, tools: Vec<Value>) {
        let mut state = self.shared.lock();
        state
            .tools_by_subject
            .insert(subject.to_owned(), Arc::new(tools));
        state.listeners.tools_changed(Some(subject));
    }

    /// Break the stream of the next `count` requests of `method`, of either era: each is
    /// accepted (and, when modern, recorded) and its event stream ends before the result, so
    /// the client cannot know whether it was acted on.
    pub fn break_streams(&self, method: &str, count: usize) {
        self.shared
            .lock()
            .broken_streams
            .insert(method.to_owned(), count);
    }

    /// The client's answers to the `elicitation/create` requests [`insist_tool`] sent, in
    /// order (whole JSON-RPC responses).
    pub fn elicitation_answers(&self) -> Vec<Value> {
        self.shared.lock().elicitation_answers.clone()
    }

    /// The `inputResponses` objects received on modern calls of `tool`, in order, whether the
    /// call then completed, asked again or was refused for its `requestState`.
    pub fn input_responses(&self, tool: &str) -> Vec<Value> {
        self.shared
            .lock()
            .input_responses
            .iter()
            .filter(|(name, _)| name == tool)
            .map(|(_, responses)| responses.clone())
            .collect()
    }

    /// How many `subscriptions/listen` streams are open now. A stream counts until its client
    /// disconnects or the server ends it.
    pub fn listeners(&self) -> usize {
        self.shared.lock().listeners.len()
    }

    /// End every open listen stream gracefully: each gets the final `subscriptions/listen`
    /// result (carrying its subscription id), then the stream closes.
    pub fn close_listeners(&self) {
        self.shared.lock().listeners.close_all(true);
    }

    /// End every open listen stream abruptly: the stream closes without a final result, as
    /// when a connection breaks.
    pub fn drop_listeners(&self) {
        self.shared.lock().listeners.close_all(false);
    }

    /// Forget every session, so requests carrying one get 404.
    pub fn expire_sessions(&self) {
        self.shared.lock().live_sessions.clear();
    }

    /// Every request received, on any path.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.all()
    }

    /// How many requests were received, on any path, without copying them.
    pub fn request_count(&self) -> usize {
        self.shared.log.len()
    }

    /// Every JSON-RPC message posted to the MCP endpoint (or, under HTTP+SSE, to the message
    /// endpoint), in order, answered or not; a body that is not JSON is `Null`.
    pub fn posted(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|request| {
                request.method == "POST"
                    && (request.path == self.shared.config.path
                        || request.path == self.shared.messages_path())
            })
            .map(Recorded::json)
            .collect()
    }

    /// How many JSON-RPC messages with this method were posted, answered or not.
    pub fn count(&self, method: &str) -> usize {
        self.posted()
            .iter()
            .filter(|message| message["method"] == method)
            .count()
    }

    /// The ids of the sessions issued so far, in order: on `initialize` under Streamable HTTP,
    /// for each event stream under HTTP+SSE.
    pub fn sessions_issued(&self) -> Vec<String> {
        self.shared.lock().sessions_issued.clone()
    }

    /// The ids of sessions ended with `DELETE`.
    pub fn sessions_deleted(&self) -> Vec<String> {
        self.shared.lock().sessions_deleted.clone()
    }
}

fn routes(shared: &Arc<Shared>) -> Router {
    let mut router = if shared.config.sse {
        Router::new()
            .route(&shared.config.path, get(sse_stream))
            .route(&shared.messages_path(), post(sse_message))
    } else {
        Router::new().route(&shared.config.path, any(mcp_endpoint))
    };
    if let Some(path) = prm_path(&shared.config) {
        router = router.route(&path, get(protected_resource_metadata));
    }
    let mut router = router.with_state(shared.clone());
    if let McpAuth::OAuth {
        auth_server,
        prm: PrmLocation::None,
        ..
    } = &shared.config.auth
    {
        router = router.fallback_service(auth_server.routes());
    }
    shared.log.record(router)
}

fn prm_path(config: &McpConfig) -> Option<String> {
    let McpAuth::OAuth { prm, .. } = &config.auth else {
        return None;
    };
    match prm {
        PrmLocation::Header | PrmLocation::Path => Some(format!(
            "/.well-known/oauth-protected-resource{}",
            config.path.trim_end_matches('/')
        )),
        PrmLocation::Root => Some("/.well-known/oauth-protected-resource".into()),
        PrmLocation::HeaderCustomPath(path) => Some(path.clone()),
        PrmLocation::None => None,
    }
}

impl Shared {
    /// Where HTTP+SSE clients post their messages.
    fn messages_path(&self) -> String {
        format!("{}/messages", self.config.path.trim_end_matches('/'))
    }

    /// Whether the stream of this request of `method` is to break off (one fewer to break
    /// from now on).
    fn take_broken_stream(&self, method: &str) -> bool {
        let mut state = self.lock();
        match state.broken_streams.get_mut(method) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, McpState> {
        self.state.lock().expect("MCP server state")
    }

    /// The authorization server in charge now: the one migrated to, else the configured one.
    fn current_auth_server(&self, configured: &FakeAuthServer) -> FakeAuthServer {
        self.lock()
            .migrated_to
            .clone()
            .unwrap_or_else(|| configured.clone())
    }

    /// The metadata URL named in challenges, if the location is one that is advertised.
    fn advertised_prm_url(&self) -> Option<String> {
        let McpAuth::OAuth { prm, .. } = &self.config.auth else {
            return None;
        };
        match prm {
            PrmLocation::Header | PrmLocation::HeaderCustomPath(_) => {
                prm_path(&self.config).map(|path| format!("{}{path}", self.origin))
            }
            PrmLocation::Path | PrmLocation::Root | PrmLocation::None => None,
        }
    }

    /// The caller under OAuth, `None` under other schemes, or the challenge to answer with.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, Refusal> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty());
        match &self.config.auth {
            McpAuth::None => Ok(None),
            McpAuth::StaticHeader { name, value } => {
                if headers.get(name.as_str()).is_some_and(|sent| sent == value) {
                    Ok(None)
                } else {
                    Err(Refusal::Challenge(
                        StatusCode::UNAUTHORIZED,
                        r#"Bearer realm="fake""#.into(),
                    ))
                }
            }
            McpAuth::BareUnauthorized => Err(Refusal::Bare),
            McpAuth::BareInvalidToken => match bearer {
                Some(_) => Ok(None),
                None => Err(Refusal::Challenge(
                    StatusCode::UNAUTHORIZED,
                    r#"Bearer error="invalid_token""#.into(),
                )),
            },
            McpAuth::OAuth {
                auth_server,
                challenge_scope,
                ..
            } => match bearer.and_then(|token| {
                self.current_auth_server(auth_server)
                    .live_access_token(token)
            }) {
                Some((scopes, subject)) => Ok(Some(Caller { scopes, subject })),
                None => Err(self.bearer_challenge(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    challenge_scope.as_deref(),
                )),
            },
        }
    }

    fn bearer_challenge(&self, status: StatusCode, error: &str, scope: Option<&str>) -> Refusal {
        let mut value = format!(r#"Bearer error="{error}""#);
        if let Some(scope) = scope {
            value.push_str(&format!(r#", scope="{scope}""#));
        }
        if let Some(url) = self.advertised_prm_url() {
            value.push_str(&format!(r#", resource_metadata="{url}""#));
        }
        Refusal::Challenge(status, value)
    }

    /// The 403 challenge when a token lacks the scopes `method` requires.
    fn check_scopes(&self, granted: &[String], method: &str) -> Result<(), Refusal> {
        let McpAuth::OAuth {
            required_scopes, ..
        } = &self.config.auth
        else {
            return Ok(());
        };
        match required_scopes.get(method) {
            Some(needed) if !needed.iter().all(|scope| granted.contains(scope)) => Err(self
                .bearer_challenge(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    Some(&needed.join(" ")),
                )),
            _ => Ok(()),
        }
    }

    /// Handle one posted JSON-RPC message.
    fn post(&self, headers: &HeaderMap, body: &[u8], caller: Option<&Caller>) -> Response {
        let Ok(message) = serde_json::from_slice::<Value>(body) else {
            return Refusal::Rpc(StatusCode::BAD_REQUEST, -32700, "Parse error").into_response();
        };
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            // A client's response to a server request is acknowledged; anything else is garbage.
            return if message.get("result").is_some() || message.get("error").is_some() {
                self.answered(&message);
                StatusCode::ACCEPTED.into_response()
            } else {
                Refusal::Rpc(StatusCode::BAD_REQUEST, -32600, "Invalid Request").into_response()
            };
        };
        if let Some(caller) = caller
            && let Err(refusal) = self.check_scopes(&caller.scopes, method)
        {
            return refusal.into_response();
        }

        let mut new_session = None;
        if self.config.sessions {
            if method == "initialize" {
                let mut state = self.lock();
                let session = format!("fake-session-{}", state.sessions_issued.len() + 1);
                state.sessions_issued.push(session.clone());
                state.live_sessions.insert(session.clone());
                new_session = Some(session);
            } else if let Err(refusal) = self.check_session(headers) {
                return refusal.into_response();
            }
        }

        let Some(id) = message.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let outcome = match method {
            "initialize" => Ok(json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": "fake-mcp", "version": "1.0.0" },
            })),
            "ping" => Ok(json!({})),
            "tools/list" => self.list_tools(&params, caller),
            "tools/call" => self.call_tool(&params, caller),
            _ => Err((-32601, "Method not found".to_owned())),
        };
        let reply = match outcome {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err((code, message)) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": code, "message": message },
            }),
        };
        let mut response = axum::Json(reply).into_response();
        if let Some(session) = new_session {
            let value = HeaderValue::from_str(&session).expect("session ids are ASCII");
            response.headers_mut().insert(SESSION_HEADER, value);
        }
        response
    }

    /// 400 without a session id, 404 with one that is unknown or expired.
    fn check_session(&self, headers: &HeaderMap) -> Result<String, Refusal> {
        let Some(session) = headers
            .get(SESSION_HEADER)
            .and_then(|value| value.to_str().ok())
        else {
            return Err(Refusal::Rpc(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
            ));
        };
        if !self.lock().live_sessions.contains(session) {
            return Err(Refusal::Rpc(
                StatusCode::NOT_FOUND,
                -32001,
                "Session not found",
            ));
        }
        Ok(session.to_owned())
    }

    fn end_session(&self, headers: &HeaderMap) -> Response {
        if !self.config.sessions {
            return method_not_allowed();
        }
        match self.check_session(headers) {
            Ok(session) => {
                let mut state = self.lock();
                state.live_sessions.remove(&session);
                state.sessions_deleted.push(session);
                StatusCode::OK.into_response()
            }
            Err(refusal) => refusal.into_response(),
        }
    }

    /// The tools listed to `caller` now.
    fn tools(&self, caller: Option<&Caller>) -> Arc<Vec<Value>> {
        let state = self.lock();
        caller
            .and_then(|caller| state.tools_by_subject.get(&caller.subject))
            .unwrap_or(&state.tools)
            .clone()
    }

    fn list_tools(&self, params: &Value, caller: Option<&Caller>) -> Result<Value, (i64, String)> {
        if self.lock().mode == Mode::RepeatingCursor {
            return Ok(json!({ "tools": [], "nextCursor": "again" }));
        }
        let tools = self.tools(caller);
        let start = match params.get("cursor") {
            None | Some(Value::Null) => 0,
            Some(cursor) => cursor
                .as_str()
                .and_then(|cursor| cursor.parse::<usize>().ok())
                .filter(|start| *start <= tools.len())
                .ok_or((-32602, "Invalid cursor".to_owned()))?,
        };
        let end = (start + self.config.page_size.max(1)).min(tools.len());
        let mut result = json!({ "tools": tools[start..end] });
        if end < tools.len() {
            result["nextCursor"] = json!(end.to_string());
        }
        Ok(result)
    }

    fn call_tool(&self, params: &Value, caller: Option<&Caller>) -> Result<Value, (i64, String)> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self.tools(caller).iter().any(|tool| tool["name"] == name) {
            return Err((-32602, format!("Unknown tool: {name}")));
        }
        let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
        if name == "fail" {
            return Ok(json!({
                "content": [{ "type": "text", "text": "The tool failed on purpose." }],
                "isError": true,
            }));
        }
        if mrtr::asks_for_input(name) {
            return Ok(json!({
                "content": [{ "type": "text", "text": "needs input" }],
                "isError": true,
            }));
        }
        if name == "whoami" {
            let subject = caller.map_or(ANONYMOUS, |caller| caller.subject.as_str());
            return Ok(json!({
                "content": [{ "type": "text", "text": subject }],
                "isError": false,
            }));
        }
        Ok(json!({
            "content": [{ "type": "text", "text": arguments.to_string() }],
            "structuredContent": arguments,
            "isError": false,
        }))
    }
}

async fn mcp_endpoint(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (mode, era) = {
        let state = shared.lock();
        (state.mode, state.era)
    };
    match mode {
        Mode::Normal | Mode::RepeatingCursor => {}
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Drop => return HangUp.into_response(),
        Mode::InvalidJson => {
            return json_text(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":["#.into());
        }
        Mode::Oversized(bytes) => return oversized(&body, bytes),
        Mode::ServerError => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response();
        }
    }
    let caller = match shared.authenticate(&headers) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    match method {
        Method::POST => shared.post_streamable(&headers, &body, caller.as_ref()),
        Method::DELETE if era != Era::Modern => shared.end_session(&headers),
        _ if era == Era::Modern => {
            (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response()
        }
        _ => method_not_allowed(),
    }
}

/// `GET` under HTTP+SSE: the event stream of a new session.
async fn sse_stream(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = shared.authenticate(&headers) {
        return refusal.into_response();
    }
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let session = {
        let mut state = shared.lock();
        let session = format!("sse-session-{}", state.sessions_issued.len() + 1);
        state.sessions_issued.push(session.clone());
        state.sse_streams.insert(session.clone(), sender);
        session
    };
    let endpoint = shared
        .config
        .sse_endpoint
        .clone()
        .unwrap_or_else(|| format!("{}?session={session}", shared.messages_path()));
    let first = format!("event: endpoint\ndata: {endpoint}\n\n");
    let events = futures_util::stream::once(async move { first })
        .chain(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|event| (event, receiver)) },
        ))
        .map(|event| Ok::<_, Infallible>(Bytes::from(event)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

/// `POST` under HTTP+SSE: 202, with the answer sent on the session's stream.
async fn sse_message(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match shared.authenticate(&headers) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let query = fake_http::parse_form(query.unwrap_or_default().as_bytes());
    let stream = query
        .get("session")
        .and_then(|session| shared.lock().sse_streams.get(session).cloned());
    let Some(stream) = stream else {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    };
    let response = shared.post(&headers, &body, caller.as_ref());
    if response.status() != StatusCode::OK {
        return response;
    }
    let reply = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a buffered reply");
    let _ = stream.send(format!(
        "event: message\ndata: {}\n\n",
        String::from_utf8_lossy(&reply)
    ));
    StatusCode::ACCEPTED.into_response()
}

async fn protected_resource_metadata(State(shared): State<Arc<Shared>>) -> Response {
    let McpAuth::OAuth {
        auth_server,
        prm,
        scopes_supported,
        resource_override,
        ..
    } = &shared.config.auth
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let resource = match (resource_override, prm) {
        (Some(resource), _) => resource.clone(),
        (None, PrmLocation::Root) => shared.origin.clone(),
        (None, _) => shared.url.clone(),
    };
    let mut document = json!({
        "resource": resource,
        "authorization_servers": [shared.current_auth_server(auth_server).issuer()],
    });
    if let Some(scopes) = scopes_supported {
        document["scopes_supported"] = json!(scopes);
    }
    axum::Json(document).into_response()
}

/// A valid JSON-RPC response padded to `bytes` bytes (or the smallest possible).
fn oversized(request: &[u8], bytes: usize) -> Response {
    let id = serde_json::from_slice::<Value>(request)
        .ok()
        .and_then(|message| message.get("id").cloned())
        .unwrap_or(Value::Null);
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"padding":""#);
    let tail = r#""}}"#;
    let padding = bytes.saturating_sub(head.len() + tail.len());
    json_text(format!("{head}{}{tail}", "x".repeat(padding)))
}

fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Why the MCP endpoint turned a request away before handling it.
enum Refusal {
    /// 401 or 403 with this `WWW-Authenticate` challenge.
    Challenge(StatusCode, String),
    /// An HTTP error status with a JSON-RPC error.
    Rpc(StatusCode, i64, &'static str),
    /// 401 with no challenge at all.
    Bare,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Challenge(status, challenge) => {
                let error = if status == StatusCode::FORBIDDEN {
                    "insufficient_scope"
                } else {
                    "invalid_token"
                };
                (
                    status,
                    [(header::WWW_AUTHENTICATE, challenge)],
                    axum::Json(json!({ "error": error })),
                )
                    .into_response()
            }
            Refusal::Rpc(status, code, message) => {
                let body = json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": { "code": code, "message": message },
                });
                (status, axum::Json(body)).into_response()
            }
            Refusal::Bare => (StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY).into_response(),
        }
    }
}

fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST, DELETE")],
    )
        .into_response()
}
