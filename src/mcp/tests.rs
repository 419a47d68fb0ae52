//! Sessions against the test kit's fake MCP server, started on 127.0.0.1 inside each test. It
//! answers plain JSON (stateless, or with sessions that can be expired) and records every request
//! it receives, so the tests can assert on what went over the wire.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use switchboard_testkit::fake_as::{AsConfig, FakeAuthServer};
use switchboard_testkit::fake_mcp::{self, FakeMcpServer, McpAuth, McpConfig, Mode, PrmLocation};
use url::Url;

use super::*;
use crate::crypto::Secret;
use crate::net::{AddressClass, ClientOptions, GuardedClient, NetError, NetPolicy};

const CAPS: session::ListingCaps = session::ListingCaps {
    max_tools: 1000,
    max_bytes: 1 << 20,
};

/// A tool with a schema but no title, description or annotations.
fn add_tool() -> Value {
    json!({
        "name": "add",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        },
    })
}

/// A server listing `echo` on a first page and `add` on a second, open to anyone.
fn two_pages() -> McpConfig {
    McpConfig {
        tools: vec![fake_mcp::echo_tool(), add_tool()],
        page_size: 1,
        ..McpConfig::default()
    }
}

/// The same server, keeping sessions.
fn with_sessions() -> McpConfig {
    McpConfig {
        sessions: true,
        ..two_pages()
    }
}

/// The same server, taking only tokens `auth` issued; `tools/call` needs the scopes listed in
/// `call_scopes`.
fn two_pages_behind(auth: &FakeAuthServer, call_scopes: &[&str]) -> McpConfig {
    let mut required_scopes = HashMap::new();
    if !call_scopes.is_empty() {
        let scopes = call_scopes
            .iter()
            .map(|scope| (*scope).to_owned())
            .collect();
        required_scopes.insert("tools/call".to_owned(), scopes);
    }
    McpConfig {
        auth: McpAuth::OAuth {
            auth_server: auth.clone(),
            prm: PrmLocation::Header,
            challenge_scope: None,
            scopes_supported: None,
            resource_override: None,
            required_scopes,
        },
        ..two_pages()
    }
}

fn target(server: &FakeMcpServer) -> McpTarget {
    McpTarget {
        url: Url::parse(&server.url()).unwrap(),
        transport: Transport::StreamableHttp,
        headers: Vec::new(),
        bearer: None,
        timeout: Duration::from_secs(10),
        era: Era::Unknown,
        machine_client: false,
    }
}

/// The JSON-RPC messages with this method the server received, in order.
fn posted(server: &FakeMcpServer, method: &str) -> Vec<Value> {
    server
        .posted()
        .into_iter()
        .filter(|message| message["method"] == method)
        .collect()
}

/// The method of every JSON-RPC message the server received, in order.
fn rpc_methods(server: &FakeMcpServer) -> Vec<String> {
    server
        .posted()
        .iter()
        .filter_map(|message| message["method"].as_str().map(str::to_owned))
        .collect()
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

/// Call a tool that must not ask for input.
async fn call_tool(
    session: &McpSession,
    name: &str,
    arguments: Map<String, Value>,
) -> Result<ToolCallOutcome, McpError> {
    let call = ToolCall {
        name: name.to_owned(),
        arguments,
        ..ToolCall::default()
    };
    match session.call(call).await? {
        CallResult::Complete(outcome) => Ok(outcome),
        CallResult::InputRequired(required) => panic!("asked for input: {required:?}"),
    }
}

fn arguments(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn lists_tools_across_pages() {
    let server = FakeMcpServer::start(two_pages()).await;
    let session = open(&http(true), target(&server)).await.unwrap();

    let tools = session.list_tools(CAPS).await.unwrap().tools;
    session.close().await;

    assert_eq!(
        tools,
        vec![
            ToolInfo {
                name: "echo".to_owned(),
                title: Some("Echo".to_owned()),
                description: Some("Returns its arguments.".to_owned()),
                input_schema: fake_mcp::echo_tool()["inputSchema"].clone(),
                output_schema: None,
                annotations: Some(json!({"readOnlyHint": true})),
            },
            ToolInfo {
                name: "add".to_owned(),
                title: None,
                description: None,
                input_schema: add_tool()["inputSchema"].clone(),
                output_schema: None,
                annotations: None,
            },
        ]
    );
    // The second page was asked for with the cursor the first one handed out.
    let cursors: Vec<Option<Value>> = posted(&server, "tools/list")
        .into_iter()
        .map(|message| {
            message
                .get("params")
                .and_then(|params| params.get("cursor"))
                .cloned()
        })
        .collect();
    assert_eq!(cursors, vec![None, Some(json!("1"))]);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_cursor_ends_the_listing() {
    let server = FakeMcpServer::start(two_pages()).await;
    server.set_mode(Mode::RepeatingCursor);
    let session = open(&http(true), target(&server)).await.unwrap();

    let result = session.list_tools(CAPS).await;
    assert!(matches!(result, Err(McpError::Protocol(_))), "{result:?}");
    assert_eq!(server.count("tools/list"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_call_round_trip() {
    let server = FakeMcpServer::start(two_pages()).await;
    let session = open(&http(true), target(&server)).await.unwrap();

    let args = json!({"text": "hello", "count": 2, "nested": {"ok": true}});
    let outcome = call_tool(&session, "echo", arguments(args.clone()))
        .await
        .unwrap();
    session.close().await;

    assert!(!outcome.is_error);
    assert_eq!(outcome.structured_content, Some(args.clone()));
    assert_eq!(outcome.content.len(), 1);
    assert_eq!(outcome.content[0]["type"], "text");
    let text = outcome.content[0]["text"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), args);

    let calls = posted(&server, "tools/call");
    assert_eq!(calls.len(), 1);
    let params = &calls[0]["params"];
    assert_eq!(params["name"], "echo");
    assert_eq!(params["arguments"], args);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_rpc_errors_are_protocol_errors() {
    let server = FakeMcpServer::start(two_pages()).await;
    let session = open(&http(true), target(&server)).await.unwrap();

    let result = call_tool(&session, "missing", Map::new()).await;
    match result {
        Err(McpError::Protocol(message)) => {
            assert!(message.contains("Unknown tool: missing"), "{message}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_the_bearer_token_and_static_headers() {
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let server = FakeMcpServer::start(two_pages_behind(&auth, &[])).await;
    let token = auth.issue_access_token(&[]);
    let target = McpTarget {
        headers: vec![
            ("X-Api-Key".to_owned(), Secret::new("key-1")),
            // Must not override the bearer token.
            (
                "Authorization".to_owned(),
                Secret::new("Basic c3RhdGljOnN0YXRpYw=="),
            ),
        ],
        bearer: Some(Secret::new(token.clone())),
        ..target(&server)
    };
    let session = open(&http(true), target).await.unwrap();
    session.list_tools(CAPS).await.unwrap();
    call_tool(&session, "echo", arguments(json!({"text": "hi"})))
        .await
        .unwrap();
    session.close().await;

    // Never reached before: asked whether it is stateless first, then initialized.
    assert_eq!(
        rpc_methods(&server),
        vec![
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/list",
            "tools/call"
        ]
    );
    let received = server.requests();
    assert!(!received.is_empty());
    for request in &received {
        assert_eq!(
            request.header_values("authorization"),
            vec![format!("Bearer {token}")],
            "{} {}",
            request.method,
            request.body
        );
        assert_eq!(request.header_values("x-api-key"), vec!["key-1"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn static_authorization_is_sent_without_a_bearer_token() {
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let server = FakeMcpServer::start(two_pages_behind(&auth, &[])).await;
    let token = auth.issue_access_token(&[]);
    let target = McpTarget {
        headers: vec![(
            "Authorization".to_owned(),
            Secret::new(format!("Bearer {token}")),
        )],
        ..target(&server)
    };
    let session = open(&http(true), target).await.unwrap();
    assert_eq!(session.list_tools(CAPS).await.unwrap().tools.len(), 2);
    session.close().await;
    let received = server.requests();
    assert!(!received.is_empty());
    assert!(
        received.iter().all(
            |request| request.header_values("authorization") == vec![format!("Bearer {token}")]
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_exposes_the_challenge() {
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let server = FakeMcpServer::start(two_pages_behind(&auth, &[])).await;
    let target = McpTarget {
        bearer: Some(Secret::new("token-expired-secret")),
        ..target(&server)
    };
    let err = open(&http(true), target).await.unwrap_err();

    let challenge = format!(
        r#"Bearer error="invalid_token", resource_metadata="{}""#,
        server.prm_url().unwrap()
    );
    match &err {
        McpError::Unauthorized { www_authenticate } => {
            assert_eq!(www_authenticate.as_deref(), Some(challenge.as_str()));
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("token-expired-secret"), "{shown}");

    // The token was sent; only the initialize request went out.
    let received = server.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].header_values("authorization"),
        vec!["Bearer token-expired-secret"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_without_a_challenge() {
    let server = FakeMcpServer::start(McpConfig {
        auth: McpAuth::BareUnauthorized,
        ..two_pages()
    })
    .await;
    let err = open(&http(true), target(&server)).await.unwrap_err();
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
    assert!(!format!("{err} {err:?}").contains(fake_mcp::UNAUTHORIZED_BODY));
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_exposes_the_challenge() {
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let server = FakeMcpServer::start(two_pages_behind(&auth, &["tools:call"])).await;
    let target = McpTarget {
        bearer: Some(Secret::new(auth.issue_access_token(&[]))),
        ..target(&server)
    };
    let session = open(&http(true), target).await.unwrap();

    let err = call_tool(&session, "echo", arguments(json!({"text": "hi"})))
        .await
        .unwrap_err();
    let challenge = format!(
        r#"Bearer error="insufficient_scope", scope="tools:call", resource_metadata="{}""#,
        server.prm_url().unwrap()
    );
    match err {
        McpError::Forbidden { www_authenticate } => {
            assert_eq!(www_authenticate.as_deref(), Some(challenge.as_str()))
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_servers_time_out() {
    let server = FakeMcpServer::start(two_pages()).await;
    let target = McpTarget {
        timeout: Duration::from_millis(500),
        ..target(&server)
    };
    let session = open(&http(true), target).await.unwrap();
    server.set_mode(Mode::Slow(Duration::from_secs(5)));

    let started = Instant::now();
    let result = call_tool(&session, "echo", arguments(json!({"text": "hi"}))).await;
    assert!(matches!(result, Err(McpError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_results_are_refused() {
    let server = FakeMcpServer::start(two_pages()).await;
    let session = open(&http(true), target(&server)).await.unwrap();
    // One byte more than a message may have.
    server.set_mode(Mode::Oversized(session::MAX_MESSAGE_BYTES + 1));

    let result = call_tool(&session, "echo", Map::new()).await;
    assert!(matches!(result, Err(McpError::Transport(_))), "{result:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_private_addresses_without_contacting_them() {
    let server = FakeMcpServer::start(two_pages()).await;

    let err = open(&http(false), target(&server)).await.unwrap_err();
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

    let port = target(&server).url.port().unwrap();
    let by_name = McpTarget {
        url: Url::parse(&format!("http://localhost:{port}/mcp")).unwrap(),
        ..target(&server)
    };
    let err = open(&http(false), by_name).await.unwrap_err();
    assert!(
        matches!(err, McpError::Net(NetError::DisallowedAddress { .. })),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_sends_through_the_guard() {
    let server = FakeMcpServer::start(two_pages()).await;
    // Past the up-front URL check, rmcp's own requests are refused by the client itself.
    let Err(err) = session::streamable(&http(false), &target(&server)).await else {
        panic!("the guard let rmcp through");
    };
    let err = err.into_error();
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
    assert_eq!(server.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_legacy_session_over_streamable_http_posts_its_calls_itself() {
    let http = http(true);
    for (config, transport, itself) in [
        (two_pages(), Transport::StreamableHttp, true),
        (with_sessions(), Transport::StreamableHttp, true),
        (
            McpConfig {
                era: fake_mcp::Era::Modern,
                ..two_pages()
            },
            Transport::StreamableHttp,
            false,
        ),
        (
            McpConfig {
                sse: true,
                ..two_pages()
            },
            Transport::Sse,
            false,
        ),
    ] {
        let server = FakeMcpServer::start(config).await;
        let target = McpTarget {
            transport,
            ..target(&server)
        };
        let session = open(&http, target).await.unwrap();
        let outcome = call_tool(&session, "echo", arguments(json!({ "text": "hi" })))
            .await
            .unwrap();
        assert_eq!(outcome.structured_content, Some(json!({ "text": "hi" })));
        assert_eq!(
            session.calls_posted_itself(),
            usize::from(itself),
            "{transport:?}"
        );
        session.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_goes_out_on_the_session_the_handshake_opened() {
    let server = FakeMcpServer::start(with_sessions()).await;
    let target = McpTarget {
        bearer: Some(Secret::new("s3cret")),
        headers: vec![("X-Team".to_owned(), Secret::new("blue"))],
        ..target(&server)
    };
    let session = open(&http(true), target).await.unwrap();
    let version = session.protocol_version().to_owned();
    for text in ["one", "two"] {
        let outcome = call_tool(&session, "echo", arguments(json!({ "text": text })))
            .await
            .unwrap();
        assert_eq!(outcome.structured_content, Some(json!({ "text": text })));
    }

    let issued = server.sessions_issued();
    assert_eq!(issued.len(), 1);
    let calls: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.json()["method"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 2);
    let mut ids = HashSet::new();
    for call in &calls {
        assert_eq!(
            call.header_values("mcp-session-id"),
            vec![issued[0].as_str()]
        );
        assert_eq!(
            call.header_values("mcp-protocol-version"),
            vec![version.as_str()]
        );
        assert_eq!(call.header_values("authorization"), vec!["Bearer s3cret"]);
        assert_eq!(call.header_values("x-team"), vec!["blue"]);
        let id = call.json()["id"].as_str().unwrap().to_owned();
        let hex = id.strip_prefix("call-").expect("a call's own id");
        assert!(
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(ids.insert(id), "never the same id twice");
    }
    assert_eq!(session.calls_posted_itself(), 2);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_whose_stream_breaks_is_interrupted_and_the_session_goes_on() {
    let server = FakeMcpServer::start(with_sessions()).await;
    let session = open(&http(true), target(&server)).await.unwrap();
    server.break_streams("tools/call", 1);

    let lost = call_tool(&session, "echo", arguments(json!({ "text": "lost" }))).await;
    assert!(matches!(lost, Err(McpError::Interrupted)), "{lost:?}");
    let next = call_tool(&session, "echo", arguments(json!({ "text": "next" })))
        .await
        .unwrap();
    assert_eq!(next.structured_content, Some(json!({ "text": "next" })));
    assert_eq!(server.count("initialize"), 1, "on the same session");
    assert_eq!(session.calls_posted_itself(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_given_up_is_cancelled_on_the_server() {
    let server = FakeMcpServer::start(with_sessions()).await;
    let target = McpTarget {
        timeout: Duration::from_millis(500),
        ..target(&server)
    };
    let session = open(&http(true), target).await.unwrap();
    server.set_mode(Mode::Slow(Duration::from_secs(2)));

    let result = call_tool(&session, "echo", arguments(json!({ "text": "hi" }))).await;
    assert!(matches!(result, Err(McpError::Timeout)), "{result:?}");
    server.set_mode(Mode::Normal);
    let called = posted(&server, "tools/call");
    assert_eq!(called.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let cancelled = loop {
        if let Some(cancelled) = posted(&server, "notifications/cancelled").pop() {
            break cancelled;
        }
        assert!(
            Instant::now() < deadline,
            "no cancellation reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(cancelled["params"]["requestId"], called[0]["id"]);
    assert_eq!(session.calls_posted_itself(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_are_reported_and_closed() {
    let server = FakeMcpServer::start(with_sessions()).await;
    let session = open(&http(true), target(&server)).await.unwrap();
    // The server forgets the session it assigned on initialize.
    server.expire_sessions();

    let result = session.list_tools(CAPS).await;
    assert!(
        matches!(result, Err(McpError::SessionExpired)),
        "{result:?}"
    );
    session.close().await;

    let issued = server.sessions_issued();
    assert_eq!(issued.len(), 1);
    let received = server.requests();
    // The session id assigned on initialize went with the requests after it, and closing
    // asked the server to delete it.
    let list = received
        .iter()
        .find(|request| request.json()["method"] == "tools/list")
        .unwrap();
    assert_eq!(
        list.header_values("mcp-session-id"),
        vec![issued[0].as_str()]
    );
    let delete = received
        .iter()
        .find(|request| request.method == "DELETE")
        .expect("the session was deleted on close");
    assert_eq!(
        delete.header_values("mcp-session-id"),
        vec![issued[0].as_str()]
    );
    // No silent re-initialize.
    assert_eq!(server.count("initialize"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_target_without_an_event_stream_fails_on_the_get() {
    let server = FakeMcpServer::start(two_pages()).await;
    let target = McpTarget {
        transport: Transport::Sse,
        ..target(&server)
    };
    let err = open(&http(true), target.clone()).await.unwrap_err();
    assert!(
        matches!(err, McpError::Transport(ref message) if message.contains("405")),
        "{err:?}"
    );
    let received = server.requests();
    assert_eq!(received.len(), 1, "only the stream was asked for");
    assert_eq!(received[0].method, "GET");
    assert_eq!(
        received[0].header_values("accept"),
        vec!["text/event-stream"]
    );

    let err = open(&http(false), target).await.unwrap_err();
    assert!(matches!(err, McpError::Net(_)), "{err:?}");
    assert_eq!(server.request_count(), 1, "the outbound rules apply first");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_kept_sessions_are_ended_by_the_reaper() {
    let server = FakeMcpServer::start(with_sessions()).await;
    let pool = super::pool::SessionPool::default();
    let key = super::SessionKey {
        server: uuid::Uuid::now_v7(),
        user: None,
    };
    let session = pool.lease(&http(true), key, target(&server)).await.unwrap();
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
    while server.sessions_deleted().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no DELETE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.sessions_deleted(), server.sessions_issued());
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_kept_per_grant_and_capped_least_recently_used_first() {
    let server = FakeMcpServer::start(with_sessions()).await;
    let pool = super::pool::SessionPool::default();
    let server_id = uuid::Uuid::now_v7();
    let (alice, bob) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let key = |user| super::SessionKey {
        server: server_id,
        user,
    };
    for user in [None, Some(alice), Some(bob)] {
        drop(
            pool.lease(&http(true), key(user), target(&server))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        pool.open_sessions(),
        3,
        "one session per grant of one server"
    );
    assert_eq!(server.sessions_issued().len(), 3);

    // Over the cap, the least recently used goes: the shared one, leased first.
    drop(
        pool.lease(&http(true), key(Some(alice)), target(&server))
            .await
            .unwrap(),
    );
    assert_eq!(pool.cap(2), 1);
    assert_eq!(pool.open_sessions(), 2);
    drop(
        pool.lease(&http(true), key(Some(alice)), target(&server))
            .await
            .unwrap(),
    );
    drop(
        pool.lease(&http(true), key(Some(bob)), target(&server))
            .await
            .unwrap(),
    );
    assert_eq!(
        server.sessions_issued().len(),
        3,
        "alice's and bob's were kept"
    );
    drop(
        pool.lease(&http(true), key(None), target(&server))
            .await
            .unwrap(),
    );
    assert_eq!(
        server.sessions_issued().len(),
        4,
        "the shared one was opened again"
    );

    // A withdrawn grant takes its session with it, and only its own.
    pool.forget_key(key(Some(alice)));
    assert_eq!(pool.open_sessions(), 2);
    pool.forget(server_id);
    assert_eq!(pool.open_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_of_neither_era_reports_what_it_answered() {
    let server = FakeMcpServer::start(two_pages()).await;
    for era in [Era::Legacy, Era::Modern, Era::Unknown] {
        let target = McpTarget {
            url: Url::parse(&format!("{}/nowhere", server.origin())).unwrap(),
            era,
            ..target(&server)
        };
        let err = open(&http(true), target).await.unwrap_err();
        assert!(
            matches!(&err, McpError::Transport(message) if message.contains("404")),
            "{era:?}: {err:?}"
        );
    }
    // Each time both eras were asked once, discovery and `initialize` in the order the hint
    // says, and then the GET that would open an HTTP+SSE event stream.
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "POST", "GET"].repeat(3), "{methods:?}");
}

#[test]
fn the_stateless_revision_is_the_one_rmcp_opens_without_initialize() {
    use rmcp::model::ProtocolVersion;
    assert_eq!(STATELESS_REVISION, ProtocolVersion::NO_INITIALIZE.as_str());
    assert_eq!(Era::of_version(Some(STATELESS_REVISION)), Era::Modern);
    assert_eq!(Era::of_version(Some("2025-11-25")), Era::Legacy);
    assert_eq!(Era::of_version(None), Era::Unknown);
}
