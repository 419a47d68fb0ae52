//! OAuth 2.1 + PKCE against the fake authorization server and fake MCP server: detection,
//! discovery variants, registration, the popup flow through Switchboard's own endpoints, the
//! token lifecycle, revocation, and the known pitfalls of this feature.

use std::sync::Arc;

use crate::support::fake_as::{AsConfig, FakeAuthServer, MetadataStyle, TokenFailure};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, PrmLocation};
use crate::support::{
    Actor, Options, TestApp, error_code, location, no_redirects, oauth_with, query_value,
};
use serde_json::{Value, json};
use switchboard::db;
use switchboard::domain::access::Role;
use switchboard::domain::oauth::tokens::GrantFrom;
use switchboard::domain::oauth::{Holder, tokens};
use uuid::Uuid;

/// An authorization server and an OAuth-protected MCP server using it.
async fn world(
    as_config: AsConfig,
    configure: impl FnOnce(&FakeAuthServer) -> McpAuth,
) -> (FakeAuthServer, FakeMcpServer) {
    let auth = FakeAuthServer::start(as_config).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: configure(&auth),
        ..McpConfig::default()
    })
    .await;
    (auth, mcp)
}

const START: &str =
    "mutation($id: ID!) { startMcpOauth(serverId: $id) { status authorizationUrl expiresAt } }";
const SERVER: &str = "query($id: ID!) { mcpServer(id: $id) { authType connectionStatus authStatus statusReason toolCount \
    tools { nodes { name } } oauth { issuer scopes expiresAt registration flowInProgress authorizedBy { name } } } }";

async fn create_oauth_server(t: &TestApp, actor: &Actor, url: &str) -> String {
    t.create_server(actor, json!({ "name": "oauth", "url": url }))
        .await
}

async fn server(t: &TestApp, actor: &Actor, id: &str) -> Value {
    t.ok(actor, SERVER, json!({ "id": id })).await["mcpServer"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn detection_probes_once_and_reads_the_challenge() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (_auth, oauth) = world(AsConfig::default(), McpAuth::oauth).await;
    let bare = FakeMcpServer::start(McpConfig {
        auth: McpAuth::BareInvalidToken,
        ..McpConfig::default()
    })
    .await;
    let realm = FakeMcpServer::start(McpConfig {
        auth: McpAuth::StaticHeader {
            name: "X-Key".into(),
            value: "k".into(),
        },
        ..McpConfig::default()
    })
    .await;
    let open = FakeMcpServer::start(McpConfig {
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/mcp", listener.local_addr().unwrap())
    };
    let create = "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { authType } }";
    let probe = "query($w: ID!, $u: String!) { probeMcpServer(workspaceId: $w, url: $u) { authType reason } }";
    for (url, expected) in [
        (oauth.url(), "OAUTH"),
        (bare.url(), "HEADERS"),
        (realm.url(), "HEADERS"),
        (open.url(), "NONE"),
        (closed.clone(), "UNDETECTED"),
    ] {
        let probed = t
            .ok(
                a,
                probe,
                json!({ "w": a.workspace_id.to_string(), "u": url }),
            )
            .await;
        assert_eq!(
            probed["probeMcpServer"]["authType"], expected,
            "{url}: {probed}"
        );
        let data = t
            .ok(a, create, json!({ "i": { "workspaceId": a.workspace_id.to_string(), "name": "p", "url": url } }))
            .await;
        assert_eq!(data["createMcpServer"]["authType"], expected, "{url}");
    }
    assert_eq!(
        oauth.count("server/discover"),
        2,
        "one probe per call, unauthenticated"
    );
    assert!(
        oauth
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
    // The session the probe opened is closed.
    for _ in 0..50 {
        if open.sessions_deleted().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(open.sessions_deleted().len(), 2);
    // Headers or an explicit type mean no probe.
    let before = oauth.count("server/discover");
    t.create_server(a, json!({ "name": "h", "url": format!("{}?h", oauth.url()), "headers": [{ "name": "X-A", "value": "1" }] })).await;
    t.create_server(
        a,
        json!({ "name": "e", "url": format!("{}?e", oauth.url()), "authType": "NONE" }),
    )
    .await;
    assert_eq!(oauth.count("server/discover"), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_popup_flow_connects_a_server() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (auth, mcp) = world(AsConfig::default(), McpAuth::oauth).await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    let run = t.authorize_in_browser(a, &id).await;
    assert_eq!(run.status, 200, "{}", run.page);
    assert!(
        run.page.contains(r#""ok":true"#) && run.page.contains(r#""type":"mcp-oauth""#),
        "{}",
        run.page
    );
    assert!(run.page.contains(&format!(r#""serverId":"{id}""#)));
    assert!(
        run.page
            .contains(&format!(r#"["{}"]"#, t.url("").trim_end_matches('/'))),
        "posts to its own origin only: {}",
        run.page
    );
    assert!(!run.page.contains(r#"postMessage(message,"*")"#));

    let s = server(&t, a, &id).await;
    assert_eq!(s["authStatus"], "AUTHORIZED", "{s}");
    assert_eq!(s["connectionStatus"], "CONNECTED");
    assert_eq!(s["toolCount"], 2);
    assert_eq!(
        s["tools"]["nodes"],
        json!([{ "name": "echo" }, { "name": "fail" }])
    );
    assert_eq!(s["oauth"]["issuer"], auth.issuer());
    assert_eq!(s["oauth"]["registration"], "DYNAMIC");
    assert_eq!(s["oauth"]["flowInProgress"], false);
    assert_eq!(s["oauth"]["authorizedBy"]["name"], "admin");
    assert!(s["oauth"]["expiresAt"].is_string());

    // What the authorization server saw: PKCE S256, state, the resource verbatim, a
    // registration for a confidential web client with refresh tokens.
    let authorize = &auth.authorize_requests()[0];
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert_eq!(authorize["resource"], mcp.url());
    assert!(
        !authorize.contains_key("scope"),
        "nothing advertised, nothing requested"
    );
    let exchange = auth
        .token_requests()
        .into_iter()
        .find(|r| r.grant_type == "authorization_code")
        .unwrap();
    assert_eq!(exchange.field("resource"), Some(mcp.url().as_str()));
    assert!(exchange.field("code_verifier").is_some());
    let registration = &auth.registrations()[0];
    assert_eq!(
        registration["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert!(registration["application_type"].is_string());
    // The MCP server got the bearer token.
    assert!(mcp.requests().iter().any(|r| {
        r.header("authorization")
            .is_some_and(|h| h.starts_with("Bearer "))
    }));

    // The callback is single use.
    let replay = no_redirects()
        .get(&run.callback_url)
        .header("cookie", &run.begin_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 400);
    assert!(replay.text().await.unwrap().contains("invalid_state"));

    // A stored refresh token that works means nothing to do.
    let again = t.ok(a, START, json!({ "id": id })).await;
    assert_eq!(
        again["startMcpOauth"]["status"], "ALREADY_AUTHORIZED",
        "{again}"
    );
    assert_eq!(auth.refresh_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_variants_all_reach_the_authorization_server() {
    let variants: Vec<(&str, AsConfig, PrmLocation)> = vec![
        ("prm at the path", AsConfig::default(), PrmLocation::Path),
        ("prm at the root", AsConfig::default(), PrmLocation::Root),
        (
            "prm at a custom path named in the header",
            AsConfig::default(),
            PrmLocation::HeaderCustomPath("/custom/prm.json".into()),
        ),
        (
            "oidc",
            AsConfig {
                metadata: MetadataStyle::Oidc,
                ..AsConfig::default()
            },
            PrmLocation::Header,
        ),
        (
            "issuer with a path, rfc 8414",
            AsConfig {
                issuer_path: Some("/tenant1".into()),
                ..AsConfig::default()
            },
            PrmLocation::Header,
        ),
        (
            "issuer with a path, oidc appended",
            AsConfig {
                issuer_path: Some("/tenant1".into()),
                metadata: MetadataStyle::OidcPathAppend,
                ..AsConfig::default()
            },
            PrmLocation::Header,
        ),
        (
            "2025-03-26 fallback",
            AsConfig {
                metadata: MetadataStyle::None,
                ..AsConfig::default()
            },
            PrmLocation::None,
        ),
    ];
    let t = TestApp::start().await;
    let a = &t.admin;
    for (name, config, prm) in variants {
        let (auth, mcp) = world(config, |auth| {
            oauth_with(auth, |o| {
                if let McpAuth::OAuth { prm: p, .. } = o {
                    *p = prm;
                }
            })
        })
        .await;
        let id = t
            .create_server(
                a,
                json!({ "name": name, "url": mcp.url(), "authType": "OAUTH" }),
            )
            .await;
        let run = t.authorize_in_browser(a, &id).await;
        assert_eq!(run.status, 200, "{name}: {}", run.page);
        let s = server(&t, a, &id).await;
        assert_eq!(s["authStatus"], "AUTHORIZED", "{name}: {s}");
        assert_eq!(auth.token_requests().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_come_from_the_challenge_else_the_resource() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let with_scopes = |challenge: Option<&str>, supported: Option<Vec<&str>>| {
        let challenge = challenge.map(str::to_owned);
        let supported: Option<Vec<String>> =
            supported.map(|v| v.into_iter().map(str::to_owned).collect());
        move |auth: &FakeAuthServer| {
            oauth_with(auth, |o| {
                if let McpAuth::OAuth {
                    challenge_scope: c,
                    scopes_supported: s,
                    ..
                } = o
                {
                    *c = challenge;
                    *s = supported;
                }
            })
        }
    };
    let (auth, mcp) = world(
        AsConfig::default(),
        with_scopes(Some("mcp:basic"), Some(vec!["mcp:basic", "mcp:write"])),
    )
    .await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    t.authorize_in_browser(a, &id).await;
    assert_eq!(
        auth.authorize_requests()[0]["scope"],
        "mcp:basic",
        "the challenge is authoritative"
    );

    let (auth, mcp) = world(
        AsConfig::default(),
        with_scopes(None, Some(vec!["mcp:basic", "mcp:write"])),
    )
    .await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    t.authorize_in_browser(a, &id).await;
    assert_eq!(auth.authorize_requests()[0]["scope"], "mcp:basic mcp:write");

    let listed = AsConfig {
        scopes_supported: Some(vec!["mcp:basic".into(), "offline_access".into()]),
        ..AsConfig::default()
    };
    let (auth, mcp) = world(listed, with_scopes(Some("mcp:basic"), None)).await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    t.authorize_in_browser(a, &id).await;
    assert_eq!(
        auth.authorize_requests()[0]["scope"],
        "mcp:basic offline_access",
        "offline_access only when listed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_or_broken_authorization_servers_are_refused_clearly() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let cases: Vec<(&str, AsConfig)> = vec![
        (
            "wrong issuer",
            AsConfig {
                wrong_issuer: true,
                ..AsConfig::default()
            },
        ),
        (
            "javascript authorization endpoint",
            AsConfig {
                authorization_endpoint_override: Some("javascript:alert(1)".into()),
                ..AsConfig::default()
            },
        ),
        (
            "data authorization endpoint",
            AsConfig {
                authorization_endpoint_override: Some("data:text/html,x".into()),
                ..AsConfig::default()
            },
        ),
        (
            "pkce methods without S256",
            AsConfig {
                pkce_methods: Some(vec!["plain".into()]),
                ..AsConfig::default()
            },
        ),
        (
            "pkce methods omitted",
            AsConfig {
                pkce_methods: None,
                ..AsConfig::default()
            },
        ),
        (
            "no registration possible",
            AsConfig {
                dcr: false,
                ..AsConfig::default()
            },
        ),
    ];
    for (name, config) in cases {
        let (auth, mcp) = world(config, McpAuth::oauth).await;
        let id = create_oauth_server(&t, a, &mcp.url()).await;
        let body = t.gql(Some(&a.token), START, json!({ "id": id })).await;
        assert_eq!(error_code(&body), Some("UPSTREAM_ERROR"), "{name}: {body}");
        assert!(auth.authorize_requests().is_empty(), "{name}");
        let s = server(&t, a, &id).await;
        assert_eq!(s["oauth"], Value::Null, "{name}: no flow state is stored");
    }

    // The lenient-PKCE switch accepts a server that omits the list (and only then).
    let (_auth, mcp) = world(
        AsConfig {
            pkce_methods: None,
            ..AsConfig::default()
        },
        McpAuth::oauth,
    )
    .await;
    let id = t
        .create_server(
            a,
            json!({ "name": "lenient", "url": mcp.url(), "oauthLenientPkce": true }),
        )
        .await;
    assert_eq!(t.authorize_in_browser(a, &id).await.status, 200);

    // A resource that does not cover the server URL.
    let (auth, mcp) = world(AsConfig::default(), |auth| {
        oauth_with(auth, |o| {
            if let McpAuth::OAuth {
                resource_override: r,
                ..
            } = o
            {
                *r = Some("http://127.0.0.1:1/elsewhere".into());
            }
        })
    })
    .await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    let body = t.gql(Some(&a.token), START, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("UPSTREAM_ERROR"), "{body}");
    assert!(
        auth.requests()
            .iter()
            .all(|r| !r.path.contains("authorize"))
    );

    // A token endpoint on a cloud metadata address is never contacted, even with private
    // networks allowed.
    let (_auth, mcp) = world(
        AsConfig {
            token_endpoint_override: Some("https://169.254.169.254/token".into()),
            ..AsConfig::default()
        },
        McpAuth::oauth,
    )
    .await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    let run = t.authorize_in_browser(a, &id).await;
    assert_eq!(run.status, 400);
    assert!(run.page.contains("token_exchange_failed"), "{}", run.page);
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_pitfalls() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (auth, mcp) = world(AsConfig::default(), McpAuth::oauth).await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    let browser = no_redirects();

    // A provider error burns the state: the same state cannot be completed afterwards.
    let crate::support::Popup {
        begin_url: _,
        begin_cookie: cookie,
        callback_url: callback,
    } = t.popup(a, &id).await;
    let state = query_value(&callback, "state").unwrap();
    let errored = browser
        .get(t.url(&format!(
            "/oauth/callback?error=access_denied&state={state}"
        )))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(errored.text().await.unwrap().contains("provider_error"));
    let late = browser
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        late.contains("invalid_state"),
        "the state was burned: {late}"
    );
    assert!(auth.token_requests().is_empty(), "no code was exchanged");

    // A missing binding cookie fails without burning the state; the right browser then wins.
    let crate::support::Popup {
        begin_url,
        begin_cookie: cookie,
        callback_url: callback,
    } = t.popup(a, &id).await;
    let stranger = browser
        .get(&callback)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stranger.contains("binding_mismatch"), "{stranger}");
    let forged = browser
        .get(&callback)
        .header(
            "cookie",
            format!("{}=forged", cookie.split('=').next().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert!(forged.text().await.unwrap().contains("binding_mismatch"));
    // The begin link is single use.
    let again = browser.get(&begin_url).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 400);
    // A wrong `iss` is refused before the exchange, and does not burn the state either.
    assert_eq!(query_value(&callback, "iss"), Some(auth.issuer()));
    let wrong_iss = with_param(&callback, "iss", "http://evil.example");
    let page = browser
        .get(&wrong_iss)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("issuer_mismatch"), "{page}");
    let ok = browser
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    // Hostile values cannot break the page.
    let hostile = "%3C%2Fscript%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let page = browser
        .get(t.url(&format!(
            "/oauth/callback?error={hostile}&state={hostile}&code={hostile}"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>alert"), "{page}");
    assert_eq!(
        page.matches("</script>").count(),
        1,
        "only the page's own script closes: {page}"
    );
}

/// `url` with one query parameter replaced.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == key {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_mcp_oauth_binds_on_the_user_and_flows_do_not_collide() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let editor = t.new_member("eve", a.workspace_id, Role::Editor).await;
    let (_auth, mcp) = world(AsConfig::default(), McpAuth::oauth).await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;

    // The admin starts; another user's start during that flow is a conflict.
    let data = t.ok(a, START, json!({ "id": id })).await;
    let body = t.gql(Some(&editor.token), START, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    // The same user may start again (a fresh flow replaces theirs).
    let data2 = t.ok(a, START, json!({ "id": id })).await;
    assert_ne!(data, data2);

    // An app hosting its own callback page completes with completeMcpOauth.
    let browser = no_redirects();
    let begin = browser
        .get(data2["startMcpOauth"]["authorizationUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let callback = location(&browser.get(location(&begin)).send().await.unwrap());
    let (state, code, iss) = (
        query_value(&callback, "state"),
        query_value(&callback, "code"),
        query_value(&callback, "iss"),
    );
    let complete = "mutation($s: String!, $c: String!, $i: String) { completeMcpOauth(state: $s, code: $c, iss: $i) { authStatus } }";
    let vars = json!({ "s": state, "c": code, "i": iss });
    let body = t.gql(Some(&editor.token), complete, vars.clone()).await;
    assert_eq!(
        error_code(&body),
        Some("FORBIDDEN"),
        "only the user who started it: {body}"
    );
    let data = t.ok(a, complete, vars.clone()).await;
    assert_eq!(data["completeMcpOauth"]["authStatus"], "AUTHORIZED");
    let body = t.gql(Some(&a.token), complete, vars).await;
    assert_eq!(
        error_code(&body),
        Some("BAD_USER_INPUT"),
        "single use: {body}"
    );
}

async fn connected(t: &TestApp, as_config: AsConfig) -> (FakeAuthServer, FakeMcpServer, String) {
    let (auth, mcp) = world(as_config, McpAuth::oauth).await;
    let id = create_oauth_server(t, &t.admin, &mcp.url()).await;
    assert_eq!(t.authorize_in_browser(&t.admin, &id).await.status, 200);
    (auth, mcp, id)
}

async fn row(t: &TestApp, id: &str) -> switchboard::db::models::McpServerRow {
    let mut conn = t.app.db.conn().await.unwrap();
    db::servers::find(&mut conn, Uuid::parse_str(id).unwrap())
        .await
        .unwrap()
        .unwrap()
}

async fn grant(t: &TestApp, id: &str) -> Option<switchboard::db::models::OauthGrantRow> {
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::find_grant(&mut conn, Uuid::parse_str(id).unwrap(), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn expiring_tokens_refresh_once_for_many_callers() {
    let t = TestApp::start().await;
    let (auth, _mcp, id) = connected(&t, AsConfig::default()).await;
    expire_stored_access_token(&t, &id).await;
    let server = Arc::new(row(&t, &id).await);
    let before = grant(&t, &id).await.unwrap();
    let refreshes_before = auth.refresh_count();
    let calls = (0..200).map(|_| {
        let app = t.app.clone();
        let server = server.clone();
        tokio::spawn(async move {
            tokens::access_token(&app, &server, Holder::Workspace, GrantFrom::Storage)
                .await
                .map(|a| a.token.expose().to_owned())
        })
    });
    let tokens: Vec<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(
        auth.refresh_count() - refreshes_before,
        1,
        "exactly one refresh reached the authorization server"
    );
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "everyone got the refreshed token"
    );
    let after = grant(&t, &id).await.unwrap();
    assert_eq!(after.token_generation, before.token_generation + 1);
    let refresh = auth
        .token_requests()
        .into_iter()
        .find(|r| r.grant_type == "refresh_token")
        .unwrap();
    assert_eq!(
        refresh.field("resource"),
        Some(server.url.as_str()),
        "resource on refresh too"
    );
}

/// Make the stored access token look expired (as if time had passed).
async fn expire_stored_access_token(t: &TestApp, id: &str) {
    let mut g = grant(t, id).await.unwrap();
    g.access_expires_at = Some(db::DbTime(db::now() - chrono::TimeDelta::seconds(5)));
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::save_grant(&mut conn, &g).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_failures_keep_or_clear_tokens_as_they_should() {
    let t = TestApp::start().await;
    // Without rotation the response has no refresh token: the old one is kept.
    let (auth, _mcp, id) = connected(
        &t,
        AsConfig {
            rotate_refresh_tokens: false,
            access_token_ttl_secs: 30,
            ..AsConfig::default()
        },
    )
    .await;
    let server = row(&t, &id).await;
    let before = auth.refresh_count();
    tokens::refresh(&t.app, &server, Holder::Workspace, None)
        .await
        .unwrap();
    tokens::refresh(&t.app, &server, Holder::Workspace, None)
        .await
        .expect("the kept refresh token still works");
    assert_eq!(auth.refresh_count(), before + 2);

    // 5xx and network errors keep the tokens.
    auth.set_token_failure(TokenFailure::ServerError);
    assert!(
        tokens::refresh(&t.app, &server, Holder::Workspace, None)
            .await
            .is_err()
    );
    assert!(grant(&t, &id).await.unwrap().tokens_sealed.is_some());
    assert_eq!(server_status(&t, &id).await.1, "refresh_failed");
    // A failed background refresh does not block the next start.
    tokens::refresh_expiring(&t.app, chrono::TimeDelta::seconds(120))
        .await
        .unwrap();
    let started = t.ok(&t.admin, START, json!({ "id": id })).await;
    assert_eq!(started["startMcpOauth"]["status"], "REDIRECT", "{started}");

    // invalid_grant clears the tokens, asks for authorization, and mints no flow.
    let t = TestApp::start().await;
    let (auth, _mcp, id) = connected(&t, AsConfig::default()).await;
    let server = row(&t, &id).await;
    auth.set_token_failure(TokenFailure::InvalidGrant);
    assert!(
        tokens::refresh(&t.app, &server, Holder::Workspace, None)
            .await
            .is_err()
    );
    let g = grant(&t, &id).await.unwrap();
    assert!(g.tokens_sealed.is_none());
    let mut conn = t.app.db.conn().await.unwrap();
    let flow = db::oauth::flow_of(&mut conn, Uuid::parse_str(&id).unwrap(), t.admin.user_id)
        .await
        .unwrap();
    assert!(flow.is_none(), "no new flow is minted");
    assert_eq!(server_status(&t, &id).await.0, "authorization_required");

    // invalid_client drops the registration: the next start registers again.
    let t = TestApp::start().await;
    let (auth, _mcp, id) = connected(&t, AsConfig::default()).await;
    let server = row(&t, &id).await;
    auth.set_token_failure(TokenFailure::InvalidClient);
    assert!(
        tokens::refresh(&t.app, &server, Holder::Workspace, None)
            .await
            .is_err()
    );
    auth.set_token_failure(TokenFailure::None);
    assert_eq!(auth.registrations().len(), 1);
    assert_eq!(t.authorize_in_browser(&t.admin, &id).await.status, 200);
    assert_eq!(auth.registrations().len(), 2, "a fresh registration");
}

async fn server_status(t: &TestApp, id: &str) -> (String, String) {
    let r = row(t, id).await;
    (
        r.auth_status.to_string(),
        r.status_reason.map(|r| r.to_string()).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_that_no_longer_open_ask_for_authorization_instead_of_failing() {
    let t = TestApp::start().await;
    let (_auth, _mcp, id) = connected(&t, AsConfig::default()).await;
    // Re-seal the tokens under a key the server does not have (a lost key).
    let mut g = grant(&t, &id).await.unwrap();
    let stranger = switchboard::crypto::KeyRing::generate();
    g.tokens_sealed = Some(stranger.seal_str(
        "{}",
        switchboard::crypto::SealContext::new(
            "mcp_server_oauth",
            "tokens_sealed",
            &g.id.0.to_string(),
        ),
    ));
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::save_grant(&mut conn, &g).await.unwrap();
    drop(conn);
    let stored = row(&t, &id).await;
    assert!(
        tokens::access_token(&t.app, &stored, Holder::Workspace, GrantFrom::Storage)
            .await
            .is_err()
    );
    assert_eq!(
        server_status(&t, &id).await,
        (
            "authorization_required".to_owned(),
            "tokens_unreadable".to_owned()
        )
    );
    let s = server(&t, &t.admin, &id).await;
    assert_eq!(
        s["authStatus"], "AUTHORIZATION_REQUIRED",
        "a status, not a 500: {s}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_happens_on_every_invalidation_and_never_across_workspaces() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let other = t.new_workspace_admin("mallory").await;

    // Another workspace's admin cannot delete it, and nothing is revoked.
    let (auth, _mcp, id) = connected(&t, AsConfig::default()).await;
    let body = t
        .gql(
            Some(&other.token),
            "mutation($id: ID!) { deleteMcpServer(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    let body = t
        .gql(
            Some(&other.token),
            "mutation($id: ID!) { disconnectMcpOauth(serverId: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    assert!(auth.revocations().is_empty());

    // Delete: refresh token first, then the access token.
    t.ok(
        a,
        "mutation($id: ID!) { deleteMcpServer(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let hints: Vec<Option<String>> = auth
        .revocations()
        .into_iter()
        .map(|r| r.token_type_hint)
        .collect();
    assert_eq!(
        hints,
        [
            Some("refresh_token".to_owned()),
            Some("access_token".to_owned())
        ]
    );

    for (name, change) in [
        (
            "url change",
            json!({ "url": "http://127.0.0.1:9/elsewhere" }),
        ),
        (
            "client change",
            json!({ "oauthClientId": "another-client" }),
        ),
        ("auth type change", json!({ "authType": "HEADERS" })),
    ] {
        let (auth, _mcp, id) = connected(&t, AsConfig::default()).await;
        let body = t
            .gql(Some(&a.token), "mutation($id: ID!, $i: UpdateMcpServerInput!) { updateMcpServer(id: $id, input: $i) { id } }", json!({ "id": id, "i": change }))
            .await;
        assert!(body.get("errors").is_none(), "{name}: {body}");
        assert_eq!(auth.revocations().len(), 2, "{name}");
        assert!(grant(&t, &id).await.is_none(), "{name}");
    }

    let (auth, _mcp, id) = connected(&t, AsConfig::default()).await;
    let data = t.ok(a, "mutation($id: ID!) { disconnectMcpOauth(serverId: $id) { authStatus statusReason oauth { issuer } } }", json!({ "id": id })).await;
    assert_eq!(
        data["disconnectMcpOauth"]["authStatus"],
        "AUTHORIZATION_REQUIRED"
    );
    assert_eq!(data["disconnectMcpOauth"]["oauth"], Value::Null);
    assert_eq!(auth.revocations().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn static_headers_go_to_oauth_servers_but_never_replace_the_token() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (_auth, mcp) = world(AsConfig::default(), McpAuth::oauth).await;
    let id = t
        .create_server(
            a,
            json!({ "name": "h", "url": mcp.url(), "authType": "OAUTH",
                    "headers": [{ "name": "X-Tenant", "value": "t1" }, { "name": "Authorization", "value": "Bearer static-secret" }] }),
        )
        .await;
    assert_eq!(t.authorize_in_browser(a, &id).await.status, 200);
    let listed = mcp
        .requests()
        .into_iter()
        .filter(|r| r.body.contains("tools/list"))
        .collect::<Vec<_>>();
    assert!(!listed.is_empty());
    for request in listed {
        assert_eq!(request.header("x-tenant"), Some("t1"));
        let authorization = request.header("authorization").unwrap();
        assert!(
            authorization.starts_with("Bearer ") && !authorization.contains("static-secret"),
            "{authorization}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_registration_priority() {
    // A pre-registered client wins over everything.
    let t = TestApp::start_with(Options {
        client_metadata_url: Some("https://switchboard.example/oauth/client-metadata.json".into()),
        ..Options::default()
    })
    .await;
    let a = &t.admin;
    let config = AsConfig {
        cimd: true,
        preregistered: vec![("pre-client".into(), Some("pre-secret".into()))],
        ..AsConfig::default()
    };
    let (auth, mcp) = world(config, McpAuth::oauth).await;
    let id = t.create_server(a, json!({ "name": "pre", "url": mcp.url(), "oauthClientId": "pre-client", "oauthClientSecret": "pre-secret" })).await;
    assert_eq!(t.authorize_in_browser(a, &id).await.status, 200);
    assert_eq!(auth.authorize_requests()[0]["client_id"], "pre-client");
    assert!(auth.registrations().is_empty());
    assert_eq!(
        server(&t, a, &id).await["oauth"]["registration"],
        "PRE_REGISTERED"
    );

    // Then the metadata document, where the server accepts it.
    let (auth, mcp) = world(
        AsConfig {
            cimd: true,
            ..AsConfig::default()
        },
        McpAuth::oauth,
    )
    .await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    assert_eq!(t.authorize_in_browser(a, &id).await.status, 200);
    assert_eq!(
        auth.authorize_requests()[0]["client_id"],
        "https://switchboard.example/oauth/client-metadata.json"
    );
    assert!(auth.registrations().is_empty());
    assert_eq!(
        server(&t, a, &id).await["oauth"]["registration"],
        "METADATA_DOCUMENT"
    );

    // Client authentication follows what the server supports.
    for method in ["client_secret_post", "client_secret_basic", "none"] {
        let config = AsConfig {
            token_auth_methods: vec![method.into()],
            ..AsConfig::default()
        };
        let (auth, _mcp, _id) = connected(&t, config).await;
        let exchange = auth
            .token_requests()
            .into_iter()
            .find(|r| r.grant_type == "authorization_code")
            .unwrap();
        assert_eq!(exchange.client_auth.method_name(), method);
    }
}

/// Switchboard serves its own Client ID Metadata Document only when its public URL is https,
/// and the document names itself as the client id.
#[tokio::test(flavor = "multi_thread")]
async fn client_metadata_document_needs_an_https_public_url() {
    let t = TestApp::start().await;
    let response = reqwest::get(t.url("/oauth/client-metadata.json"))
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        404,
        "http public URL: no document"
    );

    let mut config = t.app.config.clone();
    config.public_url = url::Url::parse("https://switchboard.example/base").unwrap();
    let app = switchboard::App::build(config, t.app.keys.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchboard::http::serve(
        app,
        listener,
        std::future::pending(),
    ));
    let document: Value = reqwest::get(format!("http://{addr}/oauth/client-metadata.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        document["client_id"],
        "https://switchboard.example/base/oauth/client-metadata.json"
    );
    assert_eq!(
        document["redirect_uris"],
        json!(["https://switchboard.example/base/oauth/callback"])
    );
    assert_eq!(document["token_endpoint_auth_method"], "none");
    assert_eq!(
        document["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
}

/// A user who lost the editor role since starting a flow can no longer complete it.
#[tokio::test(flavor = "multi_thread")]
async fn complete_mcp_oauth_rechecks_the_role() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let editor = t.new_member("eve", a.workspace_id, Role::Editor).await;
    let (_auth, mcp) = world(AsConfig::default(), McpAuth::oauth).await;
    let id = create_oauth_server(&t, a, &mcp.url()).await;
    let callback = t.popup(&editor, &id).await.callback_url;
    let demote = "mutation($w: ID!, $u: ID!) { addWorkspaceMember(workspaceId: $w, userId: $u, role: VIEWER) { role } }";
    t.ok(
        a,
        demote,
        json!({ "w": a.workspace_id.to_string(), "u": editor.user_id.to_string() }),
    )
    .await;
    let complete = "mutation($s: String!, $c: String!, $i: String) { completeMcpOauth(state: $s, code: $c, iss: $i) { authStatus } }";
    let vars = json!({ "s": query_value(&callback, "state"), "c": query_value(&callback, "code"), "i": query_value(&callback, "iss") });
    let body = t.gql(Some(&editor.token), complete, vars).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}
