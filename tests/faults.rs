//! The database failing under load. Ignored by default: it restarts the PostgreSQL cluster of
//! `scripts/with-postgres.sh`, which would disturb every other test using it; `.ci/run` runs it
//! alone (`cargo test --test main faults:: -- --ignored` inside `with-postgres.sh`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use switchboard::db;
use switchboard::domain::oauth::{Holder, tokens};
use uuid::Uuid;

use crate::support::TestApp;
use crate::support::fake_as::{AsConfig, FakeAuthServer};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, echo_tool};

/// PostgreSQL restarts (cutting every connection) while many refreshes of rotating refresh
/// tokens are under way. No grant is lost: afterwards every stored token opens, every stored
/// refresh token is the one the authorization server knows (a refresh succeeds), and the
/// server answers requests and tool calls again without a restart of its own.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "restarts the PostgreSQL cluster; run alone by .ci/run through scripts/with-postgres.sh"]
async fn a_database_restart_during_a_refresh_storm_loses_no_grant() {
    let restart = std::env::var("SWITCHBOARD_TEST_PG_RESTART")
        .expect("SWITCHBOARD_TEST_PG_RESTART: run this through scripts/with-postgres.sh");
    let t = TestApp::start().await;
    assert!(t.app.db.is_postgres(), "this test needs PostgreSQL");
    let auth = FakeAuthServer::start(AsConfig {
        rotate_refresh_tokens: true,
        ..AsConfig::default()
    })
    .await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let mut servers = Vec::new();
    for i in 0..6 {
        let id = t
            .create_server(
                &t.admin,
                json!({ "name": format!("s{i}"), "url": format!("{}?n={i}", mcp.url()) }),
            )
            .await;
        assert_eq!(t.authorize_in_browser(&t.admin, &id).await.status, 200);
        servers.push(Uuid::parse_str(&id).expect("id"));
    }

    // The storm: every server refreshed over and over by several callers at once.
    let stop = Arc::new(AtomicBool::new(false));
    let refreshed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut storm = Vec::new();
    for server_id in servers.iter().copied().cycle().take(servers.len() * 3) {
        let (app, stop, refreshed, failed) = (
            t.app.clone(),
            stop.clone(),
            refreshed.clone(),
            failed.clone(),
        );
        storm.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let server = async {
                    let mut conn = app.db.conn().await.ok()?;
                    db::servers::find(&mut conn, server_id).await.ok()?
                }
                .await;
                let outcome = match server {
                    Some(server) => tokens::refresh(&app, &server, Holder::Workspace, None)
                        .await
                        .is_ok(),
                    None => false,
                };
                let counter = if outcome { &refreshed } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let warm = tokio::time::Instant::now() + Duration::from_secs(10);
    while refreshed.load(Ordering::Relaxed) < 20 {
        assert!(
            tokio::time::Instant::now() < warm,
            "the storm did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_restart = refreshed.load(Ordering::Relaxed);
    let status = tokio::task::spawn_blocking(move || std::process::Command::new(restart).status())
        .await
        .expect("restart task")
        .expect("run the restart command");
    assert!(status.success(), "the cluster restarted");
    // Let the storm go on against the restarted database for a while.
    let after = tokio::time::Instant::now() + Duration::from_secs(30);
    while refreshed.load(Ordering::Relaxed) < before_restart + 20 {
        assert!(
            tokio::time::Instant::now() < after,
            "refreshes never succeeded again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in storm {
        task.await.expect("storm task");
    }

    // No grant lost: each opens, and its refresh token is the live one at the server.
    for server_id in &servers {
        let (server, grant) = {
            let mut conn = t
                .app
                .db
                .conn()
                .await
                .expect("a connection after the restart");
            let server = db::servers::find(&mut conn, *server_id)
                .await
                .expect("read")
                .expect("server");
            let grant = db::oauth::find_grant(&mut conn, *server_id, None)
                .await
                .expect("read")
                .expect("grant");
            (server, grant)
        };
        assert!(
            tokens::open_tokens(&t.app, &grant).is_some_and(|t| t.refresh_token.is_some()),
            "{server_id}: the stored tokens open"
        );
        assert_eq!(
            grant.refresh_lease_owner, None,
            "{server_id}: no lease left"
        );
        let refreshed = tokens::refresh(&t.app, &server, Holder::Workspace, None).await;
        assert!(
            refreshed.is_ok(),
            "{server_id}: the stored refresh token still works: {:?}",
            refreshed.err()
        );
        let call = t
            .ok(
                &t.admin,
                "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"echo\", arguments: { text: \"hi\" }) { isError } }",
                json!({ "id": server_id.to_string() }),
            )
            .await;
        assert_eq!(call["callMcpTool"]["isError"], false, "{call}");
    }
    assert!(
        failed.load(Ordering::Relaxed) > 0,
        "the restart was felt by the storm (else the test proved nothing)"
    );
}
