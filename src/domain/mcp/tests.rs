//! Sessions against a small Streamable HTTP MCP server started on 127.0.0.1 inside each test.
//! The server answers plain JSON (stateless, or with a session in one mode) and records every
//! request it receives, so the tests can assert on what went over the wire.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use url::Url;

use super::*;
use crate::crypto::Secret;
use crate::domain::servers::Transport;
use crate::net::{AddressClass, ClientOptions, GuardedClient, NetError, NetPolicy};

const GOOD_TOKEN: &str = "token-good";
const CAPS: session::ListingCaps = session::ListingCaps {
    max_tools: 1000,
    max_bytes: 1 << 20,
};
const SESSION_ID: &str = "session-1";

/// How the fake server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Answers everything.
    Open,
    /// Every request must carry `Authorization: Bearer token-good`, else 401 with a challenge.
    RequireBearer,
    /// Every request gets a 401 without `WWW-Authenticate`.
    BareUnauthorized,
    /// `tools/call` gets a 403 `insufficient_scope` challenge.
    InsufficientScope,
    /// `tools/call` answers after five seconds.
    Slow,
    /// `initialize` assigns a session; any later request carrying it gets a 404.
    ExpiringSession,
    /// `tools/list` hands out the same cursor on every page.
    RepeatingCursor,
    /// `tools/call` answers with a result larger than the client accepts.
    OversizedResult,
}

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Received {
    method: Method,
    headers: HeaderMap,
    rpc_method: Option<String>,
    params: Option<Value>,
}

#[derive(Clone)]
struct FakeServer {
    addr: SocketAddr,
    mode: Mode,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeServer {
    async fn start(mode: Mode) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = FakeServer {
            addr: listener.local_addr().unwrap(),
            mode,
            received: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/mcp",
                post(handle_post).get(handle_get).delete(handle_delete),
            )
            .with_state(server.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        server
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}/mcp", self.addr)).unwrap()
    }

    fn target(&self) -> McpTarget {
        McpTarget {
            url: self.url(),
            transport: Transport::StreamableHttp,
            headers: Vec::new(),
            bearer: None,
            timeout: Duration::from_secs(10),
        }
    }

    fn resource_metadata(&self) -> String {
        format!(
            "http://{}/.well-known/oauth-protected-resource/mcp",
            self.addr
        )
    }

    fn invalid_token_challenge(&self) -> String {
        format!(
            r#"Bearer error="invalid_token", resource_metadata="{}""#,
            self.resource_metadata()
        )
    }

    fn insufficient_scope_challenge(&self) -> String {
        format!(
            r#"Bearer error="insufficient_scope", scope="tools:call", resource_metadata="{}""#,
            self.resource_metadata()
        )
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn rpc_methods(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter_map(|request| request.rpc_method)
            .collect()
    }

    fn record(&self, method: Method, headers: &HeaderMap, message: Option<&Value>) {
        self.received.lock().unwrap().push(Received {
            method,
            headers: headers.clone(),
            rpc_method: message
                .and_then(|m| m.get("method"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            params: message.and_then(|m| m.get("params")).cloned(),
        });
    }
}

async fn handle_get(State(server): State<FakeServer>, headers: HeaderMap) -> StatusCode {
    server.record(Method::GET, &headers, None);
    // No server-initiated stream.
    StatusCode::METHOD_NOT_ALLOWED
}

async fn handle_delete(State(server): State<FakeServer>, headers: HeaderMap) -> StatusCode {
    server.record(Method::DELETE, &headers, None);
    StatusCode::OK
}

async fn handle_post(
    State(server): State<FakeServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        server.record(Method::POST, &headers, None);
        return StatusCode::BAD_REQUEST.into_response();
    };
    server.record(Method::POST, &headers, Some(&message));

    match server.mode {
        Mode::RequireBearer
            if headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes)
                != Some(format!("Bearer {GOOD_TOKEN}").as_bytes()) =>
        {
            return challenge(StatusCode::UNAUTHORIZED, &server.invalid_token_challenge());
        }
        Mode::BareUnauthorized => {
            return (StatusCode::UNAUTHORIZED, "who are you?").into_response();
        }
        _ => {}
    }

    // Notifications and responses have no id and get no answer.
    let Some(id) = message.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let params = message.get("params").cloned().unwrap_or(Value::Null);

    if server.mode == Mode::ExpiringSession
        && method != "initialize"
        && headers.contains_key("mcp-session-id")
    {
        return StatusCode::NOT_FOUND.into_response();
    }

    match method {
        "initialize" => {
            let result = json!({
                "protocolVersion": params["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake-mcp", "version": "0.0.1"},
            });
            let mut response = rpc_result(id, result);
            if server.mode == Mode::ExpiringSession {
                response
                    .headers_mut()
                    .insert("mcp-session-id", HeaderValue::from_static(SESSION_ID));
            }
            response
        }
        "tools/list" => {
            if server.mode == Mode::RepeatingCursor {
                return rpc_result(id, json!({"tools": [], "nextCursor": "again"}));
            }
            match params.get("cursor").and_then(Value::as_str) {
                None => rpc_result(id, json!({"tools": [echo_tool()], "nextCursor": "page-2"})),
                Some("page-2") => rpc_result(id, json!({"tools": [add_tool()]})),
                Some(_) => rpc_error(id, -32602, "unknown cursor"),
            }
        }
        "tools/call" => {
            match server.mode {
                Mode::InsufficientScope => {
                    return challenge(
                        StatusCode::FORBIDDEN,
                        &server.insufficient_scope_challenge(),
                    );
                }
                Mode::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
                Mode::OversizedResult => {
                    let text = "x".repeat(session::MAX_MESSAGE_BYTES);
                    return rpc_result(id, json!({"content": [{"type": "text", "text": text}]}));
                }
                _ => {}
            }
            let arguments = params
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!({}));
            match params.get("name").and_then(Value::as_str) {
                Some("echo") => rpc_result(
                    id,
                    json!({
                        "content": [{"type": "text", "text": arguments.to_string()}],
                        "structuredContent": arguments,
                        "isError": false,
                    }),
                ),
                _ => rpc_error(id, -32602, "unknown tool"),
            }
        }
        _ => rpc_error(id, -32601, "method not found"),
    }
}

fn echo_tool() -> Value {
    json!({
        "name": "echo",
        "title": "Echo",
        "description": "Returns its arguments.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "annotations": {"readOnlyHint": true},
    })
}

fn add_tool() -> Value {
    json!({
        "name": "add",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        },
    })
}

fn rpc_result(id: Value, result: Value) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
        .into_response()
}

fn challenge(status: StatusCode, value: &str) -> Response {
    (
        status,
        [(header::WWW_AUTHENTICATE, value.to_owned())],
        "no entry",
    )
        .into_response()
}

fn http(allow_private_networks: bool) -> GuardedClient {
    GuardedClient::new(
        NetPolicy {
            allow_private_networks,
        },
        ClientOptions::default(),
    )
    .unwrap()
}

fn arguments(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn header_values(request: &Received, name: &str) -> Vec<String> {
    request
        .headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn lists_tools_across_pages() {
    let server = FakeServer::start(Mode::Open).await;
    let session = open(&http(true), server.target()).await.unwrap();

    let tools = session.list_tools(CAPS).await.unwrap().tools;
    session.close().await;

    assert_eq!(
        tools,
        vec![
            ToolInfo {
                name: "echo".to_owned(),
                title: Some("Echo".to_owned()),
                description: Some("Returns its arguments.".to_owned()),
                input_schema: echo_tool()["inputSchema"].clone(),
                annotations: Some(json!({"readOnlyHint": true})),
            },
            ToolInfo {
                name: "add".to_owned(),
                title: None,
                description: None,
                input_schema: add_tool()["inputSchema"].clone(),
                annotations: None,
            },
        ]
    );
    let cursors: Vec<Option<Value>> = server
        .received()
        .into_iter()
        .filter(|request| request.rpc_method.as_deref() == Some("tools/list"))
        .map(|request| {
            request
                .params
                .and_then(|params| params.get("cursor").cloned())
        })
        .collect();
    assert_eq!(cursors, vec![None, Some(json!("page-2"))]);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_cursor_ends_the_listing() {
    let server = FakeServer::start(Mode::RepeatingCursor).await;
    let session = open(&http(true), server.target()).await.unwrap();

    let result = session.list_tools(CAPS).await;
    assert!(matches!(result, Err(McpError::Protocol(_))), "{result:?}");
    let pages = server
        .rpc_methods()
        .iter()
        .filter(|method| *method == "tools/list")
        .count();
    assert_eq!(pages, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_call_round_trip() {
    let server = FakeServer::start(Mode::Open).await;
    let session = open(&http(true), server.target()).await.unwrap();

    let args = json!({"text": "hello", "count": 2, "nested": {"ok": true}});
    let outcome = session
        .call_tool("echo", arguments(args.clone()))
        .await
        .unwrap();
    session.close().await;

    assert!(!outcome.is_error);
    assert_eq!(outcome.structured_content, Some(args.clone()));
    assert_eq!(outcome.content.len(), 1);
    assert_eq!(outcome.content[0]["type"], "text");
    let text = outcome.content[0]["text"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), args);

    let call = server
        .received()
        .into_iter()
        .find(|request| request.rpc_method.as_deref() == Some("tools/call"))
        .unwrap();
    let params = call.params.unwrap();
    assert_eq!(params["name"], "echo");
    assert_eq!(params["arguments"], args);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_rpc_errors_are_protocol_errors() {
    let server = FakeServer::start(Mode::Open).await;
    let session = open(&http(true), server.target()).await.unwrap();

    let result = session.call_tool("missing", Map::new()).await;
    match result {
        Err(McpError::Protocol(message)) => assert!(message.contains("unknown tool"), "{message}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_the_bearer_token_and_static_headers() {
    let server = FakeServer::start(Mode::RequireBearer).await;
    let target = McpTarget {
        headers: vec![
            ("X-Api-Key".to_owned(), Secret::new("key-1")),
            // Must not override the bearer token.
            (
                "Authorization".to_owned(),
                Secret::new("Basic c3RhdGljOnN0YXRpYw=="),
            ),
        ],
        bearer: Some(Secret::new(GOOD_TOKEN)),
        ..server.target()
    };
    let session = open(&http(true), target).await.unwrap();
    session.list_tools(CAPS).await.unwrap();
    session
        .call_tool("echo", arguments(json!({"text": "hi"})))
        .await
        .unwrap();
    session.close().await;

    let received = server.received();
    assert_eq!(
        server.rpc_methods(),
        vec![
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/list",
            "tools/call"
        ]
    );
    for request in &received {
        assert_eq!(
            header_values(request, "authorization"),
            vec![format!("Bearer {GOOD_TOKEN}")],
            "{} {:?}",
            request.method,
            request.rpc_method
        );
        assert_eq!(header_values(request, "x-api-key"), vec!["key-1"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn static_authorization_is_sent_without_a_bearer_token() {
    let server = FakeServer::start(Mode::RequireBearer).await;
    let target = McpTarget {
        headers: vec![(
            "Authorization".to_owned(),
            Secret::new(format!("Bearer {GOOD_TOKEN}")),
        )],
        ..server.target()
    };
    let session = open(&http(true), target).await.unwrap();
    assert_eq!(session.list_tools(CAPS).await.unwrap().tools.len(), 2);
    session.close().await;
    assert!(
        server
            .received()
            .iter()
            .all(|request| header_values(request, "authorization")
                == vec![format!("Bearer {GOOD_TOKEN}")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_exposes_the_challenge() {
    let server = FakeServer::start(Mode::RequireBearer).await;
    let target = McpTarget {
        bearer: Some(Secret::new("token-expired-secret")),
        ..server.target()
    };
    let err = open(&http(true), target).await.unwrap_err();

    match &err {
        McpError::Unauthorized { www_authenticate } => {
            assert_eq!(
                www_authenticate.as_deref(),
                Some(server.invalid_token_challenge().as_str())
            );
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("token-expired-secret"), "{shown}");

    // The token was sent; only the initialize request went out.
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        header_values(&received[0], "authorization"),
        vec!["Bearer token-expired-secret"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_without_a_challenge() {
    let server = FakeServer::start(Mode::BareUnauthorized).await;
    let err = open(&http(true), server.target()).await.unwrap_err();
    assert!(
        matches!(
            err,
            McpError::Unauthorized {
                www_authenticate: None
            }
        ),
        "{err:?}"
    );
    // The body the server sent is not passed on.
    assert!(!format!("{err} {err:?}").contains("who are you"));
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_exposes_the_challenge() {
    let server = FakeServer::start(Mode::InsufficientScope).await;
    let session = open(&http(true), server.target()).await.unwrap();

    let err = session
        .call_tool("echo", arguments(json!({"text": "hi"})))
        .await
        .unwrap_err();
    match err {
        McpError::Forbidden { www_authenticate } => assert_eq!(
            www_authenticate.as_deref(),
            Some(server.insufficient_scope_challenge().as_str())
        ),
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_servers_time_out() {
    let server = FakeServer::start(Mode::Slow).await;
    let target = McpTarget {
        timeout: Duration::from_millis(500),
        ..server.target()
    };
    let session = open(&http(true), target).await.unwrap();

    let started = Instant::now();
    let result = session
        .call_tool("echo", arguments(json!({"text": "hi"})))
        .await;
    assert!(matches!(result, Err(McpError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_results_are_refused() {
    let server = FakeServer::start(Mode::OversizedResult).await;
    let session = open(&http(true), server.target()).await.unwrap();

    let result = session.call_tool("echo", Map::new()).await;
    assert!(matches!(result, Err(McpError::Transport(_))), "{result:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_private_addresses_without_contacting_them() {
    let server = FakeServer::start(Mode::Open).await;

    let err = open(&http(false), server.target()).await.unwrap_err();
    assert!(
        matches!(
            err,
            McpError::Net(NetError::DisallowedAddress {
                class: AddressClass::Loopback,
                ..
            })
        ),
        "{err:?}"
    );

    let by_name = McpTarget {
        url: Url::parse(&format!("http://localhost:{}/mcp", server.addr.port())).unwrap(),
        ..server.target()
    };
    let err = open(&http(false), by_name).await.unwrap_err();
    assert!(
        matches!(err, McpError::Net(NetError::DisallowedAddress { .. })),
        "{err:?}"
    );
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_sends_through_the_guard() {
    let server = FakeServer::start(Mode::Open).await;
    // Past the up-front URL check, rmcp's own requests are refused by the client itself.
    let err = session::initialize(&http(false), &server.target())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            McpError::Net(NetError::DisallowedAddress {
                class: AddressClass::Loopback,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_are_reported_and_closed() {
    let server = FakeServer::start(Mode::ExpiringSession).await;
    let session = open(&http(true), server.target()).await.unwrap();

    let result = session.list_tools(CAPS).await;
    assert!(
        matches!(result, Err(McpError::SessionExpired)),
        "{result:?}"
    );
    session.close().await;

    let received = server.received();
    // The session id assigned on initialize went with the requests after it, and closing
    // asked the server to delete it.
    let list = received
        .iter()
        .find(|request| request.rpc_method.as_deref() == Some("tools/list"))
        .unwrap();
    assert_eq!(header_values(list, "mcp-session-id"), vec![SESSION_ID]);
    let delete = received
        .iter()
        .find(|request| request.method == Method::DELETE)
        .expect("the session was deleted on close");
    assert_eq!(header_values(delete, "mcp-session-id"), vec![SESSION_ID]);
    // No silent re-initialize.
    let initializes = received
        .iter()
        .filter(|request| request.rpc_method.as_deref() == Some("initialize"))
        .count();
    assert_eq!(initializes, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_target_without_an_event_stream_fails_on_the_get() {
    let server = FakeServer::start(Mode::Open).await;
    let target = McpTarget {
        transport: Transport::Sse,
        ..server.target()
    };
    let err = open(&http(true), target.clone()).await.unwrap_err();
    assert!(
        matches!(err, McpError::Transport(ref message) if message.contains("405")),
        "{err:?}"
    );
    let received = server.received();
    assert_eq!(received.len(), 1, "only the stream was asked for");
    assert_eq!(received[0].method, Method::GET);
    assert_eq!(
        header_values(&received[0], "accept"),
        vec!["text/event-stream"]
    );

    let err = open(&http(false), target).await.unwrap_err();
    assert!(matches!(err, McpError::Net(_)), "{err:?}");
    assert_eq!(server.received().len(), 1, "the outbound rules apply first");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_kept_sessions_are_ended_by_the_reaper() {
    let server = FakeServer::start(Mode::ExpiringSession).await;
    let pool = super::pool::SessionPool::default();
    let id = uuid::Uuid::now_v7();
    let session = pool.lease(&http(true), id, server.target()).await.unwrap();
    drop(session);
    assert_eq!(pool.open_sessions(), 1);
    assert_eq!(
        pool.reap_idle(Duration::from_secs(300)),
        0,
        "not idle long enough"
    );
    assert_eq!(pool.open_sessions(), 1);
    assert_eq!(pool.reap_idle(Duration::ZERO), 1);
    assert_eq!(pool.open_sessions(), 0);
    // Ending it told the server to delete the session.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !server
        .received()
        .iter()
        .any(|request| request.method == Method::DELETE)
    {
        assert!(tokio::time::Instant::now() < deadline, "no DELETE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
