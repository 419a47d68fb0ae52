//! Hostile users: an editor trying to make stored secrets travel to an origin they control,
//! and every mutation tried by callers whose role or workspace does not allow it — each refused
//! with its code, with nothing stored changed and no request sent upstream.

use base64::Engine as _;
use serde_json::{Value, json};
use switchboard::domain::access::Role;

use crate::support::fake_as::{AsConfig, FakeAuthServer};
use crate::support::fake_http::Recorded;
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, echo_tool};
use crate::support::{Actor, TestApp, error_code};

const HEADER_SECRET: &str = "hdr-5ecret-7f3a91";
const CLIENT_ID: &str = "switchboard-prereg-4c2d";
const CLIENT_SECRET: &str = "cl1ent-5ecret-b8e0";

const UPDATE: &str = "mutation($id: ID!, $i: UpdateMcpServerInput!) { updateMcpServer(id: $id, input: $i) { \
    url headerNames oauthClientId hasOauthClientSecret authType } }";
const REFRESH: &str = "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }";
const CALL: &str = "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"echo\", arguments: { text: \"hi\" }) { isError } }";
const DISCONNECT: &str = "mutation($id: ID!) { disconnectMcpOauth(serverId: $id) { id } }";
const PROBE: &str =
    "query($w: ID!, $u: String!) { probeMcpServer(workspaceId: $w, url: $u) { authType } }";

/// Every secret an admin stored, found anywhere in what an upstream received: headers (Basic
/// credentials decoded), query and body.
fn leaks(requests: &[Recorded], secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for request in requests {
        let mut seen: Vec<String> = request.headers.values().cloned().collect();
        if let Some(basic) = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        {
            seen.push(String::from_utf8_lossy(&basic).into_owned());
        }
        seen.extend(request.query.values().cloned());
        seen.push(request.body.clone());
        for secret in secrets {
            if seen.iter().any(|text| text.contains(secret)) {
                found.push(format!("{secret} in {} {}", request.method, request.path));
            }
        }
    }
    found
}

/// An editor moves an admin's servers to an origin the editor controls and runs every
/// mutation an editor may run against them: no header value, client id or secret, and no token
/// of the admin's grant, ever reaches that origin. Moving a server says so in the API: the
/// header names and the client are gone.
#[tokio::test(flavor = "multi_thread")]
async fn an_editor_cannot_send_stored_secrets_to_an_origin_they_control() {
    let t = TestApp::start().await;
    let admin = &t.admin;
    let editor = t
        .new_member("mallory", admin.workspace_id, Role::Editor)
        .await;
    let legit_as = FakeAuthServer::start(AsConfig {
        preregistered: vec![(CLIENT_ID.into(), Some(CLIENT_SECRET.into()))],
        dcr: false,
        token_prefix: "legit-".into(),
        ..AsConfig::default()
    })
    .await;
    let legit_oauth = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&legit_as),
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let legit_headers = FakeMcpServer::start(McpConfig {
        auth: McpAuth::StaticHeader {
            name: "X-Api-Key".into(),
            value: HEADER_SECRET.into(),
        },
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let headers_id = t
        .create_server(
            admin,
            json!({ "name": "docs", "url": legit_headers.url(),
                    "headers": [{ "name": "X-Api-Key", "value": HEADER_SECRET }] }),
        )
        .await;
    t.ok(admin, REFRESH, json!({ "id": headers_id })).await;
    let oauth_id = t
        .create_server(
            admin,
            json!({ "name": "crm", "url": legit_oauth.url(),
                    "oauthClientId": CLIENT_ID, "oauthClientSecret": CLIENT_SECRET }),
        )
        .await;
    assert_eq!(t.authorize_in_browser(admin, &oauth_id).await.status, 200);

    // The editor's own origin: an open MCP server, and an OAuth one with its own
    // authorization server that registers any client.
    let evil_as = FakeAuthServer::start(AsConfig {
        token_prefix: "evil-".into(),
        ..AsConfig::default()
    })
    .await;
    let evil_oauth = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&evil_as),
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let evil_open = FakeMcpServer::start(McpConfig {
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;

    let w = admin.workspace_id.to_string();
    let homes = [legit_headers.url(), legit_oauth.url()];
    for ((id, target), home) in [(&headers_id, &evil_open), (&oauth_id, &evil_oauth)]
        .into_iter()
        .zip(homes)
    {
        t.gql(
            Some(&editor.token),
            PROBE,
            json!({ "w": w, "u": target.url() }),
        )
        .await;
        let moved = t
            .ok(
                &editor,
                UPDATE,
                json!({ "id": id, "i": { "url": target.url() } }),
            )
            .await;
        let server = &moved["updateMcpServer"];
        assert_eq!(server["headerNames"], json!([]), "{moved}");
        assert_eq!(server["oauthClientId"], Value::Null, "{moved}");
        assert_eq!(server["hasOauthClientSecret"], false, "{moved}");
        t.gql(Some(&editor.token), REFRESH, json!({ "id": id }))
            .await;
        t.gql(Some(&editor.token), CALL, json!({ "id": id })).await;
        // As an OAuth server, authorized at the editor's own authorization server.
        t.gql(
            Some(&editor.token),
            UPDATE,
            json!({ "id": id, "i": { "authType": "OAUTH", "url": evil_oauth.url() } }),
        )
        .await;
        let run = t.authorize_in_browser(&editor, id).await;
        assert_eq!(run.status, 200, "{}", run.page);
        t.gql(Some(&editor.token), REFRESH, json!({ "id": id }))
            .await;
        t.gql(Some(&editor.token), CALL, json!({ "id": id })).await;
        t.gql(Some(&editor.token), DISCONNECT, json!({ "id": id }))
            .await;
        // Moving back to the legitimate origin does not bring the secrets back.
        let back = t
            .ok(&editor, UPDATE, json!({ "id": id, "i": { "url": home } }))
            .await;
        assert_eq!(back["updateMcpServer"]["headerNames"], json!([]), "{back}");
    }

    let mut received = evil_open.requests();
    received.extend(evil_oauth.requests());
    received.extend(evil_as.requests());
    assert!(!received.is_empty(), "the editor's servers were contacted");
    let leaked = leaks(
        &received,
        &[
            HEADER_SECRET,
            CLIENT_ID,
            CLIENT_SECRET,
            "legit-at-",
            "legit-rt-",
        ],
    );
    assert!(
        leaked.is_empty(),
        "stored secrets reached the editor: {leaked:?}"
    );
    // The admin's grant was revoked at its own authorization server when the server moved.
    assert!(!legit_as.revocations().is_empty());
}

/// A pre-registered client is bound to the authorization server it was first used with: when
/// the resource names another one, the flow stops with a clear error and the other server
/// receives neither the client id nor the secret.
#[tokio::test(flavor = "multi_thread")]
async fn a_pre_registered_client_never_goes_to_another_authorization_server() {
    let t = TestApp::start().await;
    let admin = &t.admin;
    let first = FakeAuthServer::start(AsConfig {
        preregistered: vec![(CLIENT_ID.into(), Some(CLIENT_SECRET.into()))],
        dcr: false,
        ..AsConfig::default()
    })
    .await;
    let resource = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&first),
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(
            admin,
            json!({ "name": "crm", "url": resource.url(),
                    "oauthClientId": CLIENT_ID, "oauthClientSecret": CLIENT_SECRET }),
        )
        .await;
    assert_eq!(t.authorize_in_browser(admin, &id).await.status, 200);

    let other = FakeAuthServer::start(AsConfig::default()).await;
    resource.migrate_authorization_server(&other);
    let body = t
        .gql(
            Some(&admin.token),
            crate::support::START_OAUTH,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("UPSTREAM_ERROR"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("enter the client credentials again"),
        "{message}"
    );
    let leaked = leaks(&other.requests(), &[CLIENT_ID, CLIENT_SECRET]);
    assert!(leaked.is_empty(), "{leaked:?}");

    // Entering the client again (the admin's decision) binds it to the new server.
    t.ok(
        admin,
        UPDATE,
        json!({ "id": id, "i": { "oauthClientId": "new-client", "oauthClientSecret": "" } }),
    )
    .await;
    let body = t
        .gql(
            Some(&admin.token),
            crate::support::START_OAUTH,
            json!({ "id": id }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

/// Who is refused, and with which code.
type Refusals<'a> = Vec<(&'a Actor, &'static str)>;

/// Every mutation, and the queries that reach upstream servers, tried by a viewer and an editor
/// of the workspace and by the admin of another workspace: each refused with the right code,
/// nothing stored changed, and no request sent to any upstream.
#[tokio::test(flavor = "multi_thread")]
async fn callers_without_the_role_change_nothing_and_reach_no_upstream() {
    let t = TestApp::start().await;
    let admin = &t.admin;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let upstream = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(admin, json!({ "name": "crm", "url": upstream.url() }))
        .await;
    assert_eq!(t.authorize_in_browser(admin, &id).await.status, 200);
    let viewer = t.new_member("vic", admin.workspace_id, Role::Viewer).await;
    let editor = t.new_member("eve", admin.workspace_id, Role::Editor).await;
    let outsider = t.new_workspace_admin("olga").await;
    let admin_token_id =
        t.ok(admin, "{ apiTokens { id } }", json!({})).await["apiTokens"][0]["id"].clone();

    let w = admin.workspace_id.to_string();
    let before = snapshot(&t, &w, &id).await;
    let upstream_before = upstream.requests().len() + auth.requests().len();

    // (query, variables, who is refused and with which code)
    let u = t.admin.user_id.to_string();
    let cases: Vec<(&str, Value, Refusals)> = vec![
        (
            "mutation($id: ID!) { updateMcpServer(id: $id, input: { name: \"x\", url: \"http://127.0.0.1:9/x\" }) { id } }",
            json!({ "id": id }),
            vec![(&viewer, "FORBIDDEN"), (&outsider, "NOT_FOUND")],
        ),
        (
            "mutation($id: ID!) { deleteMcpServer(id: $id) }",
            json!({ "id": id }),
            vec![
                (&viewer, "FORBIDDEN"),
                (&editor, "FORBIDDEN"),
                (&outsider, "NOT_FOUND"),
            ],
        ),
        (
            "mutation($id: ID!) { startMcpOauth(serverId: $id) { status } }",
            json!({ "id": id }),
            vec![(&viewer, "FORBIDDEN"), (&outsider, "NOT_FOUND")],
        ),
        (
            DISCONNECT,
            json!({ "id": id }),
            vec![(&viewer, "FORBIDDEN"), (&outsider, "NOT_FOUND")],
        ),
        (
            REFRESH,
            json!({ "id": id }),
            vec![(&viewer, "FORBIDDEN"), (&outsider, "NOT_FOUND")],
        ),
        (CALL, json!({ "id": id }), vec![(&outsider, "NOT_FOUND")]),
        (
            "mutation($w: ID!) { createMcpServer(input: { workspaceId: $w, name: \"x\", url: \"http://127.0.0.1:9/y\", authType: NONE }) { authType } }",
            json!({ "w": w }),
            vec![(&viewer, "FORBIDDEN"), (&outsider, "NOT_FOUND")],
        ),
        (
            PROBE,
            json!({ "w": w, "u": upstream.url() }),
            vec![(&viewer, "FORBIDDEN"), (&outsider, "NOT_FOUND")],
        ),
        (
            "mutation($w: ID!, $u: ID!) { addWorkspaceMember(workspaceId: $w, userId: $u, role: VIEWER) { role } }",
            json!({ "w": w, "u": u }),
            vec![
                (&viewer, "FORBIDDEN"),
                (&editor, "FORBIDDEN"),
                (&outsider, "NOT_FOUND"),
            ],
        ),
        (
            "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
            json!({ "id": admin_token_id }),
            vec![
                (&viewer, "NOT_FOUND"),
                (&editor, "NOT_FOUND"),
                (&outsider, "NOT_FOUND"),
            ],
        ),
        (
            "mutation { completeMcpOauth(state: \"guess\", code: \"guess\") { id } }",
            json!({}),
            vec![
                (&viewer, "BAD_USER_INPUT"),
                (&editor, "BAD_USER_INPUT"),
                (&outsider, "BAD_USER_INPUT"),
            ],
        ),
    ];
    for (query, variables, refusals) in &cases {
        for (actor, code) in refusals {
            let body = t.gql(Some(&actor.token), query, variables.clone()).await;
            assert_eq!(error_code(&body), Some(*code), "{query}: {body}");
        }
    }
    assert_eq!(
        snapshot(&t, &w, &id).await,
        before,
        "nothing stored changed"
    );
    assert_eq!(
        upstream.requests().len() + auth.requests().len(),
        upstream_before,
        "no request reached an upstream"
    );
}

/// What the workspace's admin sees of the workspace, its server, audit trail and tokens.
async fn snapshot(t: &TestApp, workspace: &str, server: &str) -> Value {
    t.ok(
        &t.admin,
        "query($w: ID!, $id: ID!) { workspace(id: $w) { name mcpServers { edges { node { id name url \
         authType authStatus connectionStatus statusReason headerNames oauthClientId updatedAt \
         oauth { issuer expiresAt flowInProgress } } } } auditEvents(first: 100) { edges { node { id } } } } \
         mcpServer(id: $id) { toolCount } apiTokens { id revokedAt } }",
        json!({ "w": workspace, "id": server }),
    )
    .await
}
