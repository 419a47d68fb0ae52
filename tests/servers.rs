//! MCP server management over GraphQL: create, update, delete, list, with the product's
//! semantics for secrets, client credentials, URL uniqueness and status resets.

use crate::support::{TestApp, error_code};
use serde_json::{Value, json};
use switchboard::db::models::OauthGrantRow;
use switchboard::db::{self, DbTime, DbUuid};
use switchboard::domain::access::Role;
use uuid::Uuid;

const SERVER_FIELDS: &str = "id name description url transport enabled timeoutMs retries authType headerNames \
    oauthClientId hasOauthClientSecret connectionStatus authStatus statusReason toolCount \
    oauth { issuer } createdBy { id name } workspace { id role }";

async fn update(t: &TestApp, token: &str, id: &str, input: Value) -> Value {
    let q = format!(
        "mutation($id: ID!, $i: UpdateMcpServerInput!) {{ updateMcpServer(id: $id, input: $i) {{ {SERVER_FIELDS} }} }}"
    );
    t.gql(Some(token), &q, json!({ "id": id, "i": input }))
        .await
}

async fn create(t: &TestApp, token: &str, input: Value) -> Value {
    let q = format!(
        "mutation($i: CreateMcpServerInput!) {{ createMcpServer(input: $i) {{ authType server {{ {SERVER_FIELDS} }} }} }}"
    );
    t.gql(Some(token), &q, json!({ "i": input })).await
}

async fn insert_grant(t: &TestApp, server_id: &str) {
    let now = DbTime(db::now());
    let row = OauthGrantRow {
        issuer: Some("https://as.example".into()),
        registration_kind: Some(switchboard::db::types::RegistrationKind::Dynamic),
        granted_scopes: Some("read write".into()),
        token_generation: 1,
        last_refreshed_at: Some(now),
        ..OauthGrantRow::empty(DbUuid(Uuid::parse_str(server_id).unwrap()), None, now)
    };
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::insert_grant(&mut conn, &row).await.unwrap();
}

async fn grant_exists(t: &TestApp, server_id: &str) -> bool {
    let mut conn = t.app.db.conn().await.unwrap();
    !db::oauth::grants_of_server(&mut conn, Uuid::parse_str(server_id).unwrap())
        .await
        .unwrap()
        .is_empty()
}

async fn server_count(t: &TestApp, workspace: Uuid) -> usize {
    let mut conn = t.app.db.conn().await.unwrap();
    db::servers::page(&mut conn, workspace, None, 1000)
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_safe_fields_and_defaults() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let body = create(
        &t,
        &a.token,
        json!({
            "workspaceId": a.workspace_id.to_string(),
            "name": "  Docs  ",
            "url": "http://127.0.0.1:9/mcp",
            "headers": [{ "name": "X-Api-Key", "value": "hdr-secret-value" }],
        }),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let created = &body["data"]["createMcpServer"];
    assert_eq!(created["authType"], "HEADERS", "headers imply header auth");
    let s = &created["server"];
    assert_eq!(s["name"], "Docs");
    assert_eq!(s["transport"], "STREAMABLE_HTTP");
    assert_eq!(s["enabled"], true);
    assert_eq!(s["timeoutMs"], 30000);
    assert_eq!(s["retries"], 3);
    assert_eq!(s["headerNames"], json!(["X-Api-Key"]));
    assert_eq!(s["hasOauthClientSecret"], false);
    assert_eq!(s["oauthClientId"], Value::Null);
    assert_eq!(s["connectionStatus"], "DISCONNECTED");
    assert_eq!(s["authStatus"], "NOT_REQUIRED");
    assert_eq!(s["createdBy"]["id"], a.user_id.to_string());
    assert_eq!(s["workspace"]["role"], "ADMIN");
    assert!(!body.to_string().contains("hdr-secret-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_id_rules() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let ws = a.workspace_id.to_string();

    // "" is stored as null and implies nothing.
    let body = create(&t, &a.token, json!({ "workspaceId": ws, "name": "a", "url": "http://127.0.0.1:9/a", "oauthClientId": "" })).await;
    assert_eq!(
        body["data"]["createMcpServer"]["server"]["oauthClientId"],
        Value::Null,
        "{body}"
    );
    assert_eq!(body["data"]["createMcpServer"]["authType"], "UNDETECTED");

    // A client id without an auth type means OAuth.
    let body = create(
        &t,
        &a.token,
        json!({ "workspaceId": ws, "name": "b", "url": "http://127.0.0.1:9/b", "oauthClientId": "client-1", "oauthClientSecret": "cs-secret-1" }),
    )
    .await;
    let s = &body["data"]["createMcpServer"]["server"];
    assert_eq!(
        body["data"]["createMcpServer"]["authType"], "OAUTH",
        "{body}"
    );
    assert_eq!(s["oauthClientId"], "client-1");
    assert_eq!(s["hasOauthClientSecret"], true);
    assert_eq!(s["authStatus"], "AUTHORIZATION_REQUIRED");
    assert!(!body.to_string().contains("cs-secret-1"));

    // An explicit auth type wins over the client id.
    let body = create(
        &t,
        &a.token,
        json!({ "workspaceId": ws, "name": "c", "url": "http://127.0.0.1:9/c", "oauthClientId": "client-2", "authType": "HEADERS" }),
    )
    .await;
    assert_eq!(
        body["data"]["createMcpServer"]["authType"], "HEADERS",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_url_after_normalisation_is_a_conflict_with_the_existing_id() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let id = t
        .create_server(a, json!({ "name": "one", "url": "http://127.0.0.1:9/mcp" }))
        .await;
    for dup in [
        "HTTP://127.0.0.1:9/mcp/",
        "http://127.0.0.1:9/mcp#x",
        "http://127.0.0.1:9/mcp/#",
    ] {
        let body = create(
            &t,
            &a.token,
            json!({ "workspaceId": a.workspace_id.to_string(), "name": "two", "url": dup }),
        )
        .await;
        assert_eq!(error_code(&body), Some("CONFLICT"), "{dup}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["existingId"], id.as_str());
    }
    assert_eq!(server_count(&t, a.workspace_id).await, 1);

    // Another workspace may register the same URL.
    let b = t.new_workspace_admin("bea").await;
    t.create_server(
        &b,
        json!({ "name": "one", "url": "http://127.0.0.1:9/mcp" }),
    )
    .await;

    // Updating another server onto the URL is a conflict too.
    let other = t
        .create_server(
            a,
            json!({ "name": "other", "url": "http://127.0.0.1:9/other" }),
        )
        .await;
    let body = update(
        &t,
        &a.token,
        &other,
        json!({ "url": "http://127.0.0.1:9/MCP/".to_lowercase() }),
    )
    .await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["existingId"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn update_semantics_absent_null_and_empty() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let id = t
        .create_server(
            a,
            json!({ "name": "s", "description": "d", "url": "http://127.0.0.1:9/s", "authType": "OAUTH",
                    "oauthClientId": "cid", "oauthClientSecret": "sec", "headers": [{ "name": "X-A", "value": "1" }] }),
        )
        .await;

    // Absent fields stay as they are.
    let body = update(&t, &a.token, &id, json!({ "name": "renamed" })).await;
    let s = &body["data"]["updateMcpServer"];
    assert_eq!(s["name"], "renamed", "{body}");
    assert_eq!(s["description"], "d");
    assert_eq!(s["oauthClientId"], "cid");
    assert_eq!(s["hasOauthClientSecret"], true);
    assert_eq!(s["headerNames"], json!(["X-A"]));

    // null clears description; "" clears the client id and the secret.
    let body = update(
        &t,
        &a.token,
        &id,
        json!({ "description": null, "oauthClientId": "", "oauthClientSecret": "" }),
    )
    .await;
    let s = &body["data"]["updateMcpServer"];
    assert_eq!(s["description"], Value::Null, "{body}");
    assert_eq!(s["oauthClientId"], Value::Null);
    assert_eq!(s["hasOauthClientSecret"], false);
    assert_eq!(s["authType"], "OAUTH");

    // [] clears headers.
    let body = update(&t, &a.token, &id, json!({ "headers": [] })).await;
    assert_eq!(
        body["data"]["updateMcpServer"]["headerNames"],
        json!([]),
        "{body}"
    );

    // Non-nullable fields refuse null.
    let body = update(&t, &a.token, &id, json!({ "name": null })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"));
    assert_eq!(body["errors"][0]["extensions"]["field"], "name");
}

#[tokio::test(flavor = "multi_thread")]
async fn url_credential_and_auth_type_changes_reset_status_and_remove_the_grant() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let id = t
        .create_server(a, json!({ "name": "s", "url": "http://127.0.0.1:9/s", "authType": "OAUTH", "oauthClientId": "cid" }))
        .await;

    // A name change keeps the grant.
    insert_grant(&t, &id).await;
    let body = update(&t, &a.token, &id, json!({ "name": "n" })).await;
    assert_eq!(
        body["data"]["updateMcpServer"]["oauth"]["issuer"], "https://as.example",
        "{body}"
    );
    assert!(grant_exists(&t, &id).await);

    // Setting the same secret twice: the second time nothing changed, the grant stays.
    update(&t, &a.token, &id, json!({ "oauthClientSecret": "s1" })).await;
    insert_grant(&t, &id).await;
    let body = update(&t, &a.token, &id, json!({ "oauthClientSecret": "s1" })).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(
        grant_exists(&t, &id).await,
        "an unchanged secret keeps the grant"
    );

    for (change, reason) in [
        (json!({ "url": "http://127.0.0.1:9/s2" }), "URL_CHANGED"),
        (json!({ "oauthClientId": "cid-2" }), "CREDENTIALS_CHANGED"),
        (json!({ "oauthClientSecret": "s2" }), "CREDENTIALS_CHANGED"),
    ] {
        if !grant_exists(&t, &id).await {
            insert_grant(&t, &id).await;
        }
        let body = update(&t, &a.token, &id, change.clone()).await;
        let s = &body["data"]["updateMcpServer"];
        assert_eq!(s["oauth"], Value::Null, "{change}: {body}");
        assert_eq!(s["authStatus"], "AUTHORIZATION_REQUIRED");
        assert_eq!(s["connectionStatus"], "DISCONNECTED");
        assert_eq!(s["statusReason"], reason);
        assert!(!grant_exists(&t, &id).await, "{change}");
    }

    // Switching away from OAuth removes the grant and no longer needs authorization.
    insert_grant(&t, &id).await;
    let body = update(&t, &a.token, &id, json!({ "authType": "HEADERS" })).await;
    let s = &body["data"]["updateMcpServer"];
    assert_eq!(s["authStatus"], "NOT_REQUIRED", "{body}");
    assert_eq!(s["statusReason"], "AUTH_TYPE_CHANGED");
    assert!(!grant_exists(&t, &id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_names_the_field_and_writes_nothing() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let ws = a.workspace_id.to_string();
    let long = "x".repeat(201);
    let cases = [
        (json!({ "name": "", "url": "http://127.0.0.1:9/a" }), "name"),
        (
            json!({ "name": long, "url": "http://127.0.0.1:9/a" }),
            "name",
        ),
        (json!({ "name": "a", "url": "" }), "url"),
        (json!({ "name": "a", "url": "not a url" }), "url"),
        (json!({ "name": "a", "url": "ftp://127.0.0.1/a" }), "url"),
        (json!({ "name": "a", "url": "javascript:alert(1)" }), "url"),
        (
            json!({ "name": "a", "url": "http://u:p@127.0.0.1:9/a" }),
            "url",
        ),
        (
            json!({ "name": "a", "url": "http://127.0.0.1:9/a", "timeoutMs": 5 }),
            "timeoutMs",
        ),
        (
            json!({ "name": "a", "url": "http://127.0.0.1:9/a", "retries": 99 }),
            "retries",
        ),
        (
            json!({ "name": "a", "url": "http://127.0.0.1:9/a", "headers": [{ "name": "Host", "value": "x" }] }),
            "headers",
        ),
        (
            json!({ "name": "a", "url": "http://127.0.0.1:9/a", "headers": [{ "name": "bad name", "value": "x" }] }),
            "headers",
        ),
        (
            json!({ "name": "a", "url": "http://127.0.0.1:9/a", "headers": [{ "name": "X-A", "value": "a\nb" }] }),
            "headers",
        ),
    ];
    for (mut input, field) in cases {
        input["workspaceId"] = json!(ws);
        let body = create(&t, &a.token, input.clone()).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{input}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{input}: {body}"
        );
    }
    // Type errors are the caller's input too.
    let body = t.gql(Some(&a.token), "mutation { createMcpServer(input: { workspaceId: \"x\", name: 1, url: \"u\" }) { authType } }", json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = create(
        &t,
        &a.token,
        json!({ "workspaceId": "not-an-id", "name": "a", "url": "http://127.0.0.1:9/a" }),
    )
    .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert_eq!(server_count(&t, a.workspace_id).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_urls_are_refused_when_private_networks_are_not_allowed() {
    let t = TestApp::start_with(crate::support::Options {
        allow_private_networks: false,
        ..Default::default()
    })
    .await;
    let a = &t.admin;
    for url in [
        "http://127.0.0.1:9/mcp",
        "http://localhost:9/mcp",
        "https://10.1.2.3/mcp",
        "https://192.168.0.10/mcp",
        "https://172.16.5.4/mcp",
        "https://169.254.169.254/latest",
        "https://100.64.0.1/mcp",
        "https://[::1]/mcp",
        "https://[::ffff:127.0.0.1]/mcp",
        "https://[fd00::1]/mcp",
        "https://0.0.0.0/mcp",
        "http://93.184.216.34/mcp",
    ] {
        let body = create(
            &t,
            &a.token,
            json!({ "workspaceId": a.workspace_id.to_string(), "name": "x", "url": url }),
        )
        .await;
        assert_eq!(error_code(&body), Some("UNSAFE_URL"), "{url}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "url");
    }
    assert_eq!(server_count(&t, a.workspace_id).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_gate_changes_and_delete_removes_everything() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let viewer = t.new_member("vic", a.workspace_id, Role::Viewer).await;
    let editor = t.new_member("eve", a.workspace_id, Role::Editor).await;

    let body = create(&t, &viewer.token, json!({ "workspaceId": a.workspace_id.to_string(), "name": "v", "url": "http://127.0.0.1:9/v" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");

    let id = t
        .create_server(
            &editor,
            json!({ "name": "e", "url": "http://127.0.0.1:9/e", "authType": "OAUTH" }),
        )
        .await;
    insert_grant(&t, &id).await;
    let body = update(&t, &viewer.token, &id, json!({ "name": "x" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");

    let delete = "mutation($id: ID!) { deleteMcpServer(id: $id) }";
    let body = t
        .gql(Some(&editor.token), delete, json!({ "id": id }))
        .await;
    assert_eq!(
        error_code(&body),
        Some("FORBIDDEN"),
        "editors cannot delete: {body}"
    );
    assert!(grant_exists(&t, &id).await);

    let data = t.ok(a, delete, json!({ "id": id })).await;
    assert_eq!(data["deleteMcpServer"], id.as_str());
    assert!(
        !grant_exists(&t, &id).await,
        "the grant goes with the server"
    );
    let body = t.gql(Some(&a.token), delete, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));

    let events = t
        .ok(a, "query($w: ID!) { workspace(id: $w) { auditEvents(first: 10) { edges { node { action targetId actor { name } details } } } } }",
            json!({ "w": a.workspace_id.to_string() }))
        .await;
    let actions: Vec<&str> = events["workspace"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["mcp_server.delete", "mcp_server.create"],
        "newest first; refused attempts write nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_page_as_a_relay_connection() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            t.create_server(
                a,
                json!({ "name": format!("s{i}"), "url": format!("http://127.0.0.1:9/s{i}") }),
            )
            .await,
        );
    }
    let q = "query($w: ID!, $after: String) { workspace(id: $w) { mcpServers(first: 2, after: $after) { \
             edges { cursor node { id } } pageInfo { hasNextPage endCursor } } } }";
    let seen: Vec<String> = every_page(&t, a, q)
        .await
        .iter()
        .map(|node| node["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ids);
    let body = t
        .gql(
            Some(&a.token),
            "query($w: ID!) { workspace(id: $w) { mcpServers(first: 101) { edges { cursor } } } }",
            json!({ "w": a.workspace_id.to_string() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

/// Every server of a page shows its own shared grant, on every page, even when another
/// workspace's servers (with grants of their own) were created in between.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_shows_each_servers_own_grant() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let b = t.new_workspace_admin("Other").await;
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let url = |who: &str| format!("http://127.0.0.1:9/{who}{i}");
        mine.push(
            t.create_server(a, json!({ "name": format!("s{i}"), "url": url("a") }))
                .await,
        );
        theirs.push(
            t.create_server(&b, json!({ "name": format!("s{i}"), "url": url("b") }))
                .await,
        );
    }
    let granted = [0, 2, 3];
    for i in granted {
        insert_grant(&t, &mine[i]).await;
    }
    for id in &theirs {
        insert_grant(&t, id).await;
    }
    let q = "query($w: ID!, $after: String) { workspace(id: $w) { mcpServers(first: 4, after: $after) { \
             edges { node { id oauth { issuer } } } pageInfo { hasNextPage endCursor } } } }";
    let seen: Vec<_> = every_page(&t, a, q)
        .await
        .iter()
        .map(|node| {
            (
                node["id"].as_str().unwrap().to_owned(),
                node["oauth"]["issuer"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let expected: Vec<_> = mine
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                granted
                    .contains(&i)
                    .then(|| "https://as.example".to_owned()),
            )
        })
        .collect();
    assert_eq!(seen, expected);
}

/// Every field a page can read in one pass, with an alias, and the shared grant's.
const PLAIN_FIELDS: &str = "__typename id name description url transport protocolVersion \
    toolsFreshUntil enabled timeoutMs retries authType headerNames oauthClientId \
    oauthLenientPkce credentials hasOauthClientSecret hasOauthClientKey connectionStatus \
    authStatus statusReason lastError lastConnectedAt toolCount toolsRefreshedAt createdAt \
    updatedAt label: name oauth { __typename issuer scopes expiresAt lastRefreshedAt \
    registration flowInProgress }";

/// Two servers of the admin's workspace that differ in every field a page shows: `bare`
/// (defaults only) and `full` (every field set, a shared grant, headers, a client secret).
async fn varied_servers(t: &TestApp) -> (String, String) {
    let a = &t.admin;
    let bare = t
        .create_server(
            a,
            json!({ "name": "bare", "url": "http://127.0.0.1:9/bare" }),
        )
        .await;
    let full = t
        .create_server(
            a,
            json!({ "name": "full \"quoted\" ✓", "description": "d", "url": "http://127.0.0.1:9/full",
                    "authType": "OAUTH", "oauthClientId": "cid", "oauthClientSecret": "sec",
                    "timeoutMs": 1234, "retries": 2,
                    "headers": [{ "name": "X-A", "value": "1" }, { "name": "X-B", "value": "2" }] }),
        )
        .await;
    insert_grant(t, &full).await;
    {
        let mut conn = t.app.db.conn().await.unwrap();
        let id = Uuid::parse_str(&full).unwrap();
        let mut row = db::servers::find(&mut conn, id).await.unwrap().unwrap();
        let at = DbTime(db::now());
        row.protocol_version = Some("2025-11-25".into());
        row.tools_fresh_until = Some(at);
        row.last_error = Some("it failed".into());
        row.status_reason = Some(switchboard::db::types::StatusReason::Unreachable);
        row.last_connected_at = Some(at);
        row.tool_count = 7;
        row.tools_refreshed_at = Some(at);
        row.enabled = false;
        assert!(db::servers::save(&mut conn, &row).await.unwrap());
    }
    (bare, full)
}

/// A page answers exactly the same on each of its paths, for servers that differ in every
/// field, with and without a grant: read as only the columns a plain selection shows (with
/// or without fragments), read in one pass over loaded rows (a fragment with a directive
/// around the page's fields), and through each field's resolver (such a fragment around a
/// server's fields, or a field that loads).
#[tokio::test(flavor = "multi_thread")]
async fn a_page_reads_the_same_on_both_paths() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (bare, full) = varied_servers(&t).await;
    let w = json!({ "w": a.workspace_id.to_string() });
    // The page around `node`'s selection, and the page's own fields around that.
    let page = |node: &str| {
        format!(
            "__typename edges {{ __typename cursor node {{ {node} }} }} nodes {{ id name }} \
             pageInfo {{ __typename hasPreviousPage hasNextPage startCursor endCursor }}"
        )
    };
    let query = |args: &str, page: &str| {
        format!(
            "query($w: ID!, $after: String) {{ workspace(id: $w) {{ \
             mcpServers({args}, after: $after) {{ {page} }} }} }}"
        )
    };
    let all = query("first: 10", &page(PLAIN_FIELDS));
    let one_pass = t.ok(a, &all, w.clone()).await;
    let servers = &one_pass["workspace"]["mcpServers"];
    assert_eq!(servers["__typename"], "McpServerConnection");
    let edges = servers["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["__typename"], "McpServerEdge");
    assert_eq!(edges[0]["cursor"], bare.as_str());
    assert_eq!(edges[0]["node"]["id"], bare.as_str());
    assert_eq!(edges[1]["node"]["label"], "full \"quoted\" ✓");
    assert_eq!(
        edges[1]["node"]["oauth"]["scopes"],
        json!(["read", "write"])
    );
    assert_eq!(edges[1]["node"]["headerNames"], json!(["X-A", "X-B"]));
    assert_eq!(edges[1]["node"]["statusReason"], "UNREACHABLE");
    assert_eq!(edges[0]["node"]["oauth"], Value::Null);
    assert_eq!(servers["nodes"][1]["id"], full.as_str());
    assert_eq!(servers["pageInfo"]["endCursor"], full.as_str());
    // Through the executor for the page, then for each server as well.
    let page_fragment = query(
        "first: 10",
        &format!(
            "... on McpServerConnection @include(if: true) {{ {} }}",
            page(PLAIN_FIELDS)
        ),
    );
    assert_eq!(one_pass, t.ok(a, &page_fragment, w.clone()).await);
    let server_fragment = query(
        "first: 10",
        &page(&format!(
            "... on McpServer @include(if: true) {{ {PLAIN_FIELDS} }}"
        )),
    );
    assert_eq!(one_pass, t.ok(a, &server_fragment, w.clone()).await);
    // Fragments as client libraries write them, with keys repeated around them, read the same.
    let with_fragments = format!(
        "{} fragment Card on McpServer {{ __typename id ...Grant {PLAIN_FIELDS} }} \
         fragment Grant on McpServer {{ id name }}",
        query("first: 10", &page("__typename id ...Card"))
    );
    assert_eq!(one_pass, t.ok(a, &with_fragments, w.clone()).await);
    // A second page, both ways.
    let second = json!({ "w": a.workspace_id.to_string(), "after": bare });
    let rest = t
        .ok(a, &query("first: 1", &page(PLAIN_FIELDS)), second.clone())
        .await;
    assert_eq!(
        rest["workspace"]["mcpServers"]["pageInfo"]["hasPreviousPage"],
        true
    );
    assert_eq!(
        rest["workspace"]["mcpServers"]["pageInfo"]["hasNextPage"],
        false
    );
    assert_eq!(rest["workspace"]["mcpServers"]["edges"][0], edges[1]);
    let rest_fragment = query(
        "first: 1",
        &page(&format!(
            "... on McpServer @include(if: true) {{ {PLAIN_FIELDS} }}"
        )),
    );
    assert_eq!(rest, t.ok(a, &rest_fragment, second).await);
    // A field that loads sends the object through the resolvers; the rest reads the same.
    let loading = query(
        "first: 10",
        &page(&format!("{PLAIN_FIELDS} createdBy {{ name }}")),
    );
    let mut with_loading = t.ok(a, &loading, w.clone()).await;
    for edge in with_loading["workspace"]["mcpServers"]["edges"]
        .as_array_mut()
        .unwrap()
    {
        let node = edge["node"].as_object_mut().unwrap();
        assert!(node.remove("createdBy").unwrap()["name"].is_string());
    }
    assert_eq!(one_pass, with_loading);
}

/// Every field a page can read as a column answers as its resolver does, alone and beside
/// others, in more distinct selections than keep their prepared statements: those beyond are
/// prepared for each read and answer the same.
#[tokio::test(flavor = "multi_thread")]
async fn every_column_of_a_page_reads_as_its_resolver() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (bare, full) = varied_servers(&t).await;
    // Two per-user servers: one the admin connected to, with a flow of theirs pending too,
    // and one they did not.
    let per_user = |name: &str| {
        json!({ "name": name, "url": format!("http://127.0.0.1:9/{name}"),
                "authType": "OAUTH", "credentials": "PER_USER" })
    };
    let mine = Uuid::parse_str(&t.create_server(a, per_user("mine")).await).unwrap();
    let theirs = t.create_server(a, per_user("theirs")).await;
    {
        let now = DbTime(db::now());
        let own = OauthGrantRow {
            issuer: Some("https://as.example".into()),
            tokens_sealed: Some("sealed".into()),
            granted_scopes: Some("read own".into()),
            access_expires_at: Some(now),
            token_generation: 1,
            ..OauthGrantRow::empty(DbUuid(mine), Some(DbUuid(a.user_id)), now)
        };
        let mut conn = t.app.db.conn().await.unwrap();
        db::oauth::insert_grant(&mut conn, &own).await.unwrap();
    }
    crate::domain_rules::pending_flow(&t, mine).await;
    let fields = [
        "name",
        "description",
        "url",
        "transport",
        "protocolVersion",
        "toolsFreshUntil",
        "enabled",
        "timeoutMs",
        "retries",
        "authType",
        "headerNames",
        "oauthClientId",
        "oauthLenientPkce",
        "credentials",
        "hasOauthClientSecret",
        "hasOauthClientKey",
        "connectionStatus",
        "authStatus",
        "statusReason",
        "lastError",
        "lastConnectedAt",
        "toolCount",
        "toolsRefreshedAt",
        "createdAt",
        "updatedAt",
        "oauth { issuer }",
        "oauth { scopes }",
        "oauth { expiresAt }",
        "oauth { lastRefreshedAt }",
        "oauth { registration }",
        "myAuthorization { authorized }",
        "myAuthorization { expiresAt }",
        "myAuthorization { scopes }",
        "myAuthorization { authorizedAt }",
        "myAuthorization { __typename flowInProgress }",
    ];
    let query = |node: &str| {
        format!(
            "query($w: ID!) {{ workspace(id: $w) {{ mcpServers(first: 10) {{ \
             edges {{ cursor node {{ {node} }} }} pageInfo {{ endCursor }} }} }} }}"
        )
    };
    let w = json!({ "w": a.workspace_id.to_string() });
    let mut selections = Vec::new();
    for width in 1..=3 {
        for at in 0..fields.len() {
            let chosen: Vec<&str> = (0..width)
                .map(|k| fields[(at + k * 7) % fields.len()])
                .collect();
            selections.push(chosen.join(" "));
        }
    }
    assert!(selections.len() > 64);
    for selection in &selections {
        let plain = t.ok(a, &query(selection), w.clone()).await;
        let resolved = t
            .ok(
                a,
                &query(&format!(
                    "... on McpServer @include(if: true) {{ {selection} }}"
                )),
                w.clone(),
            )
            .await;
        assert_eq!(plain, resolved, "{selection}");
        // Byte for byte, keys in order: the page written as JSON from its cells, and the same
        // page as values the executor writes (a response key given twice makes it merge them,
        // so nothing is written ahead).
        let inner = format!(
            "workspace(id: $w) {{ mcpServers(first: 10) {{ \
             edges {{ cursor node {{ {selection} }} }} pageInfo {{ endCursor }} }} }}"
        );
        let once = format!("query($w: ID!) {{ {inner} }}");
        let twice = format!("query($w: ID!) {{ {inner} {inner} }}");
        let series = "switchboard_server_pages_written_total";
        let before = t.metric(series).await;
        let written = t.gql_text(Some(&a.token), &once, w.clone()).await;
        assert_eq!(t.metric(series).await, before + 1.0, "written: {selection}");
        let merged = t.gql_text(Some(&a.token), &twice, w.clone()).await;
        assert_eq!(t.metric(series).await, before + 1.0, "merged: {selection}");
        assert!(written.starts_with(r#"{"data":{"workspace":{"mcpServers":{"edges":[{"cursor":""#));
        assert_eq!(written, merged, "{selection}");
        let edges = plain["workspace"]["mcpServers"]["edges"]
            .as_array()
            .unwrap();
        let cursors: Vec<&str> = edges
            .iter()
            .map(|e| e["cursor"].as_str().unwrap())
            .collect();
        assert_eq!(
            cursors,
            [&bare, &full, &mine.to_string(), &theirs].map(String::as_str),
            "{selection}"
        );
    }
    // What the per-user servers show, read as columns.
    let own = t
        .ok(
            a,
            &query("myAuthorization { authorized scopes flowInProgress authorizedAt }"),
            w,
        )
        .await;
    let nodes: Vec<&Value> = own["workspace"]["mcpServers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| &edge["node"]["myAuthorization"])
        .collect();
    assert!(nodes[0].is_null() && nodes[1].is_null(), "{own}");
    assert_eq!(nodes[2]["authorized"], true);
    assert_eq!(nodes[2]["scopes"], json!(["read", "own"]));
    assert_eq!(nodes[2]["flowInProgress"], true);
    assert!(nodes[2]["authorizedAt"].is_string());
    assert_eq!(nodes[3]["authorized"], false);
    assert_eq!(nodes[3]["scopes"], json!([]));
    assert_eq!(nodes[3]["flowInProgress"], false);
    assert!(nodes[3]["authorizedAt"].is_null());
}

/// The nodes of every page of `query` (which takes `$w` and `$after` and selects
/// `mcpServers { edges { node } pageInfo { hasNextPage endCursor } }`), in order.
async fn every_page(t: &TestApp, actor: &crate::support::Actor, query: &str) -> Vec<Value> {
    let mut nodes = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = t
            .ok(
                actor,
                query,
                json!({ "w": actor.workspace_id.to_string(), "after": after }),
            )
            .await;
        let page = &data["workspace"]["mcpServers"];
        for edge in page["edges"].as_array().unwrap() {
            nodes.push(edge["node"].clone());
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return nodes;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}
