//! Hostile authorization servers and MCP servers: absurd numbers, wrong types, oversized and
//! slow answers, metadata that tries to steer a legitimate server's code to itself, and a
//! resource that moves to another authorization server. Each test asserts the clear outcome and
//! that nothing stored changed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::db;
use switchboard::domain::oauth::{Holder, tokens};
use uuid::Uuid;

use crate::support::fake_as::{AsConfig, FakeAuthServer, TokenFailure};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig};
use crate::support::{Actor, Options, TestApp, location, no_redirects, query_value};

const SERVER: &str = "query($id: ID!) { mcpServer(id: $id) { authStatus statusReason \
    oauth { issuer expiresAt registration flowInProgress } } }";

async fn oauth_world(as_config: AsConfig) -> (FakeAuthServer, FakeMcpServer) {
    let auth = FakeAuthServer::start(as_config).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    (auth, mcp)
}

async fn connect(t: &TestApp, actor: &Actor, url: &str) -> String {
    let id = t
        .create_server(actor, json!({ "name": "oauth", "url": url }))
        .await;
    let run = t.authorize_in_browser(actor, &id).await;
    assert_eq!(run.status, 200, "{}", run.page);
    id
}

async fn row(t: &TestApp, id: &str) -> db::models::McpServerRow {
    let mut conn = t.app.db.conn().await.unwrap();
    db::servers::find(&mut conn, Uuid::parse_str(id).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// The client registration a grant was obtained with, sealed.
async fn registration(t: &TestApp, id: &str, grant: &db::models::OauthGrantRow) -> Option<String> {
    let mut conn = t.app.db.conn().await.unwrap();
    let issuer = grant.issuer.as_deref()?;
    db::oauth::find_registration(&mut conn, Uuid::parse_str(id).unwrap(), issuer)
        .await
        .unwrap()
        .and_then(|r| r.client_information_sealed)
}

async fn grant(t: &TestApp, id: &str) -> db::models::OauthGrantRow {
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::find_grant(&mut conn, Uuid::parse_str(id).unwrap(), None)
        .await
        .unwrap()
        .unwrap()
}

/// A token endpoint announcing a lifetime of 317,000 years neither panics the callback nor
/// the refresh sweep: the lifetime is cut to a year, and the sweep keeps running.
#[tokio::test(flavor = "multi_thread")]
async fn absurd_lifetimes_are_clamped_and_never_panic() {
    let t = TestApp::start().await;
    let (auth, mcp) = oauth_world(AsConfig::default()).await;
    auth.set_token_failure(TokenFailure::Patched(vec![(
        "expires_in",
        json!(10_000_000_000_000_i64),
    )]));
    let id = connect(&t, &t.admin, &mcp.url()).await;
    let expires = grant(&t, &id).await.access_expires_at.unwrap().0;
    let year = chrono::TimeDelta::days(367);
    assert!(expires > db::now() + chrono::TimeDelta::days(300) && expires < db::now() + year);

    // Every odd shape of expires_in on a refresh: unknown lifetime or clamped, never a panic.
    let server = row(&t, &id).await;
    for value in [
        json!(i64::MAX),
        json!(u64::MAX),
        json!(-5),
        json!(1e300),
        json!("9999999999999999999999"),
        json!("soon"),
        json!({ "seconds": 5 }),
        json!(null),
    ] {
        auth.set_token_failure(TokenFailure::Patched(vec![("expires_in", value.clone())]));
        let access = tokens::refresh(&t.app, &server, Holder::Workspace, None).await;
        assert!(access.is_ok(), "{value}: {:?}", access.err());
        if let Some(at) = grant(&t, &id).await.access_expires_at {
            assert!(at.0 < db::now() + year, "{value}");
        }
    }
    // The sweep meets such grants and finishes its round.
    let mut g = grant(&t, &id).await;
    g.access_expires_at = Some(db::DbTime(db::now()));
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::save_grant(&mut conn, &g).await.unwrap();
    drop(conn);
    auth.set_token_failure(TokenFailure::Patched(vec![(
        "expires_in",
        json!(10_000_000_000_000_i64),
    )]));
    assert_eq!(
        tokens::refresh_expiring(&t.app, chrono::TimeDelta::seconds(120))
            .await
            .unwrap(),
        1
    );
}

/// Token responses of the wrong shape, type or size fail the refresh cleanly: the stored tokens
/// stay, the status says the refresh failed, and the next good answer recovers.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_token_responses_keep_the_grant() {
    let t = TestApp::start().await;
    let (auth, mcp) = oauth_world(AsConfig::default()).await;
    let id = connect(&t, &t.admin, &mcp.url()).await;
    let server = row(&t, &id).await;
    let before = grant(&t, &id).await;
    let huge = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(2 << 20));
    for (status, content_type, body) in [
        (200, "application/json", r#"{"access_token": 5}"#.to_owned()),
        (
            200,
            "application/json",
            r#"{"access_token": ""}"#.to_owned(),
        ),
        (200, "application/json", "[1, 2, 3]".to_owned()),
        (200, "application/json", "{".to_owned()),
        (200, "text/html", "<html>welcome</html>".to_owned()),
        (200, "application/json", huge),
        (302, "text/plain", String::new()),
        (
            500,
            "application/json",
            r#"{"error": {"nested": true}}"#.to_owned(),
        ),
    ] {
        auth.set_token_failure(TokenFailure::Reply(status, content_type, body.clone()));
        let refreshed = tokens::refresh(&t.app, &server, Holder::Workspace, None).await;
        assert!(refreshed.is_err(), "{status} {content_type} accepted");
        let after = grant(&t, &id).await;
        assert_eq!(
            after.tokens_sealed, before.tokens_sealed,
            "{status} {content_type}"
        );
        assert_eq!(after.token_generation, before.token_generation);
        assert_eq!(after.refresh_lease_owner, None, "the lease is given back");
        assert_eq!(row(&t, &id).await.auth_status.as_str(), "refresh_failed");
    }
    auth.set_token_failure(TokenFailure::None);
    tokens::refresh(&t.app, &server, Holder::Workspace, None)
        .await
        .unwrap();
    assert_eq!(row(&t, &id).await.auth_status.as_str(), "authorized");
}

/// A slow token endpoint does not exhaust the database pool: while many refreshes wait on it,
/// other requests are answered.
#[tokio::test(flavor = "multi_thread")]
async fn refreshes_waiting_on_a_slow_token_endpoint_hold_no_connection() {
    let t = TestApp::start().await;
    let (auth, mcp) = oauth_world(AsConfig::default()).await;
    // More servers than the test pool has connections (8).
    let mut servers = Vec::new();
    for i in 0..16 {
        let id = t
            .create_server(
                &t.admin,
                json!({ "name": format!("s{i}"), "url": format!("{}?n={i}", mcp.url()) }),
            )
            .await;
        assert_eq!(t.authorize_in_browser(&t.admin, &id).await.status, 200);
        servers.push(Arc::new(row(&t, &id).await));
    }
    let token_requests = auth.token_requests().len();
    auth.set_token_failure(TokenFailure::Slow(Duration::from_secs(12)));
    let app = t.app.clone();
    let refreshes: Vec<_> = servers
        .iter()
        .map(|server| {
            let app = app.clone();
            let server = server.clone();
            tokio::spawn(
                async move { tokens::refresh(&app, &server, Holder::Workspace, None).await },
            )
        })
        .collect();
    // Wait until every refresh is inside the token endpoint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while auth.token_requests().len() < token_requests + 16 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refreshes did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // All sixteen are waiting; unrelated requests still get connections at once.
    for _ in 0..3 {
        let (status, body) = t
            .gql_raw(
                Some(&t.admin.token),
                "{ viewer { id } workspaces { id } }",
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
    }
    assert!(
        refreshes.iter().all(|r| !r.is_finished()),
        "the refreshes were still waiting while the queries ran"
    );
    for refresh in refreshes {
        refresh.abort();
    }
}

/// The mix-up attack: a hostile authorization server's metadata names a legitimate server's
/// authorization endpoint and its own token endpoint. With a client id metadata document (valid
/// at every authorization server) the legitimate server would issue a code for Switchboard that
/// Switchboard then sends, with the verifier, to the hostile token endpoint. Switchboard never
/// lets that code reach the hostile server.
#[tokio::test(flavor = "multi_thread")]
async fn a_mix_up_never_delivers_a_legitimate_code_to_a_hostile_token_endpoint() {
    let t = TestApp::start_with(Options {
        client_metadata_url: Some("https://switchboard.example/oauth/client-metadata.json".into()),
        ..Options::default()
    })
    .await;
    // The legitimate server accepts metadata-document clients and does not send `iss`.
    let legit = FakeAuthServer::start(AsConfig {
        cimd: true,
        iss_parameter: false,
        ..AsConfig::default()
    })
    .await;

    for hostile_claims_iss in [false, true] {
        let hostile = FakeAuthServer::start(AsConfig {
            cimd: true,
            iss_parameter: hostile_claims_iss,
            authorization_endpoint_override: Some(format!("{}/authorize", legit.url())),
            ..AsConfig::default()
        })
        .await;
        let resource = FakeMcpServer::start(McpConfig {
            auth: McpAuth::oauth(&hostile),
            ..McpConfig::default()
        })
        .await;
        let id = t
            .create_server(&t.admin, json!({ "name": "trap", "url": resource.url() }))
            .await;
        let started = t
            .ok(&t.admin, crate::support::START_OAUTH, json!({ "id": id }))
            .await;
        let begin_url = started["startMcpOauth"]["authorizationUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        let browser = no_redirects();
        let begin = browser.get(&begin_url).send().await.unwrap();
        let cookie = begin.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let upstream = location(&begin);
        assert!(upstream.starts_with(&legit.url()), "{upstream}");
        let client_id = query_value(&upstream, "client_id").unwrap();
        let at_legit = browser.get(&upstream).send().await.unwrap();
        if hostile_claims_iss {
            // The hostile server claims RFC 9207, so the metadata document is used: the
            // legitimate server issues a code, but its answer carries no `iss`, which such a
            // flow requires.
            assert_eq!(
                client_id,
                "https://switchboard.example/oauth/client-metadata.json"
            );
            assert_eq!(at_legit.status().as_u16(), 302);
            let callback = browser
                .get(location(&at_legit))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(callback.status().as_u16(), 400);
            let page = callback.text().await.unwrap();
            assert!(page.contains("issuer_mismatch"), "{page}");
        } else {
            // Without RFC 9207 the metadata document is not used: the client id is one the
            // hostile server registered, which the legitimate server does not know.
            assert_ne!(
                client_id,
                "https://switchboard.example/oauth/client-metadata.json"
            );
            assert_eq!(hostile.registrations().len(), 1);
            assert_eq!(
                at_legit.status().as_u16(),
                400,
                "no code for an unknown client"
            );
        }
        assert!(
            hostile.token_requests().is_empty(),
            "the hostile token endpoint received {:?}",
            hostile.token_requests()
        );
        let s = t.ok(&t.admin, SERVER, json!({ "id": id })).await;
        assert_eq!(s["mcpServer"]["oauth"]["issuer"], Value::Null, "{s}");
    }
}

/// A flow that is started and abandoned after the resource named a new authorization server
/// changes nothing: the grant keeps its issuer, endpoints and registration, and its refresh
/// token only ever goes to the server that issued it.
#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_flow_leaves_the_grant_with_its_own_authorization_server() {
    let t = TestApp::start().await;
    let (first, mcp) = oauth_world(AsConfig::default()).await;
    let id = connect(&t, &t.admin, &mcp.url()).await;
    let before = grant(&t, &id).await;
    let second = FakeAuthServer::start(AsConfig::default()).await;
    mcp.migrate_authorization_server(&second);

    // The user starts a flow with the new server and closes the popup.
    let started = t
        .ok(&t.admin, crate::support::START_OAUTH, json!({ "id": id }))
        .await;
    assert_eq!(started["startMcpOauth"]["status"], "REDIRECT", "{started}");
    let s = t.ok(&t.admin, SERVER, json!({ "id": id })).await;
    assert_eq!(s["mcpServer"]["oauth"]["flowInProgress"], true, "{s}");
    // The flow in progress does not hide the grant that still works.
    assert_eq!(s["mcpServer"]["authStatus"], "AUTHORIZED", "{s}");
    let after = grant(&t, &id).await;
    assert_eq!(after.issuer, before.issuer);
    assert_eq!(after.authorization_server, before.authorization_server);
    assert_eq!(
        registration(&t, &id, &after).await,
        registration(&t, &id, &before).await
    );
    assert_eq!(after.tokens_sealed, before.tokens_sealed);

    // When the flow expires, the sweep removes it and the grant's status is still there.
    let mut conn = t.app.db.conn().await.unwrap();
    let flow = db::oauth::flow_of(&mut conn, Uuid::parse_str(&id).unwrap(), t.admin.user_id)
        .await
        .unwrap()
        .unwrap();
    expire_flow(&mut conn, flow).await;
    drop(conn);
    switchboard::domain::oauth::flow::sweep_expired(&t.app)
        .await
        .unwrap();
    let s = t.ok(&t.admin, SERVER, json!({ "id": id })).await;
    assert_eq!(s["mcpServer"]["authStatus"], "AUTHORIZED", "{s}");
    assert_eq!(s["mcpServer"]["oauth"]["flowInProgress"], false, "{s}");

    // A refresh goes to the server that issued the tokens, never to the new one.
    let refreshes = first.refresh_count();
    tokens::refresh(&t.app, &row(&t, &id).await, Holder::Workspace, None)
        .await
        .unwrap();
    assert_eq!(first.refresh_count(), refreshes + 1);
    assert!(
        second.token_requests().is_empty(),
        "{:?}",
        second.token_requests()
    );

    // Completing a flow with the new server replaces the grant as a whole.
    let run = t.authorize_in_browser(&t.admin, &id).await;
    assert_eq!(run.status, 200, "{}", run.page);
    let replaced = grant(&t, &id).await;
    assert_eq!(replaced.issuer, Some(second.issuer()));
    assert_eq!(second.token_requests().len(), 1);
}

/// Make a pending flow expire now (the database holds its expiry).
async fn expire_flow(conn: &mut db::DbConn, flow: db::models::FlowRow) {
    db::oauth::burn_flow(conn, flow.id.0).await.unwrap();
    let expired = db::models::FlowRow {
        expires_at: db::DbTime(db::now() - chrono::TimeDelta::seconds(1)),
        ..flow
    };
    db::oauth::insert_flow(conn, &expired).await.unwrap();
}

/// Metadata that redirects in a loop ends discovery with a clear error after a handful of
/// requests; a token endpoint on a refused address (a cloud metadata endpoint) ends the flow
/// with `token_exchange_failed` and nothing is sent there.
#[tokio::test(flavor = "multi_thread")]
async fn redirect_loops_and_refused_endpoints_end_cleanly() {
    use crate::support::fake_http::{self, RequestLog};
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::IntoResponse;

    let t = TestApp::start().await;
    let listener = fake_http::bind().await;
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let log = RequestLog::default();
    let mcp_url = format!("{origin}/mcp");
    let (prm_origin, mcp_for_prm) = (origin.clone(), mcp_url.clone());
    let router = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(move || {
                let challenge = format!(r#"Bearer resource_metadata="{prm_origin}/prm""#);
                async move {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, challenge)],
                    )
                }
            }),
        )
        .route(
            "/prm",
            axum::routing::get(move || {
                let issuer = format!("{}/as", mcp_for_prm.trim_end_matches("/mcp"));
                let resource = mcp_for_prm.clone();
                async move {
                    axum::Json(json!({ "resource": resource, "authorization_servers": [issuer] }))
                }
            }),
        )
        .fallback(|uri: Uri, _: HeaderMap| async move {
            (StatusCode::FOUND, [(header::LOCATION, uri.to_string())]).into_response()
        });
    let _server = fake_http::serve(listener, log.record(router));
    let id = t
        .create_server(&t.admin, json!({ "name": "loop", "url": mcp_url }))
        .await;
    let body = t
        .gql(
            Some(&t.admin.token),
            crate::support::START_OAUTH,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        crate::support::error_code(&body),
        Some("UPSTREAM_ERROR"),
        "{body}"
    );
    let metadata_requests = log
        .all()
        .iter()
        .filter(|r| r.path.contains(".well-known"))
        .count();
    assert!(
        (1..=4).contains(&metadata_requests),
        "each metadata URL asked once, redirects not followed: {metadata_requests}"
    );

    // A token endpoint on a cloud metadata address.
    let (auth, mcp) = oauth_world(AsConfig {
        token_endpoint_override: Some("https://169.254.169.254/token".into()),
        ..AsConfig::default()
    })
    .await;
    let id = t
        .create_server(&t.admin, json!({ "name": "imds", "url": mcp.url() }))
        .await;
    let run = t.authorize_in_browser(&t.admin, &id).await;
    assert_eq!(run.status, 400);
    assert!(run.page.contains("token_exchange_failed"), "{}", run.page);
    assert!(auth.token_requests().is_empty());
    let s = t.ok(&t.admin, SERVER, json!({ "id": id })).await;
    assert_eq!(s["mcpServer"]["oauth"], Value::Null, "{s}");
}
