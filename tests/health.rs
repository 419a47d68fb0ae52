//! Background health checks: each due server is checked once per interval, across replicas;
//! the outcome moves the status.

use std::time::Duration;

use crate::support::TestApp;
use crate::support::fake_mcp::{FakeMcpServer, McpConfig, Mode};
use serde_json::json;
use switchboard::domain::health;

const STATUS: &str =
    "query($id: ID!) { mcpServer(id: $id) { connectionStatus authStatus toolCount lastError } }";

#[tokio::test(flavor = "multi_thread")]
async fn rounds_check_due_servers_once_and_move_the_status() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mut fakes = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let fake = FakeMcpServer::start(McpConfig::default()).await;
        ids.push(
            t.create_server(
                a,
                json!({ "name": format!("s{i}"), "url": fake.url(), "authType": "NONE" }),
            )
            .await,
        );
        fakes.push(fake);
    }
    // A server waiting for authorization is checked too, but without a grant its check stops
    // before sending anything, and its status stays as it is.
    let waiting = t
        .create_server(
            a,
            json!({ "name": "oauth", "url": "http://127.0.0.1:9/never", "authType": "OAUTH" }),
        )
        .await;

    let interval = Duration::from_secs(60);
    assert_eq!(health::run_round(&t.app, interval, 2).await.unwrap(), 4);
    let s = t.ok(a, STATUS, json!({ "id": waiting })).await;
    assert_eq!(s["mcpServer"]["connectionStatus"], "DISCONNECTED", "{s}");
    for (fake, id) in fakes.iter().zip(&ids) {
        assert_eq!(fake.count("tools/list"), 1);
        let s = t.ok(a, STATUS, json!({ "id": id })).await;
        assert_eq!(s["mcpServer"]["connectionStatus"], "CONNECTED", "{s}");
        assert_eq!(s["mcpServer"]["toolCount"], 2);
    }
    assert_eq!(
        health::run_round(&t.app, interval, 2).await.unwrap(),
        0,
        "nothing is due again within the interval"
    );

    // Three failed rounds in a row set ERROR; the next good one recovers.
    fakes[0].set_mode(Mode::ServerError);
    for round in 1..=3 {
        health::run_round(&t.app, Duration::ZERO, 2).await.unwrap();
        let s = t.ok(a, STATUS, json!({ "id": ids[0] })).await;
        let expected = if round < 3 { "CONNECTED" } else { "ERROR" };
        assert_eq!(
            s["mcpServer"]["connectionStatus"], expected,
            "round {round}: {s}"
        );
    }
    fakes[0].set_mode(Mode::Normal);
    health::run_round(&t.app, Duration::ZERO, 2).await.unwrap();
    let s = t.ok(a, STATUS, json!({ "id": ids[0] })).await;
    assert_eq!(s["mcpServer"]["connectionStatus"], "CONNECTED", "{s}");
}

/// Two replicas on one PostgreSQL running a round at the same time check each server once.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_the_work() {
    let t = TestApp::start().await;
    if !t.app.db.is_postgres() {
        return; // Leasing across replicas needs PostgreSQL; SQLite serves one process.
    }
    let replica = switchboard::App::build(t.app.config.clone(), t.app.keys.clone())
        .await
        .unwrap();
    let mut fakes = Vec::new();
    for i in 0..12 {
        let fake = FakeMcpServer::start(McpConfig::default()).await;
        t.create_server(
            &t.admin,
            json!({ "name": format!("s{i}"), "url": fake.url(), "authType": "NONE" }),
        )
        .await;
        fakes.push(fake);
    }
    let interval = Duration::from_secs(60);
    let (a, b) = tokio::join!(
        health::run_round(&t.app, interval, 3),
        health::run_round(&replica, interval, 3)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a + b, 12, "every server claimed once ({a} + {b})");
    for fake in &fakes {
        assert_eq!(fake.count("tools/list"), 1);
    }
}
