//! Authentication, roles, tokens and workspace isolation.

use crate::support::{TestApp, error_code};
use serde_json::{Value, json};
use switchboard::domain::access::Role;
use switchboard::domain::admin;

#[tokio::test(flavor = "multi_thread")]
async fn tokens_authenticate_and_revocation_is_immediate() {
    let t = TestApp::start().await;
    let a = &t.admin;

    let body = t.gql(None, "{ viewer { id } }", json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");

    let (status, body) = t
        .gql_raw(Some("sbt_not-a-real-token"), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));

    let data = t
        .ok(
            a,
            "{ viewer { id name } workspaces { id name role } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["name"], "admin");
    assert_eq!(data["workspaces"][0]["role"], "ADMIN");

    let data = t.ok(a, "mutation { createApiToken(name: \"ci\") { token apiToken { id name prefix revokedAt } } }", json!({})).await;
    let token = data["createApiToken"]["token"].as_str().unwrap().to_owned();
    let token_id = data["createApiToken"]["apiToken"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("sbt_") && token.len() > 40);
    assert!(
        token.starts_with(
            data["createApiToken"]["apiToken"]["prefix"]
                .as_str()
                .unwrap()
        )
    );

    // The token works, and it is never shown again.
    let (status, _) = t
        .gql_raw(Some(&token), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(status, 200);
    let listed = t.ok(a, "{ apiTokens { id name prefix } }", json!({})).await;
    assert!(!listed.to_string().contains(&token));

    let data = t
        .ok(
            a,
            "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }",
            json!({ "id": token_id }),
        )
        .await;
    assert!(data["revokeApiToken"]["revokedAt"].is_string());
    let (status, _) = t
        .gql_raw(Some(&token), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(status, 401);

    // Someone else's token cannot be revoked.
    let other = t.new_workspace_admin("oscar").await;
    let list = t.ok(&other, "{ apiTokens { id } }", json!({})).await;
    let other_token_id = list["apiTokens"][0]["id"].as_str().unwrap().to_owned();
    let body = t
        .gql(
            Some(&a.token),
            "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
            json!({ "id": other_token_id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    let (status, _) = t
        .gql_raw(Some(&other.token), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn workspaces_and_members() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let data = t
        .ok(
            a,
            "mutation { createWorkspace(name: \"Team\") { id name role } }",
            json!({}),
        )
        .await;
    assert_eq!(data["createWorkspace"]["role"], "ADMIN");
    let ws = data["createWorkspace"]["id"].as_str().unwrap().to_owned();

    let bob = t.new_workspace_admin("bob").await;
    let add = "mutation($w: ID!, $u: ID!, $r: WorkspaceRole!) { addWorkspaceMember(workspaceId: $w, userId: $u, role: $r) { role } }";
    t.ok(
        a,
        add,
        json!({ "w": ws, "u": bob.user_id.to_string(), "r": "VIEWER" }),
    )
    .await;
    let seen = t
        .ok(
            &bob,
            "query($w: ID!) { workspace(id: $w) { name role } }",
            json!({ "w": ws }),
        )
        .await;
    assert_eq!(seen["workspace"]["role"], "VIEWER");

    // A viewer cannot add members; a stranger does not see the workspace at all.
    let body = t
        .gql(
            Some(&bob.token),
            add,
            json!({ "w": ws, "u": bob.user_id.to_string(), "r": "ADMIN" }),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let carol = t.new_workspace_admin("carol").await;
    let body = t
        .gql(
            Some(&carol.token),
            add,
            json!({ "w": ws, "u": carol.user_id.to_string(), "r": "ADMIN" }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
    let seen = t
        .ok(
            &carol,
            "query($w: ID!) { workspace(id: $w) { name } }",
            json!({ "w": ws }),
        )
        .await;
    assert_eq!(seen["workspace"], Value::Null);

    let body = t
        .gql(
            Some(&a.token),
            add,
            json!({ "w": ws, "u": uuid::Uuid::now_v7().to_string(), "r": "ADMIN" }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = t
        .gql(
            Some(&a.token),
            "mutation { createWorkspace(name: \"  \") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

/// For every query and mutation, a member of workspace A naming workspace B's objects gets
/// NOT_FOUND (or null) and B's rows are unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn cross_workspace_matrix() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let b = t.new_workspace_admin("bea").await;
    let b_server = t
        .create_server(
            &b,
            json!({ "name": "b", "url": "http://127.0.0.1:9/b", "authType": "OAUTH",
                                    "headers": [{ "name": "X-Key", "value": "b-secret" }] }),
        )
        .await;
    let b_ws = b.workspace_id.to_string();
    let snapshot_query = "query($w: ID!) { workspace(id: $w) { name mcpServers { edges { node { id name url authType authStatus \
        connectionStatus headerNames updatedAt } } } auditEvents { edges { node { id } } } } }";
    let before = t.ok(&b, snapshot_query, json!({ "w": b_ws })).await;

    let nulls = [
        (
            "query($id: ID!) { mcpServer(id: $id) { id } }",
            json!({ "id": b_server }),
            "mcpServer",
        ),
        (
            "query($id: ID!) { workspace(id: $id) { id } }",
            json!({ "id": b_ws }),
            "workspace",
        ),
    ];
    for (query, vars, field) in nulls {
        let data = t.ok(a, query, vars).await;
        assert_eq!(data[field], Value::Null, "{query}");
    }
    let refused = [
        (
            "mutation($id: ID!) { updateMcpServer(id: $id, input: { name: \"pwned\" }) { id } }",
            json!({ "id": b_server }),
        ),
        (
            "mutation($id: ID!) { updateMcpServer(id: $id, input: { url: \"http://127.0.0.1:9/x\" }) { id } }",
            json!({ "id": b_server }),
        ),
        (
            "mutation($id: ID!) { deleteMcpServer(id: $id) }",
            json!({ "id": b_server }),
        ),
        (
            "mutation($w: ID!) { createMcpServer(input: { workspaceId: $w, name: \"x\", url: \"http://127.0.0.1:9/y\" }) { authType } }",
            json!({ "w": b_ws }),
        ),
        (
            "mutation($w: ID!, $u: ID!) { addWorkspaceMember(workspaceId: $w, userId: $u, role: ADMIN) { role } }",
            json!({ "w": b_ws, "u": a.user_id.to_string() }),
        ),
    ];
    for (query, vars) in refused {
        let body = t.gql(Some(&a.token), query, vars).await;
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{query}: {body}");
    }
    let after = t.ok(&b, snapshot_query, json!({ "w": b_ws })).await;
    assert_eq!(before, after, "workspace B must be untouched");
    // A still sees nothing of B.
    let mine = t.ok(a, "{ workspaces { id } }", json!({})).await;
    assert!(!mine.to_string().contains(&b_ws));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_carries_every_membership_of_its_user_and_none_when_there_are_none() {
    let t = TestApp::start().await;
    let user = admin::create_user(&t.app, "nomad").await.unwrap();
    let token = admin::create_token(&t.app, user.id.0, "cli").await.unwrap();
    let query = "{ viewer { name } workspaces { name } }";
    let body = t.gql(Some(token.token.expose()), query, json!({})).await;
    assert_eq!(body["data"]["viewer"]["name"], "nomad", "{body}");
    assert_eq!(body["data"]["workspaces"], json!([]), "{body}");

    let other = t.new_workspace_admin("olga").await;
    admin::add_member(&t.app, t.admin.workspace_id, user.id.0, Role::Viewer)
        .await
        .unwrap();
    admin::add_member(&t.app, other.workspace_id, user.id.0, Role::Editor)
        .await
        .unwrap();
    let body = t.gql(Some(token.token.expose()), query, json!({})).await;
    let mut names: Vec<&str> = body["data"]["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Default", "olga's workspace"], "{body}");
}
