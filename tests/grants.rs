//! Registrations, grants and flows as three things: existing data carried over by the
//! migration that separated them.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use serde_json::json;
use switchboard::crypto::SealContext;
use switchboard::db::types::PortableUuid;
use switchboard::db::{self, DbConn, DbUuid, migrations};
use switchboard::domain::oauth::{Holder, registration, tokens};
use uuid::Uuid;

use crate::support::TestApp;
use crate::support::fake_as::{AsConfig, FakeAuthServer};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig};
use switchboard::domain::access::Role;

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
    let reverted = migrations::revert_last(&t.app.db).await.unwrap();
    assert_eq!(reverted, "20261129000000");
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
    assert_eq!(t.app.db.migrate().await.unwrap(), vec!["20261129000000"]);
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
