//! `GET /metrics` moves with what the server does.

use crate::support::TestApp;
use crate::support::fake_mcp::{FakeMcpServer, McpConfig};
use serde_json::json;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_after_calls() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let scrape = || async {
        reqwest::get(t.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;

    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let id = t
        .create_server(
            a,
            json!({ "name": "m", "url": mcp.url(), "authType": "NONE" }),
        )
        .await;
    t.ok(
        a,
        "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let call =
        "mutation($id: ID!, $n: String!) { callMcpTool(serverId: $id, name: $n) { isError } }";
    t.ok(a, call, json!({ "id": id, "n": "echo" })).await;
    t.ok(a, call, json!({ "id": id, "n": "fail" })).await;
    t.gql(Some(&a.token), call, json!({ "id": id, "n": "missing" }))
        .await;

    let after = scrape().await;
    assert_eq!(value(&before, "switchboard_mcp_sessions_open"), 0.0);
    assert_eq!(
        value(&after, "switchboard_mcp_sessions_open"),
        1.0,
        "the calls share one kept session: {after}"
    );
    assert!(
        after.contains("# TYPE switchboard_tool_call_duration_seconds histogram"),
        "{after}"
    );
    assert_eq!(
        value(&after, "switchboard_tool_calls_total{outcome=\"ok\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "switchboard_tool_calls_total{outcome=\"tool_error\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&after, "switchboard_tool_calls_total{outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(
        value(&after, "switchboard_tool_call_duration_seconds_count"),
        3.0
    );
    assert!(
        value(&after, "switchboard_graphql_requests_total")
            >= value(&before, "switchboard_graphql_requests_total") + 5.0
    );
    assert_eq!(
        value(
            &after,
            "switchboard_graphql_errors_total{code=\"BAD_USER_INPUT\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "switchboard_servers{connection_status=\"connected\",auth_status=\"not_required\"}"
        ),
        1.0,
        "{after}"
    );
    assert_eq!(value(&after, "switchboard_open_subscriptions"), 0.0);
    assert!(
        value(&after, "switchboard_db_statements_total")
            > value(&before, "switchboard_db_statements_total"),
        "the statement counter moves with the requests: {after}"
    );
    assert!(!after.contains(&id), "no ids in labels");
}
