//! What a server's status says as a user meets it: rejected headers, servers whose auth type
//! could not be detected, and disabled servers. (The transition rules themselves are
//! unit-tested in `domain::lifecycle`.)

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::health;

use crate::support::fake_as::{AsConfig, FakeAuthServer};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, Mode};
use crate::support::{START_OAUTH, TestApp, error_code};

const STATUS: &str = "query($id: ID!) { mcpServer(id: $id) { authType connectionStatus \
    authStatus statusReason lastError enabled } }";
const REFRESH: &str = "mutation($id: ID!) { refreshMcpServer(id: $id) { connectionStatus } }";
const CALL: &str = "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"echo\", \
    arguments: { text: \"hi\" }) { isError } }";
const DETECT: &str = "mutation($id: ID!) { detectMcpServerAuth(id: $id) { detection \
    server { authType authStatus statusReason } } }";
const UPDATE: &str = "mutation($id: ID!, $i: UpdateMcpServerInput!) { updateMcpServer(id: $id, \
    input: $i) { authType authStatus connectionStatus statusReason } }";
const CREATE: &str = "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { \
    authType detection server { id authStatus statusReason } } }";

async fn status(t: &TestApp, id: &str) -> Value {
    t.ok(&t.admin, STATUS, json!({ "id": id })).await["mcpServer"].clone()
}

fn keyed() -> McpConfig {
    McpConfig {
        auth: McpAuth::StaticHeader {
            name: "X-Key".into(),
            value: "k-right".into(),
        },
        ..McpConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_headers_are_their_own_state_and_a_success_recovers() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(keyed()).await;
    let id = t
        .create_server(
            a,
            json!({ "name": "keyed", "url": mcp.url(),
                    "headers": [{ "name": "X-Key", "value": "k-wrong" }] }),
        )
        .await;

    // The wrong header is reported as such, never as an OAuth prompt.
    let body = t.gql(Some(&a.token), REFRESH, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("UPSTREAM_ERROR"), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["reason"],
        "headers_rejected"
    );
    let s = status(&t, &id).await;
    assert_eq!(s["authType"], "HEADERS", "{s}");
    assert_eq!(s["authStatus"], "HEADERS_REJECTED", "{s}");
    assert_eq!(s["statusReason"], "HEADERS_REJECTED", "{s}");
    assert_eq!(s["connectionStatus"], "DISCONNECTED", "{s}");

    // Health checks keep visiting it.
    let interval = Duration::from_secs(60);
    assert_eq!(health::run_round(&t.app, interval, 2).await.unwrap(), 1);
    assert_eq!(status(&t, &id).await["authStatus"], "HEADERS_REJECTED");

    // New headers start the status over; the next check connects.
    let data = t
        .ok(
            a,
            UPDATE,
            json!({ "id": id, "i": { "headers": [{ "name": "X-Key", "value": "k-right" }] } }),
        )
        .await;
    let s = &data["updateMcpServer"];
    assert_eq!(s["authStatus"], "NOT_REQUIRED", "{data}");
    assert_eq!(s["statusReason"], "HEADERS_CHANGED", "{data}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        health::run_round(&t.app, Duration::from_millis(1), 2)
            .await
            .unwrap(),
        1
    );
    let s = status(&t, &id).await;
    assert_eq!(s["connectionStatus"], "CONNECTED", "{s}");
    assert_eq!(s["authStatus"], "NOT_REQUIRED", "{s}");
    assert_eq!(s["statusReason"], "CONNECTED", "{s}");
    let data = t.ok(a, CALL, json!({ "id": id })).await;
    assert_eq!(data["callMcpTool"]["isError"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_cannot_be_asked_stays_undetected_until_detection_succeeds() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;

    // Creation while the server fails: not a verdict, and the payload says why.
    mcp.set_mode(Mode::ServerError);
    let data = t
        .ok(
            a,
            CREATE,
            json!({ "i": { "workspaceId": a.workspace_id.to_string(), "name": "later",
                           "url": mcp.url() } }),
        )
        .await;
    let created = &data["createMcpServer"];
    assert_eq!(created["authType"], "UNDETECTED", "{data}");
    assert_eq!(created["detection"], "unexpected_status_500", "{data}");
    assert_eq!(created["server"]["authStatus"], "NOT_REQUIRED", "{data}");
    assert_eq!(
        created["server"]["statusReason"], "DETECTION_FAILED",
        "{data}"
    );
    let id = created["server"]["id"].as_str().unwrap().to_owned();

    // UNDETECTED is what detection says, never a choice.
    let body = t
        .gql(
            Some(&a.token),
            UPDATE,
            json!({ "id": id, "i": { "authType": "UNDETECTED" } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");

    // Asked again once it answers, from the explicit action.
    mcp.set_mode(Mode::Normal);
    let data = t.ok(a, DETECT, json!({ "id": id })).await;
    let detected = &data["detectMcpServerAuth"];
    assert_eq!(detected["detection"], "oauth_challenge", "{data}");
    assert_eq!(detected["server"]["authType"], "OAUTH", "{data}");
    assert_eq!(
        detected["server"]["authStatus"], "AUTHORIZATION_REQUIRED",
        "{data}"
    );
    assert_eq!(detected["server"]["statusReason"], "DETECTED", "{data}");
    let started = t.ok(a, START_OAUTH, json!({ "id": id })).await;
    assert_eq!(started["startMcpOauth"]["status"], "REDIRECT", "{started}");

    // A typo in the port, fixed by changing the URL: detection runs again.
    let other = t
        .create_server(
            a,
            json!({ "name": "typo", "url": "http://127.0.0.1:9/mcp" }),
        )
        .await;
    assert_eq!(status(&t, &other).await["authType"], "UNDETECTED");
    let second = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let data = t
        .ok(
            a,
            UPDATE,
            json!({ "id": other, "i": { "url": second.url() } }),
        )
        .await;
    assert_eq!(data["updateMcpServer"]["authType"], "OAUTH", "{data}");
    assert_eq!(
        data["updateMcpServer"]["authStatus"], "AUTHORIZATION_REQUIRED",
        "{data}"
    );

    // And on refresh.
    let third = FakeMcpServer::start(McpConfig::default()).await;
    third.set_mode(Mode::ServerError);
    let open = t
        .create_server(a, json!({ "name": "open", "url": third.url() }))
        .await;
    assert_eq!(status(&t, &open).await["authType"], "UNDETECTED");
    third.set_mode(Mode::Normal);
    let data = t.ok(a, REFRESH, json!({ "id": open })).await;
    assert_eq!(
        data["refreshMcpServer"]["connectionStatus"], "CONNECTED",
        "{data}"
    );
    assert_eq!(status(&t, &open).await["authType"], "NONE");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_server_refuses_every_outbound_action_the_same_way() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let id = t
        .create_server(
            a,
            json!({ "name": "off", "url": mcp.url(), "authType": "NONE", "enabled": false }),
        )
        .await;
    let sent = mcp.request_count();
    for (query, name) in [
        (REFRESH, "refresh"),
        (CALL, "call"),
        (DETECT, "detect"),
        (START_OAUTH, "startMcpOauth"),
    ] {
        let body = t.gql(Some(&a.token), query, json!({ "id": id })).await;
        assert_eq!(error_code(&body), Some("SERVER_DISABLED"), "{name}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["serverId"], id,
            "{name}: {body}"
        );
    }
    assert_eq!(
        health::run_round(&t.app, Duration::from_secs(60), 2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(mcp.request_count(), sent, "nothing was sent");

    // Enabled again, it works, and the status says it was enabled.
    let data = t
        .ok(a, UPDATE, json!({ "id": id, "i": { "enabled": true } }))
        .await;
    assert_eq!(data["updateMcpServer"]["statusReason"], "ENABLED", "{data}");
    let data = t.ok(a, REFRESH, json!({ "id": id })).await;
    assert_eq!(data["refreshMcpServer"]["connectionStatus"], "CONNECTED");
}
