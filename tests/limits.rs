//! Costs, limits and quotas: one request, one user, one workspace or one upstream cannot make
//! Switchboard do unbounded work. What the fake upstreams received is counted, so every test
//! shows that refused operations sent nothing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::config::{Config, RateLimit};
use switchboard::domain::access::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::fake_mcp::{FakeMcpServer, McpConfig, echo_tool, fail_tool, tool};
use crate::support::{Actor, Options, TestApp, error_code};

const REFRESH: &str = "mutation($id: ID!) { refreshMcpServer(id: $id) { toolCount } }";
const STATUS: &str = "query($id: ID!) { mcpServer(id: $id) { connectionStatus statusReason \
    lastError toolCount tools(first: 100) { nodes { name description } } } }";

/// Every error of a response, as (code, extensions).
fn errors(body: &Value) -> Vec<(String, Value)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let code = e["extensions"]["code"].as_str().unwrap_or("").to_owned();
                    (code, e["extensions"].clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A fake upstream with `tools`, registered (without a probe) in the actor's workspace.
async fn upstream(t: &TestApp, actor: &Actor, tools: Vec<Value>) -> (FakeMcpServer, String) {
    let mcp = FakeMcpServer::start(McpConfig {
        tools,
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(
            actor,
            json!({ "name": "upstream", "url": mcp.url(), "authType": "NONE" }),
        )
        .await;
    (mcp, id)
}

/// Tools that are small on the wire: `{"name":"t00042","inputSchema":{}}`.
fn tiny_tools(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| json!({ "name": format!("t{i:05}"), "inputSchema": {} }))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_contacts_other_servers_at_most_its_budget() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let aliases: String = (0..300)
        .map(|i| format!("p{i}: probeMcpServer(workspaceId: $w, url: $u) {{ authType }} "))
        .collect();
    let query = format!("query($w: ID!, $u: String!) {{ {aliases}}}");
    let body = t
        .gql(
            Some(&a.token),
            &query,
            json!({ "w": a.workspace_id.to_string(), "u": mcp.url() }),
        )
        .await;
    let errors = errors(&body);
    assert_eq!(errors.len(), 290, "{body}");
    for (code, extensions) in &errors {
        assert_eq!(code, "RATE_LIMITED", "{extensions}");
        assert_eq!(extensions["rateLimit"], "REQUEST");
        assert!(extensions.get("retryAfter").is_none());
    }
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 10 times"),
        "{body}"
    );
    let answered = body["data"]
        .as_object()
        .map(|data| data.values().filter(|v| v["authType"] == "NONE").count());
    assert_eq!(answered, Some(10), "{body}");
    assert_eq!(
        mcp.count("server/discover"),
        10,
        "one probe per admitted field"
    );
    assert!(mcp.request_count() <= 20, "{}", mcp.request_count());

    // The next request has a budget of its own.
    let body = t
        .gql(
            Some(&a.token),
            "query($w: ID!, $u: String!) { probeMcpServer(workspaceId: $w, url: $u) { authType } }",
            json!({ "w": a.workspace_id.to_string(), "u": mcp.url() }),
        )
        .await;
    assert_eq!(body["data"]["probeMcpServer"]["authType"], "NONE", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_cannot_fan_one_request_out_into_hundreds_of_tool_calls() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (mcp, id) = upstream(&t, a, vec![echo_tool(), fail_tool()]).await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    let viewer = t.new_member("vic", a.workspace_id, Role::Viewer).await;
    let aliases: String = (0..200)
        .map(|i| format!("c{i}: callMcpTool(serverId: $id, name: \"echo\") {{ isError }} "))
        .collect();
    let body = t
        .gql(
            Some(&viewer.token),
            &format!("mutation($id: ID!) {{ {aliases}}}"),
            json!({ "id": id }),
        )
        .await;
    let errors = errors(&body);
    assert_eq!(errors.len(), 190, "{body}");
    assert!(errors.iter().all(|(code, _)| code == "RATE_LIMITED"));
    assert_eq!(mcp.count("tools/call"), 10);
    assert_eq!(body["data"]["c0"]["isError"], false, "{body}");
    assert_eq!(body["data"]["c9"]["isError"], false, "{body}");
    assert!(body["data"]["c10"].is_null(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_fields_weigh_in_the_query_complexity() {
    let t = TestApp::start().await;
    let a = &t.admin;
    // 500 probes cost far more than the complexity limit allows: refused before any runs.
    let aliases: String = (0..500)
        .map(|i| format!("p{i}: probeMcpServer(workspaceId: $w, url: $u) {{ authType }} "))
        .collect();
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let body = t
        .gql(
            Some(&a.token),
            &format!("query($w: ID!, $u: String!) {{ {aliases}}}"),
            json!({ "w": a.workspace_id.to_string(), "u": mcp.url() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("complex"),
        "{body}"
    );
    assert_eq!(mcp.request_count(), 0);
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_message(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("message in time")
            .expect("socket open")
            .expect("message");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ka" && value["type"] != "ping" {
                return value;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_websocket_operation_has_a_budget_of_its_own() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let mut request = format!("ws://{}/graphql/ws", t.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "token": a.token } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    assert_eq!(next_message(&mut socket).await["type"], "connection_ack");

    let probes = |n: usize| -> String {
        let aliases: String = (0..n)
            .map(|i| format!("p{i}: probeMcpServer(workspaceId: $w, url: $u) {{ authType }} "))
            .collect();
        format!("query($w: ID!, $u: String!) {{ {aliases}}}")
    };
    let variables = json!({ "w": a.workspace_id.to_string(), "u": mcp.url() });
    for (id, n) in [("1", 10), ("2", 10), ("3", 11)] {
        let subscribe = json!({ "id": id, "type": "subscribe",
            "payload": { "query": probes(n), "variables": variables } });
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
        let reply = next_message(&mut socket).await;
        assert_eq!(reply["type"], "next", "{reply}");
        assert_eq!(reply["id"], id);
        let refused = reply["payload"]["errors"]
            .as_array()
            .map_or(0, |errors| errors.len());
        assert_eq!(refused, n.saturating_sub(10), "operation {id}: {reply}");
        if refused > 0 {
            assert_eq!(
                reply["payload"]["errors"][0]["extensions"]["code"],
                "RATE_LIMITED"
            );
        }
        assert_eq!(next_message(&mut socket).await["type"], "complete");
    }
    assert_eq!(mcp.count("server/discover"), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_has_a_rate_limit_with_retry_after() {
    let t = TestApp::start_with(Options {
        configure: |config: &mut Config| {
            config.user_outbound = RateLimit {
                per_minute: 6,
                burst: 3,
            };
        },
        ..Options::default()
    })
    .await;
    let a = &t.admin;
    let (mcp, id) = upstream(&t, a, vec![echo_tool()]).await;
    let editor = t.new_member("eve", a.workspace_id, Role::Editor).await;
    // Creating the server took one of the admin's three.
    for _ in 0..2 {
        t.ok(a, REFRESH, json!({ "id": id })).await;
    }
    let body = t.gql(Some(&a.token), REFRESH, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    let extensions = &body["errors"][0]["extensions"];
    assert_eq!(extensions["rateLimit"], "USER");
    let retry_after = extensions["retryAfter"].as_u64().expect("whole seconds");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(
        mcp.count("tools/list"),
        2,
        "the refused refresh sent nothing"
    );

    // Another user of the same workspace has a bucket of their own.
    t.ok(&editor, REFRESH, json!({ "id": id })).await;
    assert_eq!(mcp.count("tools/list"), 3);
    // Reads are not outbound and are never limited.
    for _ in 0..5 {
        t.ok(a, STATUS, json!({ "id": id })).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_workspace_has_a_rate_limit_that_outsiders_cannot_drain() {
    let t = TestApp::start_with(Options {
        configure: |config: &mut Config| {
            config.workspace_outbound = RateLimit {
                per_minute: 2,
                burst: 3,
            };
        },
        ..Options::default()
    })
    .await;
    let a = &t.admin;
    let (mcp, id) = upstream(&t, a, vec![echo_tool()]).await;
    let editor = t.new_member("eve", a.workspace_id, Role::Editor).await;
    let viewer = t.new_member("vic", a.workspace_id, Role::Viewer).await;
    let stranger = t.new_workspace_admin("sam").await;

    // Outsiders and members whose role is too low are refused before the bucket is touched.
    for _ in 0..5 {
        let body = t
            .gql(Some(&stranger.token), REFRESH, json!({ "id": id }))
            .await;
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
        let body = t
            .gql(Some(&viewer.token), REFRESH, json!({ "id": id }))
            .await;
        assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    }
    // Creating the server took one of three; two refreshes by two members use the rest.
    t.ok(a, REFRESH, json!({ "id": id })).await;
    t.ok(&editor, REFRESH, json!({ "id": id })).await;
    let body = t
        .gql(Some(&editor.token), REFRESH, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    let extensions = &body["errors"][0]["extensions"];
    assert_eq!(extensions["rateLimit"], "WORKSPACE");
    let retry_after = extensions["retryAfter"].as_u64().expect("whole seconds");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(mcp.count("tools/list"), 2);

    // Another workspace is not affected.
    let (other, other_id) = upstream(&t, &stranger, vec![echo_tool()]).await;
    t.ok(&stranger, REFRESH, json!({ "id": other_id })).await;
    assert_eq!(other.count("tools/list"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_holds_at_most_its_quota_of_servers() {
    let t = TestApp::start_with(Options {
        configure: |config: &mut Config| config.max_servers_per_workspace = 2,
        ..Options::default()
    })
    .await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    for i in 0..2 {
        t.create_server(
            a,
            json!({ "name": format!("s{i}"), "url": format!("{}?s={i}", mcp.url()) }),
        )
        .await;
    }
    assert_eq!(mcp.count("server/discover"), 2, "each create probed");
    let body = t
        .gql(
            Some(&a.token),
            "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }",
            json!({ "i": { "workspaceId": a.workspace_id.to_string(), "name": "third", "url": format!("{}?s=3", mcp.url()) } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["quota"], "SERVERS_PER_WORKSPACE");
    assert_eq!(error["extensions"]["limit"], 2);
    assert!(
        error["message"].as_str().unwrap().contains("2 servers"),
        "{error}"
    );
    assert_eq!(
        mcp.count("server/discover"),
        2,
        "a refused create probes nothing"
    );
    let count = t
        .ok(
            a,
            "query($w: ID!) { workspace(id: $w) { mcpServers { nodes { id } } } }",
            json!({ "w": a.workspace_id.to_string() }),
        )
        .await["workspace"]["mcpServers"]["nodes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(count, 2);

    // The quota is per workspace.
    let other = t.new_workspace_admin("olga").await;
    t.create_server(
        &other,
        json!({ "name": "o", "url": mcp.url(), "authType": "NONE" }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_stop_at_the_server_quota() {
    let t = TestApp::start_with(Options {
        configure: |config: &mut Config| config.max_servers_per_workspace = 3,
        ..Options::default()
    })
    .await;
    let a = &t.admin;
    let create =
        "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }";
    let attempts = (0..8).map(|i| {
        let input = json!({ "i": { "workspaceId": a.workspace_id.to_string(), "name": format!("s{i}"),
            "url": format!("http://127.0.0.1:9/s{i}"), "authType": "NONE" } });
        t.gql(Some(&a.token), create, input)
    });
    let bodies = futures_util::future::join_all(attempts).await;
    let created = bodies.iter().filter(|b| b.get("errors").is_none()).count();
    let refused = bodies
        .iter()
        .filter(|b| b["errors"][0]["extensions"]["quota"] == "SERVERS_PER_WORKSPACE")
        .count();
    assert_eq!((created, refused), (3, 5), "{bodies:?}");
}

/// Refresh must fail with a quota error; returns the error's extensions.
async fn refused_refresh(t: &TestApp, actor: &Actor, id: &str) -> Value {
    let body = t
        .gql(Some(&actor.token), REFRESH, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&body), Some("UPSTREAM_ERROR"), "{body}");
    body["errors"][0]["extensions"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalogue_over_the_tool_quota_is_refused_early_and_stores_nothing() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (mcp, id) = upstream(&t, a, vec![echo_tool(), fail_tool()]).await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    let before = t.ok(a, STATUS, json!({ "id": id })).await;
    assert_eq!(before["mcpServer"]["toolCount"], 2);

    // 60,000 tools in pages of 100: the listing stops on the page that passes 1,000.
    mcp.set_tools(tiny_tools(60_000));
    let lists_before = mcp.count("tools/list");
    let extensions = refused_refresh(&t, a, &id).await;
    assert_eq!(extensions["quota"], "TOOLS_PER_SERVER");
    assert_eq!(extensions["limit"], 1000);
    assert_eq!(
        mcp.count("tools/list") - lists_before,
        11,
        "ten pages fill the quota, the eleventh passes it"
    );
    let after = t.ok(a, STATUS, json!({ "id": id })).await;
    let server = &after["mcpServer"];
    assert_eq!(server["statusReason"], "TOO_MANY_TOOLS", "{after}");
    assert!(
        server["lastError"]
            .as_str()
            .unwrap()
            .contains("more than 1000 tools"),
        "{after}"
    );
    assert_eq!(server["toolCount"], 2, "the previous catalogue stays");
    assert_eq!(
        server["tools"]["nodes"],
        before["mcpServer"]["tools"]["nodes"]
    );

    // The same 60,000 tools on a single page: one request, then refused.
    let one_page = FakeMcpServer::start(McpConfig {
        tools: tiny_tools(60_000),
        page_size: 60_000,
        ..McpConfig::default()
    })
    .await;
    let single = t
        .create_server(
            a,
            json!({ "name": "one page", "url": one_page.url(), "authType": "NONE" }),
        )
        .await;
    let extensions = refused_refresh(&t, a, &single).await;
    assert_eq!(extensions["quota"], "TOOLS_PER_SERVER");
    assert_eq!(one_page.count("tools/list"), 1);
    let status = t.ok(a, STATUS, json!({ "id": single })).await;
    assert_eq!(status["mcpServer"]["toolCount"], 0);
    assert_eq!(status["mcpServer"]["tools"]["nodes"], json!([]));
}

/// A tool whose input schema carries `bytes` bytes of description.
fn heavy_tool(name: &str, bytes: usize) -> Value {
    json!({
        "name": name,
        "inputSchema": { "type": "object", "description": "x".repeat(bytes) },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalogue_over_the_byte_quota_is_refused_early_and_stores_nothing() {
    let t = TestApp::start_with(Options {
        configure: |config: &mut Config| config.max_catalogue_bytes = 64 << 10,
        ..Options::default()
    })
    .await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![echo_tool()],
        page_size: 1,
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(
            a,
            json!({ "name": "heavy", "url": mcp.url(), "authType": "NONE" }),
        )
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;

    // Ten tools of 10 KB, one per page: the seventh passes 64 KiB and the listing stops.
    mcp.set_tools(
        (0..10)
            .map(|i| heavy_tool(&format!("heavy{i}"), 10_000))
            .collect(),
    );
    let lists_before = mcp.count("tools/list");
    let extensions = refused_refresh(&t, a, &id).await;
    assert_eq!(extensions["quota"], "CATALOGUE_BYTES");
    assert_eq!(extensions["limit"], 64 << 10);
    assert_eq!(mcp.count("tools/list") - lists_before, 7);
    let status = t.ok(a, STATUS, json!({ "id": id })).await;
    let server = &status["mcpServer"];
    assert_eq!(server["statusReason"], "CATALOGUE_TOO_LARGE", "{status}");
    assert!(
        server["lastError"]
            .as_str()
            .unwrap()
            .contains("larger than 65536 bytes"),
        "{status}"
    );
    assert_eq!(
        server["tools"]["nodes"],
        json!([{ "name": "echo", "description": "Returns its arguments." }])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_giant_schema_passes_the_default_byte_quota_and_is_refused() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (_mcp, id) = upstream(&t, a, vec![heavy_tool("giant", 3 << 20)]).await;
    let extensions = refused_refresh(&t, a, &id).await;
    assert_eq!(extensions["quota"], "CATALOGUE_BYTES");
    assert_eq!(extensions["limit"], 2 << 20);
    let status = t.ok(a, STATUS, json!({ "id": id })).await;
    assert_eq!(status["mcpServer"]["toolCount"], 0);
    assert_eq!(status["mcpServer"]["statusReason"], "CATALOGUE_TOO_LARGE");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_tool_names_keep_the_first_and_say_how_many_were_dropped() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mut shadow = echo_tool();
    shadow["description"] = json!("A second echo.");
    let (mcp, id) = upstream(
        &t,
        a,
        vec![echo_tool(), fail_tool(), shadow, tool("third"), fail_tool()],
    )
    .await;
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(data["refreshMcpServer"]["toolCount"], 3);
    let status = t.ok(a, STATUS, json!({ "id": id })).await;
    let server = &status["mcpServer"];
    assert_eq!(server["connectionStatus"], "CONNECTED");
    assert_eq!(
        server["tools"]["nodes"],
        json!([
            { "name": "echo", "description": "Returns its arguments." },
            { "name": "fail", "description": "Always fails." },
            { "name": "third", "description": "The third tool." },
        ])
    );
    let note = server["lastError"].as_str().expect("the drop is shown");
    assert!(note.contains("2 tools"), "{note}");

    // A clean listing clears the note.
    mcp.set_tools(vec![echo_tool()]);
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(data["refreshMcpServer"]["toolCount"], 1);
    let status = t.ok(a, STATUS, json!({ "id": id })).await;
    assert!(status["mcpServer"]["lastError"].is_null(), "{status}");
}

const TOOLS_PAGE: &str = "query($id: ID!, $first: Int, $after: String) { mcpServer(id: $id) { \
    tools(first: $first, after: $after) { edges { cursor node { name } } \
    pageInfo { hasNextPage hasPreviousPage endCursor } } } }";

#[tokio::test(flavor = "multi_thread")]
async fn tools_are_a_connection_ordered_by_name() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let names = [
        "delta", "alpha", "golf", "charlie", "echo", "bravo", "foxtrot",
    ];
    let (_mcp, id) = upstream(&t, a, names.iter().map(|n| tool(n)).collect()).await;
    t.ok(a, REFRESH, json!({ "id": id })).await;

    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let data = t
            .ok(
                a,
                TOOLS_PAGE,
                json!({ "id": id, "first": 3, "after": after }),
            )
            .await;
        let connection = &data["mcpServer"]["tools"];
        pages += 1;
        for edge in connection["edges"].as_array().unwrap() {
            assert_eq!(
                edge["cursor"], edge["node"]["name"],
                "the cursor is the name"
            );
            seen.push(edge["node"]["name"].as_str().unwrap().to_owned());
        }
        assert_eq!(connection["pageInfo"]["hasPreviousPage"], !after.is_null());
        if !connection["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted.sort();
    assert_eq!(seen, sorted);

    // The default page is 50 tools.
    let (_many, many_id) = upstream(&t, a, tiny_tools(120)).await;
    t.ok(a, REFRESH, json!({ "id": many_id })).await;
    let data = t
        .ok(a, TOOLS_PAGE, json!({ "id": many_id, "after": "t00009" }))
        .await;
    let edges = data["mcpServer"]["tools"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 50);
    assert_eq!(edges[0]["cursor"], "t00010");
    assert_eq!(data["mcpServer"]["tools"]["pageInfo"]["hasNextPage"], true);
    let data = t
        .ok(a, TOOLS_PAGE, json!({ "id": many_id, "first": 0 }))
        .await;
    assert_eq!(data["mcpServer"]["tools"]["edges"], json!([]));
    assert_eq!(data["mcpServer"]["tools"]["pageInfo"]["hasNextPage"], true);
    let data = t
        .ok(a, TOOLS_PAGE, json!({ "id": many_id, "first": 100 }))
        .await;
    assert_eq!(
        data["mcpServer"]["tools"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        100
    );

    for first in [101, -1, 1_000_000] {
        let body = t
            .gql(
                Some(&a.token),
                TOOLS_PAGE,
                json!({ "id": many_id, "first": first }),
            )
            .await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{first}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "first");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn many_large_tool_pages_in_one_query_are_refused_by_complexity() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (_mcp, id) = upstream(&t, a, tiny_tools(100)).await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    let query = |fields: &str| -> String {
        let aliases: String = (0..20)
            .map(|i| {
                format!(
                    "s{i}: mcpServer(id: $id) {{ tools(first: 100) {{ nodes {{ {fields} }} }} }} "
                )
            })
            .collect();
        format!("query($id: ID!) {{ {aliases}}}")
    };
    let body = t
        .gql(
            Some(&a.token),
            &query("name inputSchema"),
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("complex"),
        "{body}"
    );
    assert!(body["data"].is_null(), "nothing was resolved: {body}");
    // Names alone are cheap enough.
    let data = t.ok(a, &query("name"), json!({ "id": id })).await;
    assert_eq!(data["s19"]["tools"]["nodes"].as_array().unwrap().len(), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_servers_with_their_tools_costs_a_constant_number_of_statements() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![echo_tool(), fail_tool(), tool("third")],
        ..McpConfig::default()
    })
    .await;
    let query = "query($w: ID!) { workspace(id: $w) { mcpServers(first: 100) { nodes { id toolCount \
        tools(first: 2) { nodes { name } pageInfo { hasNextPage endCursor } } \
        rest: tools(first: 2, after: \"echo\") { nodes { name } } } } } }";
    let vars = json!({ "w": a.workspace_id.to_string() });
    let mut counts = Vec::new();
    let mut created = 0;
    for target in [3, 12] {
        while created < target {
            let id = t
                .create_server(
                    a,
                    json!({ "name": format!("s{created}"), "url": format!("{}?s={created}", mcp.url()), "authType": "NONE" }),
                )
                .await;
            t.ok(a, REFRESH, json!({ "id": id })).await;
            created += 1;
        }
        t.ok(a, query, vars.clone()).await;
        let before = t.app.db.statement_count();
        let data = t.ok(a, query, vars.clone()).await;
        let after = t.app.db.statement_count();
        counts.push(after - before);
        let nodes = data["workspace"]["mcpServers"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), target);
        for node in nodes {
            assert_eq!(
                node["tools"]["nodes"],
                json!([{ "name": "echo" }, { "name": "fail" }])
            );
            assert_eq!(node["tools"]["pageInfo"]["hasNextPage"], true);
            assert_eq!(node["tools"]["pageInfo"]["endCursor"], "fail");
            assert_eq!(
                node["rest"]["nodes"],
                json!([{ "name": "fail" }, { "name": "third" }])
            );
        }
    }
    assert_eq!(
        counts[0], counts[1],
        "statements per request must not grow with the page: {counts:?}"
    );
    assert!(
        counts[0] <= 10,
        "a handful of statements, got {}",
        counts[0]
    );
}
