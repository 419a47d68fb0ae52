//! The API contract and its guard rails: the committed SDL, query limits, the body limit,
//! CORS, health endpoints, GraphiQL, and that a page of servers costs a constant number of
//! SQL statements.

use crate::support::{Options, TestApp, error_code};
use serde_json::{Value, json};

#[test]
fn committed_schema_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is committed");
    let current = switchboard::graphql::sdl();
    assert!(
        committed == current,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql` and review the diff"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_and_complexity_limits() {
    let t = TestApp::start_with(Options {
        max_query_depth: 4,
        max_query_complexity: 200,
        ..Default::default()
    })
    .await;
    let a = &t.admin;
    let deep = "query($w: ID!) { workspace(id: $w) { mcpServers { edges { node { workspace { name } } } } } }";
    let body = t
        .gql(
            Some(&a.token),
            deep,
            json!({ "w": a.workspace_id.to_string() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested"),
        "{body}"
    );

    let wide = "query($w: ID!) { workspace(id: $w) { mcpServers(first: 100) { edges { node { id name url } } } } }";
    let body = t
        .gql(
            Some(&a.token),
            wide,
            json!({ "w": a.workspace_id.to_string() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("complex"),
        "{body}"
    );
}

/// Every failure of `POST /graphql`, including those that never reach the schema, answers as
/// a GraphQL response with `extensions.code` and no internal text.
#[tokio::test(flavor = "multi_thread")]
async fn every_http_failure_is_a_graphql_error_with_a_code() {
    let t = TestApp::start_with(Options {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    // One connection per request: a body refused before it was read ends its connection, which
    // a pooled client could otherwise pick up again for the next request.
    let post = |body: reqwest::Body, content_type: &'static str| {
        t.http
            .post(t.url("/graphql"))
            .bearer_auth(&t.admin.token)
            .header("content-type", content_type)
            .header("connection", "close")
            .body(body)
            .send()
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON body");
        (status, body)
    };
    let expect = |(status, body): (u16, Value), want_status: u16, code: &str, text: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(error_code(&body), Some(code), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(text), "{message}");
        // No parser internals (positions, Rust type names) reach the caller.
        assert!(
            !message.contains("line") && !message.contains("InvalidRequest"),
            "{message}"
        );
    };

    let big = json!({ "query": "{ viewer { id } }", "variables": { "pad": "x".repeat(10_000) } })
        .to_string();
    // With a Content-Length, and streamed without one.
    expect(
        answer(post(big.clone().into(), "application/json").await.unwrap()).await,
        413,
        "BAD_USER_INPUT",
        "larger than 4096 bytes",
    );
    let chunks = futures_util::stream::iter(
        big.into_bytes()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    expect(
        answer(
            post(reqwest::Body::wrap_stream(chunks), "application/json")
                .await
                .unwrap(),
        )
        .await,
        413,
        "BAD_USER_INPUT",
        "larger than",
    );
    expect(
        answer(
            post(
                r#"{"query": "{ viewer { id } }", 5: 1}"#.into(),
                "application/json",
            )
            .await
            .unwrap(),
        )
        .await,
        400,
        "BAD_USER_INPUT",
        "not a GraphQL request in JSON",
    );
    expect(
        answer(
            post(
                "query={viewer{id}}".into(),
                "application/x-www-form-urlencoded",
            )
            .await
            .unwrap(),
        )
        .await,
        415,
        "BAD_USER_INPUT",
        "application/json",
    );
    let ok = answer(
        post(
            r#"{"query": "{ viewer { id } }"}"#.into(),
            "application/json; charset=utf-8",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(ok.0, 200, "{}", ok.1);

    // A missing and a bad token get the same status, with the same code.
    let missing = t.gql_raw(None, "{ viewer { id } }", json!({})).await;
    let bad = t
        .gql_raw(Some("sbt_nope"), "{ viewer { id } }", json!({}))
        .await;
    for (status, body) in [missing, bad] {
        assert_eq!(status, 401, "{body}");
        assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    }
    // What needs no caller still answers without a token.
    let (status, body) = t.gql_raw(None, "{ __typename }", json!({})).await;
    assert_eq!(
        (status, &body["data"]["__typename"]),
        (200, &json!("QueryRoot")),
        "{body}"
    );
}

/// Anything unexpected is `INTERNAL` with a correlation id (also in the log), never its text:
/// here, a stored header value that no longer opens (a lost key).
#[tokio::test(flavor = "multi_thread")]
async fn unexpected_failures_are_internal_with_a_correlation_id() {
    let t = TestApp::start().await;
    let id = t
        .create_server(
            &t.admin,
            json!({ "name": "s", "url": "http://127.0.0.1:9/mcp", "authType": "HEADERS",
                    "headers": [{ "name": "X-K", "value": "v" }] }),
        )
        .await;
    let stranger = switchboard::crypto::KeyRing::generate();
    let mut conn = t.app.db.conn().await.unwrap();
    let mut row = switchboard::db::servers::find(&mut conn, uuid::Uuid::parse_str(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    row.headers_sealed = Some(stranger.seal_str(
        "[[\"X-K\",\"v\"]]",
        switchboard::db::sealed::SERVER_HEADERS.context(&id),
    ));
    switchboard::db::servers::save(&mut conn, &row)
        .await
        .unwrap();
    drop(conn);
    let body = t
        .gql(
            Some(&t.admin.token),
            "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("INTERNAL"), "{body}");
    let error_id = body["errors"][0]["extensions"]["errorId"]
        .as_str()
        .expect("a correlation id");
    assert_eq!(error_id.len(), 32);
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(message, format!("internal error (id {error_id})"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_only_for_configured_origins() {
    let t = TestApp::start_with(Options {
        app_origins: vec!["https://app.example.com".into()],
        ..Default::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        t.http
            .request(reqwest::Method::OPTIONS, t.url("/graphql"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let plain = TestApp::start().await;
    let response = plain
        .http
        .request(reqwest::Method::OPTIONS, plain.url("/graphql"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "no origins configured, no CORS"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_graphiql_and_graceful_stop() {
    let t = TestApp::start().await;
    let health = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = t.http.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let page = t
        .http
        .get(t.url("/graphql"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("graphiql") || page.contains("GraphiQL"),
        "GraphiQL page"
    );
    assert!(page.contains("/graphql/ws"));
    let addr = t.addr;
    t.stop().await;
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "stopped servers refuse connections"
    );
}

/// A page of servers costs the same number of SQL statements whatever its size: every
/// nested field (workspace, grant, tools, creator) is batched.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_servers_costs_a_constant_number_of_queries() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let query = "query($w: ID!) { workspace(id: $w) { mcpServers(first: 100) { edges { node { \
        id name url authType connectionStatus authStatus toolCount headerNames \
        workspace { id name } oauth { expiresAt issuer authorizedBy { name } } createdBy { id name } \
        tools { nodes { name } } } } } } }";
    let vars = json!({ "w": a.workspace_id.to_string() });

    let mut counts = Vec::new();
    for target in [10, 100] {
        let existing = t.ok(a, query, vars.clone()).await["workspace"]["mcpServers"]["edges"]
            .as_array()
            .unwrap()
            .len();
        for i in existing..target {
            t.create_server(a, json!({ "name": format!("s{i}"), "url": format!("http://127.0.0.1:9/s{i}"), "authType": "OAUTH" }))
                .await;
        }
        // Warm the connection pool, then measure one request.
        t.ok(a, query, vars.clone()).await;
        let before = t.app.db.statement_count();
        let data = t.ok(a, query, vars.clone()).await;
        let after = t.app.db.statement_count();
        assert_eq!(
            data["workspace"]["mcpServers"]["edges"]
                .as_array()
                .unwrap()
                .len(),
            target
        );
        counts.push(after - before);
    }
    assert_eq!(
        counts[0], counts[1],
        "statements per request must not grow with the page: {counts:?}"
    );
    assert!(
        counts[0] <= 10,
        "a page costs a handful of statements, got {}",
        counts[0]
    );
}

/// A member's role in a workspace is known without reading the workspace, so a query that
/// selects none of its row's fields reads no row; one that does reads it, directly or batched
/// under the servers, and sees the same name everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_is_read_only_for_the_fields_that_need_it() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let w = a.workspace_id.to_string();
    for i in 0..3 {
        t.create_server(
            a,
            json!({ "name": format!("s{i}"), "url": format!("http://127.0.0.1:9/s{i}"), "authType": "NONE" }),
        )
        .await;
    }
    let listed = t.ok(a, "{ workspaces { id name } }", json!({})).await;
    let name = listed["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ws| ws["id"] == w)
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    // The statements of one request (after one that warms the pool), and its data.
    let count = |query: &'static str, variables: Value| {
        let t = &t;
        async move {
            t.ok(a, query, variables.clone()).await;
            let before = t.app.db.statement_count();
            let data = t.ok(a, query, variables).await;
            (t.app.db.statement_count() - before, data)
        }
    };
    let statements = |query: &'static str| count(query, json!({ "w": w }));

    let (without, data) = statements(
        "query($w: ID!) { workspace(id: $w) { id role mcpServers(first: 10) { nodes { id } } } }",
    )
    .await;
    assert_eq!(data["workspace"]["id"], w);
    assert_eq!(data["workspace"]["role"], "ADMIN");
    assert_eq!(
        data["workspace"]["mcpServers"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (with, data) = statements(
        "query($w: ID!) { workspace(id: $w) { id name role mcpServers(first: 10) { nodes { id } } } }",
    )
    .await;
    assert_eq!(data["workspace"]["name"], name.as_str());
    assert_eq!(with, without + 1, "the name costs the row, and only it");

    // Under the servers, through a fragment: read once for the whole page.
    let (under, data) = statements(
        "query($w: ID!) { workspace(id: $w) { id mcpServers(first: 10) { nodes { \
         workspace { ...named } } } } } fragment named on Workspace { id name }",
    )
    .await;
    for node in data["workspace"]["mcpServers"]["nodes"].as_array().unwrap() {
        assert_eq!(node["workspace"]["id"], w);
        assert_eq!(node["workspace"]["name"], name.as_str());
    }
    assert_eq!(under, without + 1, "once for the page, not once per server");
    let (_, data) =
        statements("query($w: ID!) { workspace(id: $w) { ... on Workspace { name } } }").await;
    assert_eq!(data["workspace"]["name"], name.as_str());

    // A server read alone reads its workspace's row the same way: only for its name.
    let server = first_server(&t, a).await;
    let single = |query: &'static str| count(query, json!({ "s": server }));
    let (bare, _) = single("query($s: ID!) { mcpServer(id: $s) { id } }").await;
    let (with_role, data) =
        single("query($s: ID!) { mcpServer(id: $s) { id workspace { id role } } }").await;
    assert_eq!(data["mcpServer"]["workspace"]["id"], w);
    assert_eq!(data["mcpServer"]["workspace"]["role"], "ADMIN");
    assert_eq!(with_role, bare, "the workspace's id and role read no row");
    let (with_name, data) =
        single("query($s: ID!) { mcpServer(id: $s) { id workspace { name } } }").await;
    assert_eq!(data["mcpServer"]["workspace"]["name"], name.as_str());
    assert_eq!(with_name, bare + 1);

    // Outside the caller's workspaces, existing or not: null either way, with or without
    // the row's fields.
    let other = t.new_workspace_admin("elsewhere").await;
    for id in [other.workspace_id, uuid::Uuid::new_v4()] {
        for query in [
            "query($w: ID!) { workspace(id: $w) { id } }",
            "query($w: ID!) { workspace(id: $w) { id name } }",
        ] {
            let data = t.ok(a, query, json!({ "w": id.to_string() })).await;
            assert!(data["workspace"].is_null(), "{query}: {data}");
        }
    }
}

/// The id of one of `actor`'s servers.
async fn first_server(t: &TestApp, actor: &crate::support::Actor) -> String {
    let data = t
        .ok(
            actor,
            "query($w: ID!) { workspace(id: $w) { mcpServers(first: 1) { nodes { id } } } }",
            json!({ "w": actor.workspace_id.to_string() }),
        )
        .await;
    data["workspace"]["mcpServers"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_passed_before_is_answered_alike_and_new_variables_are_validated_in_full() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let reader = t
        .new_member(
            "reader",
            a.workspace_id,
            switchboard::domain::access::Role::Viewer,
        )
        .await;
    let query = "query($w: ID!, $first: Int) { workspace(id: $w) { name \
                 mcpServers(first: $first) { pageInfo { hasNextPage } } } }";
    let good = json!({ "w": a.workspace_id, "first": 5 });
    let remembered = || t.metric("switchboard_graphql_validations_remembered_total");
    // Validated in full, then known to pass: the same answer both times, the second on the
    // fast rules.
    let before = remembered().await;
    let first = t.ok(a, query, good.clone()).await;
    assert_eq!(
        remembered().await,
        before,
        "a first request is validated in full"
    );
    let again = t.ok(a, query, good.clone()).await;
    assert_eq!(
        remembered().await,
        before + 1.0,
        "the same request again is remembered"
    );
    assert_eq!(first, again);
    assert_eq!(
        first["workspace"]["mcpServers"]["pageInfo"]["hasNextPage"],
        false
    );

    // The same text with variables of the wrong type: the caller who sent it before gets
    // exactly what someone who never sent it gets.
    let bad = json!({ "w": { "not": "an id" }, "first": 5 });
    let told = t.gql(Some(&a.token), query, bad.clone()).await;
    let fresh = t.gql(Some(&reader.token), query, bad).await;
    assert_eq!(
        remembered().await,
        before + 1.0,
        "new variables are validated in full"
    );
    assert!(told["errors"][0]["message"].is_string(), "{told}");
    assert_eq!(told, fresh);
    // And the run that passed still passes.
    assert_eq!(t.ok(a, query, good).await, first);
}
