//! Registrations, grants and flows as three things (existing data carried over by the
//! migration that separated them), and per-user credentials: each member of a workspace
//! connects their own upstream account, and nobody's call ever uses another member's grant.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use switchboard::crypto::SealContext;
use switchboard::db::types::PortableUuid;
use switchboard::db::{self, DbConn, DbUuid, migrations};
use switchboard::domain::oauth::tokens::GrantFrom;
use switchboard::domain::oauth::{Holder, OauthError, registration, tokens};
use uuid::Uuid;

use crate::support::fake_as::{AsConfig, FakeAuthServer};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, echo_tool, whoami_tool};
use crate::support::{Actor, TestApp, error_code};
use switchboard::domain::access::Role;

/// The migration that separated registrations, grants and flows.
const SPLIT: &str = "20261129000000";

const CALL: &str = "mutation($id: ID!, $n: String!, $a: JSON) { callMcpTool(serverId: $id, name: $n, arguments: $a) { content isError } }";

/// Write the old one-row-per-server layout's sealed values, sealed the way the earlier
/// version sealed them (the table `mcp_server_oauth`, the server's id as the row).
async fn write_old_layout(conn: &mut DbConn, server: Uuid, tokens: &str, client: &str) {
    let changed = match conn {
        DbConn::Postgres(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            diesel::sql_query(
                "UPDATE mcp_server_oauth SET tokens_sealed = $1, client_information_sealed = $2 \
                 WHERE server_id = $3",
            )
            .bind::<Text, _>(tokens)
            .bind::<Text, _>(client)
            .bind::<PortableUuid, _>(DbUuid(server))
            .execute(c)
            .await
        }
        DbConn::Sqlite(c) => {
            let c: &mut db::SqliteConn = c;
            diesel::sql_query(
                "UPDATE mcp_server_oauth SET tokens_sealed = ?, client_information_sealed = ? \
                 WHERE server_id = ?",
            )
            .bind::<Text, _>(tokens)
            .bind::<Text, _>(client)
            .bind::<PortableUuid, _>(DbUuid(server))
            .execute(c)
            .await
        }
    };
    assert_eq!(changed.unwrap(), 1, "the shared grant is in the old table");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrating_carries_grants_registrations_and_pending_flows_over() {
    let t = TestApp::start().await;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(&t.admin, json!({ "name": "old", "url": mcp.url() }))
        .await;
    let server_id = Uuid::parse_str(&id).unwrap();
    assert_eq!(t.authorize_in_browser(&t.admin, &id).await.status, 200);
    // A member has a flow pending on a second server when the new version arrives.
    let workspace = t.admin.workspace_id;
    let editor = t.new_member("editor", workspace, Role::Editor).await;
    let second = t
        .create_server(
            &t.admin,
            json!({ "name": "pending", "url": mcp.url() + "?second" }),
        )
        .await;
    let pending = t.popup(&editor, &second).await;

    // What the earlier version held in its one row per server, in the clear.
    let (stored_tokens, stored_client) = {
        let mut conn = t.app.db.conn().await.unwrap();
        let grant = db::oauth::find_grant(&mut conn, server_id, None)
            .await
            .unwrap()
            .unwrap();
        let issuer = grant.issuer.clone().unwrap();
        let registration_row = db::oauth::find_registration(&mut conn, server_id, &issuer)
            .await
            .unwrap()
            .unwrap();
        let tokens = tokens::open_tokens(&t.app, &grant).unwrap();
        let client = registration::open_registration(&t.app, &registration_row).unwrap();
        (
            serde_json::to_string(&tokens).unwrap(),
            serde_json::to_string(&client).unwrap(),
        )
    };

    // Back to the earlier layout, with values sealed as the earlier version sealed them.
    let mut reverted = Vec::new();
    while reverted.last().map(String::as_str) != Some(SPLIT) {
        reverted.push(migrations::revert_last(&t.app.db).await.unwrap());
    }
    {
        let row = server_id.to_string();
        let keys = &t.app.keys;
        let old_tokens = keys.seal_str(
            &stored_tokens,
            SealContext::new("mcp_server_oauth", "tokens_sealed", &row),
        );
        let old_client = keys.seal_str(
            &stored_client,
            SealContext::new("mcp_server_oauth", "client_information_sealed", &row),
        );
        let mut conn = t.app.db.conn().await.unwrap();
        write_old_layout(&mut conn, server_id, &old_tokens, &old_client).await;
    }

    // Forward again: the grant, its registration and the pending flow are all there.
    reverted.reverse();
    assert_eq!(t.app.db.migrate().await.unwrap(), reverted);
    let mut conn = t.app.db.conn().await.unwrap();
    let grant = db::oauth::find_grant(&mut conn, server_id, None)
        .await
        .unwrap()
        .expect("the shared grant was carried over");
    assert_eq!(grant.id.0, server_id, "a carried-over grant keeps its id");
    assert_eq!(grant.user_id, None);
    let registration_row =
        db::oauth::find_registration(&mut conn, server_id, grant.issuer.as_deref().unwrap())
            .await
            .unwrap()
            .expect("the registration was carried over");
    assert!(registration::open_registration(&t.app, &registration_row).is_some());
    drop(conn);

    // The carried-over token calls a tool, and the carried-over registration refreshes it.
    let called = t
        .ok(
            &t.admin,
            CALL,
            json!({ "id": id, "n": "echo", "a": { "text": "hi" } }),
        )
        .await;
    assert_eq!(called["callMcpTool"]["isError"], false, "{called}");
    let server = {
        let mut conn = t.app.db.conn().await.unwrap();
        db::servers::find(&mut conn, server_id)
            .await
            .unwrap()
            .unwrap()
    };
    let refreshes = auth.refresh_count();
    tokens::refresh(&t.app, &server, Holder::Workspace, None)
        .await
        .expect("a refresh with the carried-over registration");
    assert_eq!(auth.refresh_count(), refreshes + 1);

    // The flow that was pending completes.
    let callback =
        switchboard_testkit::popup::load_callback(&pending.callback_url, &pending.begin_cookie)
            .await
            .unwrap();
    assert_eq!(callback.status, 200, "{}", callback.page);
    let mut conn = t.app.db.conn().await.unwrap();
    let grant = db::oauth::find_grant(&mut conn, Uuid::parse_str(&second).unwrap(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.authorized_by, Some(DbUuid(editor.user_id)));
}

// Per-user credentials: each member connects their own account, and their calls act as them.

const WHOAMI: &str =
    "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"whoami\") { content isError } }";
const MINE: &str = "query($id: ID!) { mcpServer(id: $id) { credentials authStatus toolCount \
    myAuthorization { authorized flowInProgress scopes expiresAt authorizedAt } oauth { issuer } } }";
const WHO: &str = "query($id: ID!) { mcpServer(id: $id) { authorizations { edges { node { authorized \
    authorizedAt user { id name } } } } } }";
const DISCONNECT: &str = "mutation($id: ID!, $user: ID, $all: Boolean) { \
    disconnectMcpOauth(serverId: $id, userId: $user, all: $all) { id } }";

struct PerUser {
    t: TestApp,
    auth: FakeAuthServer,
    mcp: FakeMcpServer,
    id: String,
    alice: Actor,
    bob: Actor,
}

/// A per-user server whose upstream names each caller, with two members besides the admin.
async fn per_user() -> PerUser {
    let t = TestApp::start().await;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![echo_tool(), whoami_tool()],
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(
            &t.admin,
            json!({ "name": "mine", "url": mcp.url(), "credentials": "PER_USER" }),
        )
        .await;
    let workspace = t.admin.workspace_id;
    let alice = t.new_member("alice", workspace, Role::Viewer).await;
    let bob = t.new_member("bob", workspace, Role::Editor).await;
    PerUser {
        t,
        auth,
        mcp,
        id,
        alice,
        bob,
    }
}

impl PerUser {
    /// `actor` connects their own account, as `subject` upstream.
    async fn connect(&self, actor: &Actor, subject: &str) {
        self.auth.set_subject(subject);
        let run = self.t.authorize_in_browser(actor, &self.id).await;
        assert_eq!(run.status, 200, "{}", run.page);
    }

    /// Who the upstream says `actor`'s call acts as; the error code when it is refused.
    async fn whoami(&self, actor: &Actor) -> Result<String, String> {
        let body = self
            .t
            .gql(Some(&actor.token), WHOAMI, json!({ "id": self.id }))
            .await;
        match error_code(&body) {
            Some(code) => Err(code.to_owned()),
            None => Ok(body["data"]["callMcpTool"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()),
        }
    }

    async fn mine(&self, actor: &Actor) -> Value {
        self.t.ok(actor, MINE, json!({ "id": self.id })).await["mcpServer"].clone()
    }

    fn server_id(&self) -> Uuid {
        Uuid::parse_str(&self.id).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_member_acts_as_their_own_account_upstream() {
    let w = per_user().await;
    let before = w.mine(&w.alice).await;
    assert_eq!(before["credentials"], "PER_USER");
    assert_eq!(before["myAuthorization"]["authorized"], false, "{before}");
    // A member who has not connected is told to, with the server named.
    let body =
        w.t.gql(Some(&w.alice.token), WHOAMI, json!({ "id": w.id }))
            .await;
    assert_eq!(
        error_code(&body),
        Some("BAD_USER_INPUT"),
        "no catalogue yet: {body}"
    );

    // A viewer connects their own account: starting a flow needs no editor role here.
    w.connect(&w.alice, "alice-upstream").await;
    let after = w.mine(&w.alice).await;
    assert_eq!(after["myAuthorization"]["authorized"], true, "{after}");
    assert_eq!(after["oauth"], Value::Null, "there is no shared grant");
    assert_eq!(
        after["toolCount"], 2,
        "alice's connection listed the catalogue"
    );
    assert_eq!(w.whoami(&w.alice).await.unwrap(), "alice-upstream");

    // Bob sees the catalogue alice's grant listed, but cannot call with her grant.
    let bobs = w.mine(&w.bob).await;
    assert_eq!(bobs["toolCount"], 2);
    assert_eq!(bobs["myAuthorization"]["authorized"], false, "{bobs}");
    let body =
        w.t.gql(Some(&w.bob.token), WHOAMI, json!({ "id": w.id }))
            .await;
    assert_eq!(error_code(&body), Some("REAUTH_REQUIRED"), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["serverId"], w.id,
        "the error names the server to connect: {body}"
    );
    // The admin, who never connected, is refused the same way.
    assert_eq!(w.whoami(&w.t.admin).await.unwrap_err(), "REAUTH_REQUIRED");

    w.connect(&w.bob, "bob-upstream").await;
    assert_eq!(w.whoami(&w.bob).await.unwrap(), "bob-upstream");
    assert_eq!(w.whoami(&w.alice).await.unwrap(), "alice-upstream");
    // Alternating callers never borrow each other's session or token.
    for _ in 0..3 {
        assert_eq!(w.whoami(&w.alice).await.unwrap(), "alice-upstream");
        assert_eq!(w.whoami(&w.bob).await.unwrap(), "bob-upstream");
    }

    // Two members' grants are no shared grant: the workspace's page, read with its shared
    // grants, lists the server once, with none.
    let page =
        w.t.ok(
            &w.alice,
            "query($w: ID!) { workspace(id: $w) { mcpServers(first: 1) { \
             nodes { id oauth { issuer } } pageInfo { hasNextPage } } } }",
            json!({ "w": w.t.admin.workspace_id.to_string() }),
        )
        .await;
    let servers = &page["workspace"]["mcpServers"];
    assert_eq!(servers["nodes"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(servers["nodes"][0]["id"], w.id);
    assert_eq!(servers["nodes"][0]["oauth"], Value::Null, "{page}");
    assert_eq!(servers["pageInfo"]["hasNextPage"], false, "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_mutation_lets_one_member_use_or_remove_another_members_grant() {
    let w = per_user().await;
    w.connect(&w.alice, "alice-upstream").await;
    let alice_refreshes = w.auth.refresh_count_for("alice-upstream");
    let with_a_token = |mcp: &FakeMcpServer| {
        mcp.requests()
            .iter()
            .filter(|r| r.headers.contains_key("authorization"))
            .count()
    };
    let before_bob = with_a_token(&w.mcp);

    // Bob, an editor, has no grant: every way of reaching the server with credentials is
    // refused or acts as nobody, and none touches alice's grant.
    assert_eq!(w.whoami(&w.bob).await.unwrap_err(), "REAUTH_REQUIRED");
    let body =
        w.t.gql(
            Some(&w.bob.token),
            "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
            json!({ "id": w.id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("REAUTH_REQUIRED"), "{body}");
    let started =
        w.t.ok(&w.bob, crate::support::START_OAUTH, json!({ "id": w.id }))
            .await;
    assert_eq!(
        started["startMcpOauth"]["status"], "REDIRECT",
        "alice's grant does not make bob authorized: {started}"
    );
    // Bob's own disconnect removes nothing of alice's; naming her needs the admin role.
    w.t.ok(&w.bob, DISCONNECT, json!({ "id": w.id })).await;
    let body =
        w.t.gql(
            Some(&w.bob.token),
            DISCONNECT,
            json!({ "id": w.id, "user": w.alice.user_id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    // Nor can a non-admin see who connected.
    let body =
        w.t.gql(Some(&w.bob.token), WHO, json!({ "id": w.id }))
            .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");

    // None of bob's attempts reached the server with a token.
    assert_eq!(
        with_a_token(&w.mcp),
        before_bob,
        "bob's attempts sent no token"
    );
    // And every token that ever reached it is alice's.
    assert_eq!(w.whoami(&w.alice).await.unwrap(), "alice-upstream");
    let subjects: Vec<Option<String>> = w
        .mcp
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("authorization"))
        .map(|h| w.auth.token_subject(h.trim_start_matches("Bearer ")))
        .collect();
    assert!(
        subjects
            .iter()
            .all(|s| s.as_deref() == Some("alice-upstream")),
        "only alice's token reached the server: {subjects:?}"
    );
    assert_eq!(w.auth.refresh_count_for("alice-upstream"), alice_refreshes);
    assert!(
        w.auth.revocations().is_empty(),
        "nothing of alice's was revoked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_see_who_connected_and_disconnect_one_member_or_all() {
    let w = per_user().await;
    w.connect(&w.alice, "alice-upstream").await;
    w.connect(&w.bob, "bob-upstream").await;
    let who = w.t.ok(&w.t.admin, WHO, json!({ "id": w.id })).await;
    let names: Vec<&str> = who["mcpServer"]["authorizations"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["user"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"], "{who}");
    let text = who.to_string();
    assert!(!text.contains("token"), "never a token: {text}");

    // The admin disconnects alice: her grant is revoked upstream, bob's still works.
    w.t.ok(
        &w.t.admin,
        DISCONNECT,
        json!({ "id": w.id, "user": w.alice.user_id }),
    )
    .await;
    let revoked: Vec<Option<String>> = w
        .auth
        .revocations()
        .into_iter()
        .map(|r| r.subject)
        .collect();
    assert!(!revoked.is_empty());
    assert!(
        revoked
            .iter()
            .all(|s| s.as_deref() == Some("alice-upstream")),
        "{revoked:?}"
    );
    assert_eq!(w.whoami(&w.alice).await.unwrap_err(), "REAUTH_REQUIRED");
    assert_eq!(w.whoami(&w.bob).await.unwrap(), "bob-upstream");

    // Bob disconnects himself.
    w.t.ok(&w.bob, DISCONNECT, json!({ "id": w.id })).await;
    assert_eq!(w.mine(&w.bob).await["myAuthorization"]["authorized"], false);

    // All at once.
    w.connect(&w.alice, "alice-upstream").await;
    w.connect(&w.bob, "bob-upstream").await;
    let body =
        w.t.gql(
            Some(&w.bob.token),
            DISCONNECT,
            json!({ "id": w.id, "all": true }),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    w.t.ok(&w.t.admin, DISCONNECT, json!({ "id": w.id, "all": true }))
        .await;
    assert_eq!(w.whoami(&w.alice).await.unwrap_err(), "REAUTH_REQUIRED");
    assert_eq!(w.whoami(&w.bob).await.unwrap_err(), "REAUTH_REQUIRED");
    let who = w.t.ok(&w.t.admin, WHO, json!({ "id": w.id })).await;
    assert_eq!(who["mcpServer"]["authorizations"]["edges"], json!([]));

    // Every disconnection is audited naming whose grant it was.
    let audit = w
        .t
        .ok(
            &w.t.admin,
            "query($w: ID!) { workspace(id: $w) { auditEvents(first: 100) { edges { node { action details } } } } }",
            json!({ "w": w.t.admin.workspace_id }),
        )
        .await;
    let named: Vec<String> = audit["workspace"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"] == "mcp_server.oauth_disconnect")
        .map(|e| {
            e["node"]["details"]["user"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    let (alice, bob) = (w.alice.user_id.to_string(), w.bob.user_id.to_string());
    assert_eq!(
        named.iter().filter(|u| **u == alice).count(),
        2,
        "{named:?}"
    );
    assert_eq!(named.iter().filter(|u| **u == bob).count(), 2, "{named:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_member_revokes_exactly_their_grants() {
    let w = per_user().await;
    w.connect(&w.alice, "alice-upstream").await;
    w.connect(&w.bob, "bob-upstream").await;
    w.t.ok(
        &w.t.admin,
        "mutation($w: ID!, $u: ID!) { removeWorkspaceMember(workspaceId: $w, userId: $u) }",
        json!({ "w": w.t.admin.workspace_id, "u": w.alice.user_id }),
    )
    .await;
    let revoked: Vec<Option<String>> = w
        .auth
        .revocations()
        .into_iter()
        .map(|r| r.subject)
        .collect();
    assert!(!revoked.is_empty(), "alice's grant was revoked upstream");
    assert!(
        revoked
            .iter()
            .all(|s| s.as_deref() == Some("alice-upstream")),
        "{revoked:?}"
    );
    let mut conn = w.t.app.db.conn().await.unwrap();
    assert!(
        db::oauth::find_grant(&mut conn, w.server_id(), Some(w.alice.user_id))
            .await
            .unwrap()
            .is_none()
    );
    drop(conn);
    assert_eq!(w.whoami(&w.bob).await.unwrap(), "bob-upstream");
    // Coming back, she starts from nothing.
    let workspace = w.t.admin.workspace_id;
    w.t.ok(
        &w.t.admin,
        "mutation($w: ID!, $u: ID!) { addWorkspaceMember(workspaceId: $w, userId: $u, role: VIEWER) { role } }",
        json!({ "w": workspace, "u": w.alice.user_id }),
    )
    .await;
    assert_eq!(w.whoami(&w.alice).await.unwrap_err(), "REAUTH_REQUIRED");
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_credential_mode_revokes_the_grants_of_the_old_one() {
    let w = per_user().await;
    w.connect(&w.alice, "alice-upstream").await;
    const UPDATE: &str = "mutation($id: ID!, $c: McpCredentialMode) { updateMcpServer(id: $id, input: { credentials: $c }) { credentials authStatus statusReason } }";
    // A viewer cannot change it.
    let body =
        w.t.gql(
            Some(&w.alice.token),
            UPDATE,
            json!({ "id": w.id, "c": "SHARED" }),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let updated =
        w.t.ok(&w.bob, UPDATE, json!({ "id": w.id, "c": "SHARED" }))
            .await;
    assert_eq!(updated["updateMcpServer"]["credentials"], "SHARED");
    assert_eq!(
        updated["updateMcpServer"]["statusReason"],
        "CREDENTIALS_CHANGED"
    );
    assert!(
        w.auth
            .revocations()
            .iter()
            .any(|r| r.subject.as_deref() == Some("alice-upstream"))
    );
    assert_eq!(w.whoami(&w.alice).await.unwrap_err(), "REAUTH_REQUIRED");
    // Shared again: one grant serves everyone, as whoever authorized.
    w.connect(&w.bob, "team-account").await;
    assert_eq!(w.whoami(&w.alice).await.unwrap(), "team-account");
    assert_eq!(w.mine(&w.alice).await["myAuthorization"], Value::Null);

    // Per-user credentials need OAuth.
    let headers = w
        .t
        .gql(
            Some(&w.t.admin.token),
            "mutation($w: ID!, $u: String!) { createMcpServer(input: { workspaceId: $w, name: \"h\", url: $u, \
             headers: [{ name: \"X-Key\", value: \"k\" }], credentials: PER_USER }) { server { id } } }",
            json!({ "w": w.t.admin.workspace_id, "u": w.mcp.url() + "?headers" }),
        )
        .await;
    assert_eq!(error_code(&headers), Some("BAD_USER_INPUT"), "{headers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_of_one_members_grant_reaches_only_their_subscriptions() {
    use crate::subscriptions::{connect, next};
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let w = per_user().await;
    let subscription = "subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId personal \
        current { authStatus reason } } }";
    let mut sockets = Vec::new();
    for actor in [&w.alice, &w.bob] {
        let mut socket = connect(
            &w.t,
            "graphql-transport-ws",
            json!({ "Authorization": format!("Bearer {}", actor.token) }),
        )
        .await;
        assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
        socket
            .send(Message::text(
                json!({ "id": "1", "type": "subscribe", "payload": {
                    "query": subscription, "variables": { "w": w.t.admin.workspace_id } } })
                .to_string(),
            ))
            .await
            .unwrap();
        sockets.push(socket);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    w.connect(&w.alice, "alice-upstream").await;

    // Alice hears her own flow start and complete; the catalogue listing that followed is the
    // server's, which everyone hears.
    let mut alice_events = Vec::new();
    while alice_events.len() < 3 {
        let message = next(&mut sockets[0]).await.unwrap();
        alice_events.push(message["payload"]["data"]["mcpServerStatus"].clone());
    }
    assert_eq!(alice_events[0]["personal"], true, "{alice_events:?}");
    assert_eq!(alice_events[0]["current"]["reason"], "FLOW_STARTED");
    assert_eq!(alice_events[1]["personal"], true);
    assert_eq!(alice_events[1]["current"]["authStatus"], "AUTHORIZED");
    assert_eq!(alice_events[2]["personal"], false, "{alice_events:?}");

    // Bob hears only the server's own change.
    let message = next(&mut sockets[1]).await.unwrap();
    let event = &message["payload"]["data"]["mcpServerStatus"];
    assert_eq!(event["personal"], false, "{event}");
    let nothing_more =
        tokio::time::timeout(std::time::Duration::from_millis(500), next(&mut sockets[1])).await;
    assert!(nothing_more.is_err(), "bob heard more: {nothing_more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_members_grants_expiring_at_once_refresh_once_each_across_two_processes() {
    let w = per_user().await;
    w.connect(&w.alice, "alice-upstream").await;
    w.connect(&w.bob, "bob-upstream").await;
    // Both access tokens expire at once.
    let mut conn = w.t.app.db.conn().await.unwrap();
    for user in [w.alice.user_id, w.bob.user_id] {
        let mut grant = db::oauth::find_grant(&mut conn, w.server_id(), Some(user))
            .await
            .unwrap()
            .unwrap();
        grant.access_expires_at = Some(db::DbTime(db::now() - chrono::TimeDelta::seconds(5)));
        db::oauth::save_grant(&mut conn, &grant).await.unwrap();
    }
    let server = db::servers::find(&mut conn, w.server_id())
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    let before = (
        w.auth.refresh_count_for("alice-upstream"),
        w.auth.refresh_count_for("bob-upstream"),
    );

    // A second process on the same database, and a storm of callers on both.
    let replica = switchboard::App::build(w.t.app.config.clone(), w.t.app.keys.clone())
        .await
        .unwrap();
    let apps = [w.t.app.clone(), replica.clone()];
    let calls = (0..40).map(|i| {
        let app = apps[i % 2].clone();
        let server = server.clone();
        let user = if i % 4 < 2 {
            w.alice.user_id
        } else {
            w.bob.user_id
        };
        tokio::spawn(async move {
            let access =
                tokens::access_token(&app, &server, Holder::User(user), GrantFrom::Storage)
                    .await
                    .unwrap();
            (user, access.token.expose().to_owned())
        })
    });
    let results: Vec<(Uuid, String)> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        w.auth.refresh_count_for("alice-upstream"),
        before.0 + 1,
        "exactly one refresh of alice's grant"
    );
    assert_eq!(
        w.auth.refresh_count_for("bob-upstream"),
        before.1 + 1,
        "exactly one refresh of bob's grant"
    );
    // Everyone got their own member's new token.
    for (user, token) in results {
        let expected = if user == w.alice.user_id {
            "alice-upstream"
        } else {
            "bob-upstream"
        };
        assert_eq!(w.auth.token_subject(&token).as_deref(), Some(expected));
    }
}

/// A tool call reads its grant with its server; the token comes from that grant only when it
/// is this server's grant of this holder, and from storage otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn a_grant_read_with_the_server_serves_only_its_own_holder() {
    let w = per_user().await;
    w.connect(&w.alice, "alice-upstream").await;
    w.connect(&w.bob, "bob-upstream").await;
    let mut conn = w.t.app.db.conn().await.unwrap();
    let alices = db::oauth::find_grant(&mut conn, w.server_id(), Some(w.alice.user_id))
        .await
        .unwrap()
        .unwrap();
    let server = db::servers::find(&mut conn, w.server_id())
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    let auth = &w.auth;
    let token = |holder: Holder, from: GrantFrom| {
        let (app, server) = (w.t.app.clone(), server.clone());
        async move {
            let access = tokens::access_token(&app, &server, holder, from).await;
            access.map(|access| auth.token_subject(access.token.expose()))
        }
    };
    let read = |grant: &db::models::OauthGrantRow| GrantFrom::Read(Some(Box::new(grant.clone())));

    // Alice's grant, given for Alice: her token, as from storage.
    let given = token(Holder::User(w.alice.user_id), read(&alices))
        .await
        .unwrap();
    assert_eq!(given.as_deref(), Some("alice-upstream"));
    // Alice's grant, given for Bob or for the workspace: never used for them.
    let bobs = token(Holder::User(w.bob.user_id), read(&alices))
        .await
        .unwrap();
    assert_eq!(bobs.as_deref(), Some("bob-upstream"));
    let shared = token(Holder::Workspace, read(&alices)).await;
    assert!(
        matches!(shared, Err(OauthError::NotAuthorized)),
        "the workspace holds no grant of this server: {shared:?}"
    );
    // No grant found with the server: not authorized, without another read.
    let none = token(Holder::User(w.alice.user_id), GrantFrom::Read(None)).await;
    assert!(matches!(none, Err(OauthError::NotAuthorized)), "{none:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_whose_upstream_catalogue_differs_sees_and_calls_their_own() {
    use crate::support::fake_mcp::tool;
    const TOOLS: &str =
        "query($id: ID!) { mcpServer(id: $id) { toolCount tools { edges { node { name } } } } }";
    const CALL: &str =
        "mutation($id: ID!, $n: String!) { callMcpTool(serverId: $id, name: $n) { isError } }";
    let w = per_user().await;
    let names = |actor: &Actor| {
        let t = &w.t;
        let id = w.id.clone();
        let token = actor.token.clone();
        async move {
            let body = t.gql(Some(&token), TOOLS, json!({ "id": id })).await;
            body["data"]["mcpServer"]["tools"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let call = |actor: &Actor, name: &str| {
        let t = &w.t;
        let variables = json!({ "id": w.id, "n": name });
        let token = actor.token.clone();
        async move {
            let body = t.gql(Some(&token), CALL, variables).await;
            error_code(&body).map(str::to_owned)
        }
    };

    // Alice lists first: hers is the server's catalogue, which everyone sees.
    w.connect(&w.alice, "alice-upstream").await;
    // Bob's account sees other tools upstream.
    w.mcp
        .set_tools_for("bob-upstream", vec![whoami_tool(), tool("extra")]);
    w.connect(&w.bob, "bob-upstream").await;
    assert_eq!(names(&w.bob).await, ["extra", "whoami"]);
    assert_eq!(names(&w.alice).await, ["echo", "whoami"]);
    assert_eq!(
        names(&w.t.admin).await,
        ["echo", "whoami"],
        "not connected: the server's"
    );
    assert_eq!(call(&w.bob, "extra").await, None);
    assert_eq!(
        call(&w.bob, "echo").await.as_deref(),
        Some("BAD_USER_INPUT")
    );
    assert_eq!(
        call(&w.alice, "extra").await.as_deref(),
        Some("BAD_USER_INPUT")
    );
    assert_eq!(call(&w.alice, "echo").await, None);

    // The server's catalogue follows the member who listed it.
    w.mcp
        .set_tools(vec![echo_tool(), whoami_tool(), tool("new")]);
    w.t.ok(
        &w.alice,
        "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
        json!({ "id": w.id }),
    )
    .await
    .to_string();
    assert_eq!(names(&w.t.admin).await, ["echo", "new", "whoami"]);
    assert_eq!(
        names(&w.bob).await,
        ["extra", "whoami"],
        "bob's own stays his"
    );

    // When bob's listing is the server's again, he sees the server's.
    w.mcp.set_tools_for(
        "bob-upstream",
        vec![echo_tool(), whoami_tool(), tool("new")],
    );
    w.t.ok(
        &w.bob,
        "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
        json!({ "id": w.id }),
    )
    .await;
    assert_eq!(names(&w.bob).await, ["echo", "new", "whoami"]);
}
