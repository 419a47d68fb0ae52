//! `GET /metrics`: it moves with what the server does, asks for the metrics token when one is
//! configured, and lives on a listener of its own when asked to.

use crate::support::fake_mcp::{FakeMcpServer, McpConfig};
use crate::support::{Options, TestApp, metric_in, test_config_at, test_database};
use serde_json::json;
use switchboard::App;
use switchboard::crypto::{KeyRing, Secret};

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
    assert_eq!(metric_in(&before, "switchboard_mcp_sessions_open"), 0.0);
    assert_eq!(
        metric_in(&after, "switchboard_mcp_sessions_open"),
        1.0,
        "the calls share one kept session: {after}"
    );
    assert!(
        after.contains("# TYPE switchboard_tool_call_duration_seconds histogram"),
        "{after}"
    );
    assert_eq!(
        metric_in(&after, "switchboard_tool_calls_total{outcome=\"ok\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        metric_in(
            &after,
            "switchboard_tool_calls_total{outcome=\"tool_error\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_in(&after, "switchboard_tool_calls_total{outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(
        metric_in(&after, "switchboard_tool_call_duration_seconds_count"),
        3.0
    );
    assert!(
        metric_in(&after, "switchboard_graphql_requests_total")
            >= metric_in(&before, "switchboard_graphql_requests_total") + 5.0
    );
    assert_eq!(
        metric_in(
            &after,
            "switchboard_graphql_errors_total{code=\"BAD_USER_INPUT\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_in(
            &after,
            "switchboard_servers{connection_status=\"connected\",auth_status=\"not_required\"}"
        ),
        1.0,
        "{after}"
    );
    assert_eq!(metric_in(&after, "switchboard_open_subscriptions"), 0.0);
    assert!(
        metric_in(&after, "switchboard_db_statements_total")
            > metric_in(&before, "switchboard_db_statements_total"),
        "the statement counter moves with the requests: {after}"
    );
    assert!(!after.contains(&id), "no ids in labels");
}

/// The pages of servers read as columns and as whole rows while `query` runs: `(columns, rows)`.
async fn pages_read(t: &TestApp, query: &str) -> (f64, f64) {
    let scrape = || async {
        (
            t.metric("switchboard_server_pages_total{read=\"columns\"}")
                .await,
            t.metric("switchboard_server_pages_total{read=\"rows\"}")
                .await,
        )
    };
    let query = format!("query($w: ID!) {{ workspace(id: $w) {{ mcpServers(first: 10) {{ {query}");
    let before = scrape().await;
    let data = t
        .ok(&t.admin, &query, json!({ "w": t.admin.workspace_id }))
        .await;
    let after = scrape().await;
    let servers = &data["workspace"]["mcpServers"];
    assert!(servers.is_object(), "{data}");
    (after.0 - before.0, after.1 - before.1)
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_servers_are_counted_by_how_they_were_read() {
    let t = TestApp::start().await;
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    t.create_server(
        &t.admin,
        json!({ "name": "m", "url": mcp.url(), "authType": "NONE" }),
    )
    .await;

    // A dashboard's page, and one written with fragments as client libraries write them:
    // columns.
    let dashboard = "edges { node { id name url authType connectionStatus authStatus \
                     toolCount oauth { expiresAt } } } pageInfo { hasNextPage endCursor } } } }";
    assert_eq!(pages_read(&t, dashboard).await, (1.0, 0.0));
    let fragments = "nodes { ...S id } } } } fragment S on McpServer { id name ...M } \
                     fragment M on McpServer { credentials \
                     myAuthorization { authorized flowInProgress } }";
    assert_eq!(pages_read(&t, fragments).await, (1.0, 0.0));
    // A field that is not a column (its creator, its tools) reads whole rows.
    let creator = "nodes { id createdBy { id } } } } }";
    assert_eq!(pages_read(&t, creator).await, (0.0, 1.0));
    let tools = "nodes { name tools(first: 5) { edges { node { name } } } } } } }";
    assert_eq!(pages_read(&t, tools).await, (0.0, 1.0));
}

const TOKEN: &str = "scrape-token-5f1e0c9a";

/// Switchboard with a metrics token, and with the metrics on a listener of their own when
/// `separate`: the base URLs of the main listener and of the one serving the metrics.
struct Scraped {
    main: String,
    metrics: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn serve(token: Option<&str>, separate: bool) -> Scraped {
    let dir = tempfile::tempdir().unwrap();
    let database = test_database(dir.path()).await;
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let main_addr = main.local_addr().unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let mut config = test_config_at(database, &Options::default(), main_addr);
    config.metrics_token = token.map(Secret::new);
    config.metrics_bind = separate.then_some(metrics_addr);
    let app = App::build(config, KeyRing::generate()).await.unwrap();
    app.db.migrate().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(switchboard::http::serve(app.clone(), main, async move {
        stopped.await;
        let _ = stop_metrics.send(true);
    }));
    if separate {
        let mut metrics_stopped = metrics_stopped;
        tokio::spawn(switchboard::http::metrics::serve(
            app,
            metrics,
            async move {
                let _ = metrics_stopped.wait_for(|stop| *stop).await;
            },
        ));
    }
    Scraped {
        main: format!("http://{main_addr}"),
        metrics: format!("http://{}", if separate { metrics_addr } else { main_addr }),
        _stop: stop,
        _dir: dir,
    }
}

async fn scrape(base: &str, authorization: Option<&str>) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metrics_token_is_required_when_configured() {
    let s = serve(Some(TOKEN), false).await;
    for authorization in [
        None,
        Some("Bearer wrong-token-0000000000"),
        Some("Bearer scrape-token-5f1e0c9"),
        Some("Bearer scrape-token-5f1e0c9a0"),
        Some("Basic c2NyYXBlOnRva2Vu"),
        Some(TOKEN),
    ] {
        let (status, challenge, body) = scrape(&s.metrics, authorization).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"metrics\""));
        assert!(!body.contains("switchboard_"), "{body}");
    }
    let (status, _, body) = scrape(&s.metrics, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("# TYPE switchboard_graphql_requests_total counter"),
        "{body}"
    );
    let (status, _, _) = scrape(&s.metrics, Some(&format!("bearer  {TOKEN} "))).await;
    assert_eq!(status, 200, "the scheme is case-insensitive");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_settings_the_metrics_stay_open_on_the_main_listener() {
    let s = serve(None, false).await;
    let (status, challenge, body) = scrape(&s.main, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(challenge, None);
    assert!(body.contains("switchboard_db_statements_total"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_separate_metrics_listener_serves_them_alone() {
    let s = serve(None, true).await;
    assert_ne!(s.main, s.metrics);
    let (status, _, body) = scrape(&s.metrics, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("switchboard_db_statements_total"), "{body}");
    let (status, _, body) = scrape(&s.main, None).await;
    assert_eq!(
        status, 404,
        "the main listener no longer serves them: {body}"
    );
    // The metrics listener serves nothing else.
    for path in ["/graphql", "/healthz", "/"] {
        let response = reqwest::get(format!("{}{path}", s.metrics)).await.unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
    let healthz = reqwest::get(format!("{}/healthz", s.main)).await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);

    // With a token too, the separate listener asks for it.
    let s = serve(Some(TOKEN), true).await;
    assert_eq!(scrape(&s.metrics, None).await.0, 401);
    assert_eq!(
        scrape(&s.metrics, Some(&format!("Bearer {TOKEN}"))).await.0,
        200
    );
    assert_eq!(
        scrape(&s.main, Some(&format!("Bearer {TOKEN}"))).await.0,
        404
    );
}
