//! Tool catalogues and tool calls against the fake MCP server: listing with pagination,
//! calls and their results, and how auth problems and failing servers surface.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::fake_as::{AsConfig, FakeAuthServer, TokenFailure};
use crate::support::fake_mcp::{
    FakeMcpServer, McpAuth, McpConfig, Mode, echo_tool, fail_tool, tool,
};
use crate::support::{TestApp, error_code, oauth_with};
use serde_json::{Value, json};
use switchboard::domain::access::Role;

const REFRESH: &str = "mutation($id: ID!) { refreshMcpServer(id: $id) { connectionStatus authStatus toolCount tools { nodes { name inputSchema } } } }";
const CALL: &str = "mutation($id: ID!, $n: String!, $a: JSON) { callMcpTool(serverId: $id, name: $n, arguments: $a) { content structuredContent isError } }";
const STATUS: &str =
    "query($id: ID!) { mcpServer(id: $id) { connectionStatus authStatus statusReason lastError } }";

#[tokio::test(flavor = "multi_thread")]
async fn catalogue_and_calls() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![echo_tool(), fail_tool(), tool("third")],
        page_size: 1,
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(a, json!({ "name": "tools", "url": mcp.url() }))
        .await;
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    let s = &data["refreshMcpServer"];
    assert_eq!(s["toolCount"], 3, "{data}");
    assert_eq!(s["connectionStatus"], "CONNECTED");
    let names: Vec<&str> = s["tools"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "fail", "third"], "all pages");
    assert_eq!(mcp.count("tools/list"), 3);

    let viewer = t.new_member("vic", a.workspace_id, Role::Viewer).await;
    let data = t
        .ok(
            &viewer,
            CALL,
            json!({ "id": id, "n": "echo", "a": { "text": "hi" } }),
        )
        .await;
    let result = &data["callMcpTool"];
    assert_eq!(result["isError"], false, "{data}");
    assert_eq!(result["structuredContent"], json!({ "text": "hi" }));
    assert_eq!(result["content"][0]["type"], "text");
    let data = t.ok(a, CALL, json!({ "id": id, "n": "fail" })).await;
    assert_eq!(
        data["callMcpTool"]["isError"], true,
        "a tool's own failure is a result, not an error"
    );

    for (vars, field) in [
        (json!({ "id": id, "n": "nope" }), "name"),
        (json!({ "id": id, "n": "echo", "a": [1, 2] }), "arguments"),
        (json!({ "id": id, "n": "echo", "a": "text" }), "arguments"),
    ] {
        let body = t.gql(Some(&a.token), CALL, vars.clone()).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{vars}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    let stranger = t.new_workspace_admin("sam").await;
    let body = t
        .gql(
            Some(&stranger.token),
            CALL,
            json!({ "id": id, "n": "echo" }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    let calls_before = mcp.count("tools/call");
    let body = t
        .gql(Some(&viewer.token), REFRESH, json!({ "id": id }))
        .await;
    assert_eq!(
        error_code(&body),
        Some("FORBIDDEN"),
        "refreshing needs the editor role"
    );
    assert_eq!(mcp.count("tools/call"), calls_before);
}

async fn oauth_server(
    t: &TestApp,
    auth_config: AsConfig,
    required: HashMap<String, Vec<String>>,
) -> (FakeAuthServer, FakeMcpServer, String) {
    let auth = FakeAuthServer::start(auth_config).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: oauth_with(&auth, |o| {
            if let McpAuth::OAuth {
                required_scopes: r, ..
            } = o
            {
                *r = required;
            }
        }),
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(&t.admin, json!({ "name": "o", "url": mcp.url() }))
        .await;
    assert_eq!(t.authorize_in_browser(&t.admin, &id).await.status, 200);
    (auth, mcp, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_token_is_refreshed_once_then_reauthorization_is_required() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (auth, _mcp, id) = oauth_server(&t, AsConfig::default(), HashMap::new()).await;

    // The server forgets the token: one refresh, one retry, success.
    auth.expire_access_tokens();
    let before = auth.refresh_count();
    let data = t
        .ok(a, CALL, json!({ "id": id, "n": "echo", "a": { "x": 1 } }))
        .await;
    assert_eq!(data["callMcpTool"]["isError"], false);
    assert_eq!(auth.refresh_count(), before + 1);

    // The refresh is rejected too: REAUTH_REQUIRED naming the server, and the status says so.
    auth.expire_access_tokens();
    auth.set_token_failure(TokenFailure::InvalidGrant);
    let body = t
        .gql(Some(&a.token), CALL, json!({ "id": id, "n": "echo" }))
        .await;
    assert_eq!(error_code(&body), Some("REAUTH_REQUIRED"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["serverId"], id.as_str());
    let s = t.ok(a, STATUS, json!({ "id": id })).await;
    assert_eq!(
        s["mcpServer"]["authStatus"], "AUTHORIZATION_REQUIRED",
        "{s}"
    );
    assert_ne!(
        s["mcpServer"]["connectionStatus"], "ERROR",
        "auth problems are not errors"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_scope_asks_for_consent_with_the_union_of_scopes() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let required = HashMap::from([("tools/call".to_owned(), vec!["mcp:write".to_owned()])]);
    let (auth, _mcp, id) = oauth_server(&t, AsConfig::default(), required).await;
    let body = t
        .gql(Some(&a.token), CALL, json!({ "id": id, "n": "echo" }))
        .await;
    assert_eq!(error_code(&body), Some("REAUTH_REQUIRED"), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["reason"],
        "insufficient_scope"
    );
    let s = t.ok(a, STATUS, json!({ "id": id })).await;
    assert_eq!(s["mcpServer"]["authStatus"], "INSUFFICIENT_SCOPE");
    // The next start asks for the union, through a new authorization (not a refresh).
    let data = t
        .ok(
            a,
            "mutation($id: ID!) { startMcpOauth(serverId: $id) { status authorizationUrl } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["startMcpOauth"]["status"], "REDIRECT");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let begin = browser
        .get(data["startMcpOauth"]["authorizationUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let upstream = url::Url::parse(begin.headers()["location"].to_str().unwrap()).unwrap();
    assert!(upstream.as_str().starts_with(&auth.url()));
    let scope = upstream
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(scope.split(' ').any(|s| s == "mcp:write"), "{scope}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_servers_give_their_codes_and_do_not_block_others() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let slow = FakeMcpServer::start(McpConfig::default()).await;
    let fast = FakeMcpServer::start(McpConfig::default()).await;
    let slow_id = t
        .create_server(
            a,
            json!({ "name": "slow", "url": slow.url(), "timeoutMs": 1000 }),
        )
        .await;
    let fast_id = t
        .create_server(a, json!({ "name": "fast", "url": fast.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": slow_id })).await;
    t.ok(a, REFRESH, json!({ "id": fast_id })).await;

    slow.set_mode(Mode::Slow(Duration::from_secs(3)));
    let slow_call = t.gql(Some(&a.token), CALL, json!({ "id": slow_id, "n": "echo" }));
    let fast_call = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let body = t
            .gql(Some(&a.token), CALL, json!({ "id": fast_id, "n": "echo" }))
            .await;
        (body, started.elapsed())
    };
    let (slow_body, (fast_body, fast_took)) = tokio::join!(slow_call, fast_call);
    assert_eq!(
        error_code(&slow_body),
        Some("UPSTREAM_TIMEOUT"),
        "{slow_body}"
    );
    assert!(fast_body.get("errors").is_none(), "{fast_body}");
    assert!(
        fast_took < Duration::from_millis(900),
        "a slow server does not hold up another: {fast_took:?}"
    );

    for mode in [
        Mode::Drop,
        Mode::InvalidJson,
        Mode::ServerError,
        Mode::Oversized(8 << 20),
    ] {
        slow.set_mode(mode);
        let body = t
            .gql(Some(&a.token), CALL, json!({ "id": slow_id, "n": "echo" }))
            .await;
        assert_eq!(
            error_code(&body),
            Some("UPSTREAM_ERROR"),
            "{mode:?}: {body}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            !message.contains("127.0.0.1"),
            "no internals in messages: {message}"
        );
    }
    let s = t.ok(a, STATUS, json!({ "id": slow_id })).await;
    assert_eq!(
        s["mcpServer"]["connectionStatus"], "ERROR",
        "three failures in a row: {s}"
    );
    assert!(s["mcpServer"]["lastError"].is_string());
    let s = t.ok(a, STATUS, json!({ "id": fast_id })).await;
    assert_eq!(s["mcpServer"]["connectionStatus"], "CONNECTED");

    slow.set_mode(Mode::Normal);
    t.ok(a, CALL, json!({ "id": slow_id, "n": "echo" })).await;
    let s = t.ok(a, STATUS, json!({ "id": slow_id })).await;
    assert_eq!(
        s["mcpServer"]["connectionStatus"], "CONNECTED",
        "recovery: {s}"
    );
    assert_eq!(s["mcpServer"]["lastError"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_reuse_one_session_until_it_expires() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![echo_tool()],
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(a, json!({ "name": "kept", "url": mcp.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    let echo = json!({ "id": id, "n": "echo", "a": { "text": "hi" } });

    // The first call opens a session; every later one is a single request on it.
    t.ok(a, CALL, echo.clone()).await;
    let initialized = mcp.count("initialize");
    for _ in 0..5 {
        let before = mcp.requests().len();
        let data = t.ok(a, CALL, echo.clone()).await;
        assert_eq!(data["callMcpTool"]["isError"], false, "{data}");
        let sent: Vec<String> = mcp.requests()[before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.json()["method"]))
            .collect();
        assert_eq!(sent, ["POST \"tools/call\""], "one request per call");
    }
    assert_eq!(mcp.count("initialize"), initialized);

    // Concurrent calls share it too.
    let calls = (0..8).map(|_| t.ok(a, CALL, echo.clone()));
    futures_util::future::join_all(calls).await;
    assert_eq!(mcp.count("initialize"), initialized);

    // A session the server forgot is replaced once, and the call still succeeds.
    mcp.expire_sessions();
    let data = t.ok(a, CALL, echo.clone()).await;
    assert_eq!(data["callMcpTool"]["isError"], false, "{data}");
    assert_eq!(mcp.count("initialize"), initialized + 1);

    // Deleting the server ends its session upstream.
    let deleted_before = mcp.sessions_deleted().len();
    t.ok(
        a,
        "mutation($id: ID!) { deleteMcpServer(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while mcp.sessions_deleted().len() == deleted_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mcp.sessions_deleted().len(), deleted_before + 1);
}
