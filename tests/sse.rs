//! MCP servers on the legacy HTTP+SSE transport, end to end through the GraphQL API.

use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, echo_tool, fail_tool, tool};
use crate::support::{TestApp, error_code};
use serde_json::json;

const REFRESH: &str = "mutation($id: ID!) { refreshMcpServer(id: $id) { connectionStatus authStatus toolCount tools { nodes { name } } } }";
const CALL: &str = "mutation($id: ID!, $n: String!, $a: JSON) { callMcpTool(serverId: $id, name: $n, arguments: $a) { content structuredContent isError } }";

fn sse_server(auth: McpAuth) -> McpConfig {
    McpConfig {
        tools: vec![echo_tool(), fail_tool(), tool("third")],
        page_size: 1,
        auth,
        sse: true,
        ..McpConfig::default()
    }
}

fn key_auth() -> McpAuth {
    McpAuth::StaticHeader {
        name: "X-Key".into(),
        value: "k-secret".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_and_calls_tools_with_static_headers() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(sse_server(key_auth())).await;
    let id = t
        .create_server(
            a,
            json!({ "name": "legacy", "url": mcp.url(), "transport": "SSE",
                    "headers": [{ "name": "X-Key", "value": "k-secret" }] }),
        )
        .await;

    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    let s = &data["refreshMcpServer"];
    assert_eq!(s["connectionStatus"], "CONNECTED", "{data}");
    assert_eq!(s["toolCount"], 3);
    let names: Vec<&str> = s["tools"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "fail", "third"], "all pages");
    assert_eq!(mcp.count("tools/list"), 3);

    let data = t
        .ok(
            a,
            CALL,
            json!({ "id": id, "n": "echo", "a": { "text": "over sse" } }),
        )
        .await;
    let result = &data["callMcpTool"];
    assert_eq!(result["isError"], false, "{data}");
    assert_eq!(result["structuredContent"], json!({ "text": "over sse" }));
    assert_eq!(mcp.count("tools/call"), 1);

    let requests = mcp.requests();
    let streams: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(streams.len(), 2, "one stream per session: {requests:?}");
    for stream in &streams {
        assert_eq!(stream.path, "/mcp");
        assert_eq!(stream.header("accept"), Some("text/event-stream"));
        assert_eq!(stream.header("x-key"), Some("k-secret"));
    }
    let posts: Vec<_> = requests.iter().filter(|r| r.method == "POST").collect();
    assert!(!posts.is_empty());
    for post in &posts {
        assert_eq!(post.path, "/mcp/messages");
        assert!(post.query["session"].starts_with("sse-session-"));
        assert_eq!(post.header("x-key"), Some("k-secret"));
        assert_eq!(post.header("content-type"), Some("application/json"));
    }
    let initialize = posts
        .iter()
        .find(|post| post.json()["method"] == "initialize")
        .expect("an initialize");
    assert_eq!(initialize.json()["params"]["protocolVersion"], "2024-11-05");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_stream_reports_rejected_headers() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(sse_server(key_auth())).await;
    let id = t
        .create_server(
            a,
            json!({ "name": "legacy", "url": mcp.url(), "transport": "SSE",
                    "headers": [{ "name": "X-Key", "value": "wrong" }] }),
        )
        .await;
    // Creating the server may probe it for its authorization scheme; that is not the session.
    let probed = mcp.requests().len();
    let body = t.gql(Some(&a.token), REFRESH, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("UPSTREAM_ERROR"), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["reason"], "headers_rejected",
        "{body}"
    );
    let sent = mcp.requests().split_off(probed);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].method, "GET", "nothing is posted without a stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_endpoint_on_another_origin_is_refused() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let elsewhere = FakeMcpServer::start(sse_server(McpAuth::None)).await;
    let mcp = FakeMcpServer::start(McpConfig {
        sse_endpoint: Some(format!("{}/mcp/messages?session=x", elsewhere.origin())),
        ..sse_server(McpAuth::None)
    })
    .await;
    let id = t
        .create_server(
            a,
            json!({ "name": "legacy", "url": mcp.url(), "transport": "SSE" }),
        )
        .await;
    // Creating the server may probe it for its authorization scheme; that is not the session.
    let probed = mcp.requests().len();
    let body = t.gql(Some(&a.token), REFRESH, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("UPSTREAM_ERROR"), "{body}");
    let sent = mcp.requests().split_off(probed);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].method, "GET",
        "nothing is posted to the other origin's endpoint"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "nothing was sent to the other origin"
    );
}

/// Detection asks an SSE server with the GET that opens its stream, not a Streamable HTTP POST.
#[tokio::test(flavor = "multi_thread")]
async fn detection_opens_the_stream_for_sse_servers() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let open = FakeMcpServer::start(sse_server(McpAuth::None)).await;
    let keyed = FakeMcpServer::start(sse_server(key_auth())).await;
    let create = "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { authType } }";
    let probe = "query($w: ID!, $u: String!) { probeMcpServer(workspaceId: $w, url: $u, transport: SSE) { authType } }";
    for (server, expected) in [(&open, "NONE"), (&keyed, "HEADERS")] {
        let probed = t
            .ok(
                a,
                probe,
                json!({ "w": a.workspace_id.to_string(), "u": server.url() }),
            )
            .await;
        assert_eq!(probed["probeMcpServer"]["authType"], expected, "{probed}");
        let data = t
            .ok(a, create, json!({ "i": { "workspaceId": a.workspace_id.to_string(), "name": "s", "url": server.url(), "transport": "SSE" } }))
            .await;
        assert_eq!(data["createMcpServer"]["authType"], expected);
        let requests = server.requests();
        assert!(
            requests.iter().all(|r| r.method == "GET"),
            "no POST while probing: {requests:?}"
        );
        assert_eq!(requests.len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_only_on_http_sse_is_found_there_and_remembered() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let server = "query($id: ID!) { mcpServer(id: $id) { transport protocolVersion authType } }";
    let mcp = FakeMcpServer::start(sse_server(key_auth())).await;

    // Asked over Streamable HTTP, it refuses both eras' POSTs and opens an event stream.
    let probe = "query($w: ID!, $u: String!) { probeMcpServer(workspaceId: $w, url: $u) { authType reason transport } }";
    let data = t
        .ok(
            a,
            probe,
            json!({ "w": a.workspace_id.to_string(), "u": mcp.url() }),
        )
        .await;
    assert_eq!(
        data["probeMcpServer"],
        json!({ "authType": "HEADERS", "reason": "bearer_challenge", "transport": "SSE" })
    );

    // Registered without a transport: found on HTTP+SSE by detection, and kept there.
    let open = FakeMcpServer::start(sse_server(McpAuth::None)).await;
    let id = t
        .create_server(a, json!({ "name": "old", "url": open.url() }))
        .await;
    let data = t.ok(a, server, json!({ "id": id })).await;
    assert_eq!(data["mcpServer"]["transport"], "SSE", "{data}");
    assert_eq!(data["mcpServer"]["authType"], "NONE");
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(data["refreshMcpServer"]["connectionStatus"], "CONNECTED");
    let data = t.ok(a, server, json!({ "id": id })).await;
    assert_eq!(
        data["mcpServer"]["protocolVersion"], "2025-11-25",
        "as the server said"
    );
    let posts = open
        .requests()
        .iter()
        .filter(|r| r.path == "/mcp" && r.method == "POST")
        .count();
    assert_eq!(
        posts, 2,
        "the probe's discovery and initialize, then never again"
    );

    // Registered with its auth type given, so never probed: the session finds the event
    // stream the same way, and remembers it.
    let other = FakeMcpServer::start(sse_server(McpAuth::None)).await;
    let id = t
        .create_server(
            a,
            json!({ "name": "old too", "url": other.url(), "authType": "NONE" }),
        )
        .await;
    let data = t.ok(a, server, json!({ "id": id })).await;
    assert_eq!(data["mcpServer"]["transport"], "STREAMABLE_HTTP");
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(
        data["refreshMcpServer"]["connectionStatus"], "CONNECTED",
        "{data}"
    );
    let data = t
        .ok(
            a,
            CALL,
            json!({ "id": id, "n": "echo", "a": { "text": "found" } }),
        )
        .await;
    assert_eq!(
        data["callMcpTool"]["structuredContent"],
        json!({ "text": "found" })
    );
    let data = t.ok(a, server, json!({ "id": id })).await;
    assert_eq!(data["mcpServer"]["transport"], "SSE", "{data}");
    assert_eq!(
        data["mcpServer"]["protocolVersion"], "2025-11-25",
        "as the server said"
    );
}
