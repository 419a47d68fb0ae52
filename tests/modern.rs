//! Servers of MCP revision 2026-07-28 and the two eras side by side: which era a server is
//! spoken to in and how that is remembered and re-detected, the standard and parameter
//! headers, and input requests (multi round-trip) through `callMcpTool` and
//! `continueMcpToolCall`.

use serde_json::{Value, json};
use switchboard::domain::access::Role;

use crate::support::fake_mcp::{
    Era, FakeMcpServer, McpConfig, confirm_stateless_tool, confirm_tool, echo_tool, insist_tool,
    invalid_header_tool, open_url_tool, region_tool, survey_tool, tool,
};
use crate::support::{TestApp, error_code};

const REFRESH: &str = "mutation($id: ID!) { refreshMcpServer(id: $id) { protocolVersion connectionStatus toolCount tools { nodes { name } } } }";
const SERVER: &str = "query($id: ID!) { mcpServer(id: $id) { protocolVersion authType } }";
const CALL: &str = "mutation($id: ID!, $n: String!, $a: JSON) { callMcpTool(serverId: $id, name: $n, arguments: $a) { status content structuredContent isError inputRequests { key mode message requestedSchema url } continuation continuationExpiresAt } }";
const CONTINUE: &str = "mutation($c: String!, $r: [McpInputResponseInput!]!) { continueMcpToolCall(continuation: $c, responses: $r) { status content structuredContent isError inputRequests { key mode message requestedSchema url } continuation } }";

fn modern(tools: Vec<Value>) -> McpConfig {
    McpConfig {
        era: Era::Modern,
        tools,
        ..McpConfig::default()
    }
}

fn tool_names(refreshed: &Value) -> Vec<&str> {
    refreshed["tools"]["nodes"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|tool| tool["name"].as_str().expect("name"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_era_is_spoken_in_its_own_way_and_remembered() {
    let t = TestApp::start().await;
    let a = &t.admin;

    // A stateless server: discovered, never initialized, no session.
    let new = FakeMcpServer::start(modern(vec![echo_tool()])).await;
    let id = t
        .create_server(a, json!({ "name": "new", "url": new.url() }))
        .await;
    let data = t.ok(a, SERVER, json!({ "id": id })).await;
    assert_eq!(data["mcpServer"]["authType"], "NONE", "{data}");
    assert_eq!(
        data["mcpServer"]["protocolVersion"],
        Value::Null,
        "not reached yet"
    );
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(data["refreshMcpServer"]["protocolVersion"], "2026-07-28");
    assert_eq!(data["refreshMcpServer"]["connectionStatus"], "CONNECTED");
    let data = t
        .ok(a, CALL, json!({ "id": id, "n": "echo", "a": { "x": 1 } }))
        .await;
    assert_eq!(data["callMcpTool"]["status"], "COMPLETE");
    assert_eq!(data["callMcpTool"]["structuredContent"], json!({ "x": 1 }));
    assert_eq!(new.count("initialize"), 0);
    assert!(new.sessions_issued().is_empty());
    // Every request carried the revision in `_meta` and in its header, and named its method.
    for request in new.requests().iter().filter(|r| r.method == "POST") {
        let body = request.json();
        assert_eq!(
            body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28",
            "{body}"
        );
        assert_eq!(
            request.header_values("mcp-protocol-version"),
            ["2026-07-28"]
        );
        assert_eq!(
            request.header_values("mcp-method"),
            [body["method"].as_str().expect("method")]
        );
    }

    // A server of the earlier era: one discovery that it refuses, then `initialize`; after
    // that its era is known and it is initialized straight away.
    let old = FakeMcpServer::start(McpConfig {
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    let old_id = t
        .create_server(a, json!({ "name": "old", "url": old.url() }))
        .await;
    let data = t.ok(a, REFRESH, json!({ "id": old_id })).await;
    assert_eq!(data["refreshMcpServer"]["protocolVersion"], "2025-11-25");
    let discovered = old.count("server/discover");
    t.ok(a, REFRESH, json!({ "id": old_id })).await;
    t.ok(a, CALL, json!({ "id": old_id, "n": "echo" })).await;
    assert_eq!(old.count("server/discover"), discovered, "remembered");
    assert_eq!(
        old.count("initialize"),
        4,
        "the probe, two refreshes and a session for calls"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_or_downgraded_server_is_detected_again() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let id = t
        .create_server(a, json!({ "name": "moving", "url": mcp.url() }))
        .await;
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(data["refreshMcpServer"]["protocolVersion"], "2025-11-25");

    // It now speaks 2026-07-28 only: `initialize` is refused with -32022, so it is
    // discovered, and the new revision stored.
    mcp.set_era(Era::Modern);
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(
        data["refreshMcpServer"]["protocolVersion"], "2026-07-28",
        "{data}"
    );
    assert_eq!(data["refreshMcpServer"]["connectionStatus"], "CONNECTED");

    // And back: discovery is refused as a legacy server refuses it, so it is initialized.
    mcp.set_era(Era::Legacy);
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(
        data["refreshMcpServer"]["protocolVersion"], "2025-11-25",
        "{data}"
    );
    // A server speaking both eras is spoken to in the newer one.
    mcp.set_era(Era::Both);
    let other = t
        .create_server(
            a,
            json!({ "name": "both", "url": format!("{}?b", mcp.url()) }),
        )
        .await;
    let data = t.ok(a, REFRESH, json!({ "id": other })).await;
    assert_eq!(data["refreshMcpServer"]["protocolVersion"], "2026-07-28");
}

#[tokio::test(flavor = "multi_thread")]
async fn parameter_headers_are_sent_and_tools_with_invalid_ones_dropped() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(modern(vec![
        region_tool(),
        invalid_header_tool(),
        echo_tool(),
    ]))
    .await;
    let id = t
        .create_server(a, json!({ "name": "headers", "url": mcp.url() }))
        .await;
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(
        tool_names(&data["refreshMcpServer"]),
        ["echo", "regional"],
        "a tool whose header annotation is invalid is dropped"
    );
    let arguments = json!({ "region": "Zürich ", "priority": 42, "verbose": false, "query": "q" });
    let data = t
        .ok(
            a,
            CALL,
            json!({ "id": id, "n": "regional", "a": arguments }),
        )
        .await;
    // The fake refuses a call whose headers do not mirror its annotated arguments.
    assert_eq!(
        data["callMcpTool"]["structuredContent"], arguments,
        "{data}"
    );
    let call = mcp
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.json()["method"] == "tools/call")
        .expect("a call");
    assert_eq!(call.header_values("mcp-name"), ["regional"]);
    assert_eq!(call.header_values("mcp-param-priority"), ["42"]);
    assert_eq!(call.header_values("mcp-param-verbose"), ["false"]);
    assert_eq!(
        call.header_values("mcp-param-region"),
        ["=?base64?WsO8cmljaCA=?="],
        "non-ASCII and a trailing space travel encoded"
    );
    // An argument left out is not sent as a header either.
    let data = t
        .ok(
            a,
            CALL,
            json!({ "id": id, "n": "regional", "a": { "query": "q" } }),
        )
        .await;
    assert_eq!(data["callMcpTool"]["status"], "COMPLETE", "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_asked_twice_is_answered_through_the_api() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(modern(vec![survey_tool(), confirm_tool()])).await;
    let id = t
        .create_server(a, json!({ "name": "asks", "url": mcp.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    let viewer = t.new_member("vera", a.workspace_id, Role::Viewer).await;

    let data = t
        .ok(&viewer, CALL, json!({ "id": id, "n": "survey" }))
        .await;
    let first = &data["callMcpTool"];
    assert_eq!(first["status"], "INPUT_REQUIRED", "{data}");
    assert_eq!(first["content"], json!([]));
    assert_eq!(first["inputRequests"][0]["key"], "name");
    assert_eq!(first["inputRequests"][0]["mode"], "FORM");
    assert_eq!(
        first["inputRequests"][0]["requestedSchema"]["properties"]["name"]["type"],
        "string"
    );
    assert!(first["continuationExpiresAt"].is_string());
    let continuation = first["continuation"].as_str().expect("continuation");

    // Nobody else can continue it: not another member, not an admin.
    let answer = json!([{ "key": "name", "action": "ACCEPT", "content": { "name": "Ada" } }]);
    for other in [
        a.clone(),
        t.new_member("otto", a.workspace_id, Role::Editor).await,
    ] {
        let body = t
            .gql(
                Some(&other.token),
                CONTINUE,
                json!({ "c": continuation, "r": answer }),
            )
            .await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "continuation");
    }
    // Answers that do not fit are refused before anything is sent.
    let before = mcp.count("tools/call");
    for (bad, field) in [
        (json!([]), "responses"),
        (
            json!([{ "key": "name", "action": "ACCEPT", "content": { "name": 7 } }]),
            "responses.name.content",
        ),
        (
            json!([{ "key": "name", "action": "ACCEPT" }]),
            "responses.name.content",
        ),
        (
            json!([{ "key": "nom", "action": "ACCEPT", "content": {} }]),
            "responses",
        ),
    ] {
        let body = t
            .gql(
                Some(&viewer.token),
                CONTINUE,
                json!({ "c": continuation, "r": bad }),
            )
            .await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
    }
    assert_eq!(mcp.count("tools/call"), before);

    let data = t
        .ok(&viewer, CONTINUE, json!({ "c": continuation, "r": answer }))
        .await;
    let second = &data["continueMcpToolCall"];
    assert_eq!(second["status"], "INPUT_REQUIRED", "{data}");
    assert_eq!(second["inputRequests"][0]["key"], "color");
    // The last round goes out on a new session, which numbers its requests from the start
    // again: the call still goes out under an id of its own.
    t.app.sessions.forget(id.parse().expect("a server id"));
    let data = t
        .ok(
            &viewer,
            CONTINUE,
            json!({
                "c": second["continuation"],
                "r": [{ "key": "color", "action": "ACCEPT", "content": { "color": "green" } }]
            }),
        )
        .await;
    let done = &data["continueMcpToolCall"];
    assert_eq!(done["status"], "COMPLETE", "{data}");
    assert_eq!(done["structuredContent"]["name"], "Ada");
    assert_eq!(done["structuredContent"]["color"], "green");
    assert_eq!(done["structuredContent"]["rounds"], 3);
    assert_eq!(done["continuation"], Value::Null);
    // Each request was new: the retries carried the answers, each with its own JSON-RPC id.
    let calls: Vec<Value> = mcp
        .posted()
        .into_iter()
        .filter(|m| m["method"] == "tools/call" && m["params"]["name"] == "survey")
        .collect();
    assert_eq!(calls.len(), 3);
    assert!(calls[0]["params"].get("inputResponses").is_none());
    assert_eq!(
        calls[1]["params"]["inputResponses"]["name"],
        json!({ "action": "accept", "content": { "name": "Ada" } })
    );
    let ids: std::collections::HashSet<String> =
        calls.iter().map(|c| c["id"].to_string()).collect();
    assert_eq!(ids.len(), 3, "{calls:?}");

    // A continuation used again replays the round it was issued for; the server decides.
    let data = t
        .ok(&viewer, CONTINUE, json!({ "c": continuation, "r": answer }))
        .await;
    assert_eq!(data["continueMcpToolCall"]["status"], "INPUT_REQUIRED");

    // A decline is passed on as such.
    let data = t
        .ok(&viewer, CALL, json!({ "id": id, "n": "confirm" }))
        .await;
    let data = t
        .ok(
            &viewer,
            CONTINUE,
            json!({
                "c": data["callMcpTool"]["continuation"],
                "r": [{ "key": "confirm", "action": "DECLINE" }]
            }),
        )
        .await;
    assert_eq!(
        data["continueMcpToolCall"]["structuredContent"]["action"], "decline",
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_is_shown_and_a_missing_state_stays_missing() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(modern(vec![open_url_tool(), confirm_stateless_tool()])).await;
    let id = t
        .create_server(a, json!({ "name": "urls", "url": mcp.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;

    let data = t.ok(a, CALL, json!({ "id": id, "n": "open_url" })).await;
    let asked = &data["callMcpTool"]["inputRequests"][0];
    assert_eq!(asked["mode"], "URL", "{data}");
    assert_eq!(asked["message"], "Sign in to continue");
    let url = asked["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("{}/consent?id=", mcp.origin())),
        "{url}"
    );
    assert_eq!(asked["requestedSchema"], Value::Null);
    assert_eq!(
        mcp.requests()
            .iter()
            .filter(|r| r.path == "/consent")
            .count(),
        0,
        "never fetched"
    );
    let data = t
        .ok(
            a,
            CONTINUE,
            json!({
                "c": data["callMcpTool"]["continuation"],
                "r": [{ "key": "consent", "action": "ACCEPT" }]
            }),
        )
        .await;
    assert_eq!(
        data["continueMcpToolCall"]["content"][0]["text"], "consented",
        "{data}"
    );

    // The server sent no request state, so none goes back.
    let data = t
        .ok(a, CALL, json!({ "id": id, "n": "confirm_stateless" }))
        .await;
    let data = t
        .ok(
            a,
            CONTINUE,
            json!({
                "c": data["callMcpTool"]["continuation"],
                "r": [{ "key": "confirm", "action": "ACCEPT", "content": { "confirmed": true } }]
            }),
        )
        .await;
    assert_eq!(data["continueMcpToolCall"]["status"], "COMPLETE", "{data}");
    let retry = mcp
        .posted()
        .into_iter()
        .rev()
        .find(|m| m["method"] == "tools/call")
        .expect("the retry");
    assert!(retry["params"].get("requestState").is_none(), "{retry}");
    assert!(retry["params"].get("inputResponses").is_some(), "{retry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_are_kept_as_listed_and_references_never_followed() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(modern(Vec::new())).await;
    let canary = format!("{}/schemas/canary.json", mcp.origin());
    // Keys deliberately out of alphabetical order, and every 2020-12 keyword a client might be
    // tempted to rewrite.
    let input = json!({
        "type": "object",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {
            "zeta": { "$ref": "#/$defs/name" },
            "alpha": { "$ref": canary },
            "mode": { "anyOf": [{ "const": "a" }, { "const": "b" }] }
        },
        "required": ["zeta"],
        "if": { "properties": { "mode": { "const": "a" } } },
        "then": { "required": ["alpha"] },
        "else": { "not": { "required": ["alpha"] } },
        "additionalProperties": false,
        "$defs": { "name": { "$anchor": "name", "type": "string", "minLength": 1 } }
    });
    let output = json!({ "type": "object", "properties": { "z": { "type": "integer" }, "a": {} } });
    mcp.set_tools(vec![json!({
        "name": "shaped",
        "inputSchema": input,
        "outputSchema": output
    })]);
    let id = t
        .create_server(a, json!({ "name": "schemas", "url": mcp.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    let data = t
        .ok(
            a,
            "query($id: ID!) { mcpServer(id: $id) { tools { nodes { inputSchema outputSchema } } } }",
            json!({ "id": id }),
        )
        .await;
    let listed = &data["mcpServer"]["tools"]["nodes"][0];
    let keys: Vec<&str> = listed["inputSchema"]
        .as_object()
        .expect("a schema")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "$schema",
            "properties",
            "required",
            "if",
            "then",
            "else",
            "additionalProperties",
            "$defs"
        ],
        "the server's order, not an alphabetical one"
    );
    assert_eq!(
        serde_json::to_string(&listed["inputSchema"]).unwrap(),
        serde_json::to_string(&input).unwrap(),
        "same keywords in the same order"
    );
    assert_eq!(
        serde_json::to_string(&listed["outputSchema"]).unwrap(),
        serde_json::to_string(&output).unwrap()
    );
    assert!(
        mcp.requests()
            .iter()
            .all(|r| r.path != "/schemas/canary.json"),
        "a $ref is never fetched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalogue_change_is_heard_listed_and_pushed_to_subscribers() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    use crate::subscriptions::{connect, next};

    let t = TestApp::start_configured(Default::default(), |config| {
        config.catalogue_listeners = 8;
        config.catalogue_listen_every = std::time::Duration::from_millis(100);
        config.health_interval = std::time::Duration::ZERO;
    })
    .await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(modern(vec![echo_tool()])).await;
    let id = t
        .create_server(a, json!({ "name": "live", "url": mcp.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    // A server of the earlier era has no change stream, and is not listened to.
    let old = FakeMcpServer::start(McpConfig::default()).await;
    let old_id = t
        .create_server(a, json!({ "name": "old", "url": old.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": old_id })).await;
    switchboard::app::start_background_tasks(&t.app);

    until("a listen stream is open", || mcp.listeners() == 1).await;

    let mut socket = connect(
        &t,
        "graphql-transport-ws",
        json!({ "Authorization": format!("Bearer {}", a.token) }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    let subscription = "subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId reason server { toolCount tools { nodes { name } } } } }";
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": subscription, "variables": { "w": a.workspace_id.to_string() } } })
                .to_string(),
        ))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // The server's tools change: it says so on the stream, it is listed again, and the
    // subscriber hears of it with the new catalogue.
    mcp.set_tools(vec![echo_tool(), survey_tool()]);
    let message = next(&mut socket).await.expect("an event");
    let event = &message["payload"]["data"]["mcpServerStatus"];
    assert_eq!(event["serverId"], id.as_str(), "{message}");
    assert_eq!(event["reason"], "TOOLS_CHANGED");
    assert_eq!(event["server"]["toolCount"], 2);
    assert_eq!(
        event["server"]["tools"]["nodes"],
        json!([{ "name": "echo" }, { "name": "survey" }])
    );
    assert_eq!(old.count("subscriptions/listen"), 0);

    // A stream the server drops is opened again (and the server listed again, since a change
    // may have gone unheard).
    let listed = mcp.count("tools/list");
    mcp.drop_listeners();
    until("the stream is opened again", || {
        mcp.count("subscriptions/listen") >= 2 && mcp.listeners() == 1
    })
    .await;
    until("the server is listed again", || {
        mcp.count("tools/list") > listed
    })
    .await;

    // Disabling the server closes its stream.
    t.ok(
        a,
        "mutation($id: ID!) { updateMcpServer(id: $id, input: { enabled: false }) { id } }",
        json!({ "id": id }),
    )
    .await;
    until("the stream of a disabled server is closed", || {
        mcp.listeners() == 0
    })
    .await;
    t.app.stop_background_tasks();
}

/// Wait until `done` holds, for at most ten seconds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn detection_asks_a_stateless_server_the_stateless_way() {
    use crate::support::fake_as::{AsConfig, FakeAuthServer};
    use crate::support::fake_mcp::McpAuth;

    let t = TestApp::start().await;
    let a = &t.admin;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let open = FakeMcpServer::start(modern(vec![echo_tool()])).await;
    let guarded = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..modern(vec![echo_tool()])
    })
    .await;
    const PROBE: &str = "query($w: ID!, $u: String!) { probeMcpServer(workspaceId: $w, url: $u) { authType reason } }";
    for (server, expected) in [(&open, "NONE"), (&guarded, "OAUTH")] {
        let data = t
            .ok(
                a,
                PROBE,
                json!({ "w": a.workspace_id.to_string(), "u": server.url() }),
            )
            .await;
        assert_eq!(data["probeMcpServer"]["authType"], expected, "{data}");
        // One stateless request with its headers; no `initialize`, which it would refuse.
        assert_eq!(server.count("server/discover"), 1);
        assert_eq!(server.count("initialize"), 0);
        let probe = &server.requests()[0];
        assert_eq!(probe.header_values("mcp-protocol-version"), ["2026-07-28"]);
        assert_eq!(probe.header_values("mcp-method"), ["server/discover"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalogue_the_server_calls_fresh_is_not_listed_again_until_it_is_stale() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let cached = FakeMcpServer::start(McpConfig {
        list_ttl_ms: 3_600_000,
        ..modern(vec![echo_tool()])
    })
    .await;
    let uncached = FakeMcpServer::start(modern(vec![echo_tool()])).await;
    let mut ids = Vec::new();
    for (name, server) in [("cached", &cached), ("uncached", &uncached)] {
        let id = t
            .create_server(a, json!({ "name": name, "url": server.url() }))
            .await;
        t.ok(a, REFRESH, json!({ "id": id })).await;
        ids.push(id);
    }
    let data = t
        .ok(
            a,
            "query($id: ID!) { mcpServer(id: $id) { toolsFreshUntil toolsRefreshedAt } }",
            json!({ "id": ids[0] }),
        )
        .await;
    let fresh_until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(data["mcpServer"]["toolsFreshUntil"].clone()).expect("a time");
    let refreshed: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(data["mcpServer"]["toolsRefreshedAt"].clone()).expect("a time");
    assert_eq!(
        fresh_until - refreshed,
        chrono::Duration::hours(1),
        "{data}"
    );
    let data = t
        .ok(
            a,
            "query($id: ID!) { mcpServer(id: $id) { toolsFreshUntil } }",
            json!({ "id": ids[1] }),
        )
        .await;
    assert_eq!(data["mcpServer"]["toolsFreshUntil"], Value::Null, "ttlMs 0");

    let listed = (cached.count("tools/list"), uncached.count("tools/list"));
    let discovered = cached.count("server/discover");
    let checked = switchboard::domain::health::run_round(&t.app, std::time::Duration::ZERO, 4)
        .await
        .expect("a round");
    assert_eq!(checked, 2);
    assert_eq!(
        cached.count("tools/list"),
        listed.0,
        "still fresh: only reached"
    );
    assert_eq!(cached.count("server/discover"), discovered + 1);
    assert_eq!(
        uncached.count("tools/list"),
        listed.1 + 1,
        "no promise: listed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_of_the_earlier_era_asking_mid_call_gets_cancel_and_the_result_says_so() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let old = FakeMcpServer::start(McpConfig {
        sessions: true,
        tools: vec![insist_tool(), echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(a, json!({ "name": "old", "url": old.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;

    const ASKED: &str = "mutation($id: ID!, $n: String!) { callMcpTool(serverId: $id, name: $n) { status content isError unansweredInput { mode message url } } }";
    let data = t.ok(a, ASKED, json!({ "id": id, "n": "insist" })).await;
    let result = &data["callMcpTool"];
    assert_eq!(result["status"], "COMPLETE", "{data}");
    assert_eq!(
        result["content"][0]["text"], "went on; the answer was cancel",
        "the server got cancel, never an invented answer: {data}"
    );
    assert_eq!(
        result["unansweredInput"],
        json!([{ "mode": "FORM", "message": "Really go ahead?", "url": null }])
    );
    let answers = old.elicitation_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["result"], json!({ "action": "cancel" }));

    // A call that asked nothing says nothing, on the same session.
    let data = t.ok(a, ASKED, json!({ "id": id, "n": "echo" })).await;
    assert_eq!(data["callMcpTool"]["unansweredInput"], json!([]));
    assert_eq!(
        old.count("initialize"),
        3,
        "the probe, the refresh and one session kept for both calls"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_stream_is_retried_only_for_tools_that_may_run_twice() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mut lookup = tool("lookup");
    lookup["annotations"] = json!({ "readOnlyHint": false, "idempotentHint": true });
    let mcp = FakeMcpServer::start(modern(vec![tool("send"), lookup])).await;
    let id = t
        .create_server(a, json!({ "name": "flaky", "url": mcp.url() }))
        .await;
    t.ok(a, REFRESH, json!({ "id": id })).await;
    let calls = |tool: &str| -> Vec<Value> {
        mcp.posted()
            .into_iter()
            .filter(|m| m["method"] == "tools/call" && m["params"]["name"] == tool)
            .collect()
    };

    // A tool without hints: its answer is lost, and it is not called again, since it may
    // have run.
    mcp.break_streams("tools/call", 1);
    let response = t
        .gql(
            Some(&a.token),
            CALL,
            json!({ "id": id, "n": "send", "a": { "x": 1 } }),
        )
        .await;
    assert_eq!(error_code(&response), Some("UPSTREAM_ERROR"), "{response}");
    let message = response["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("may have run"), "{message}");
    assert_eq!(calls("send").len(), 1, "never sent twice");

    // An idempotent tool: sent again, as a new request, and its answer comes back.
    mcp.break_streams("tools/call", 1);
    let data = t
        .ok(a, CALL, json!({ "id": id, "n": "lookup", "a": { "x": 2 } }))
        .await;
    assert_eq!(data["callMcpTool"]["structuredContent"], json!({ "x": 2 }));
    let sent = calls("lookup");
    assert_eq!(sent.len(), 2, "the lost call and its repetition");
    for field in ["name", "arguments"] {
        assert_eq!(sent[0]["params"][field], sent[1]["params"][field]);
    }
    assert_ne!(sent[0]["id"], sent[1]["id"], "a new request id");

    // A page of the catalogue lost with its stream is asked for again.
    mcp.break_streams("tools/list", 1);
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(data["refreshMcpServer"]["toolCount"], 2, "{data}");
}
