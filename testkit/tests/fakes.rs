//! The fake authorization server and fake MCP server, driven directly over HTTP with reqwest,
//! and the popup browser driven against a stand-in for Switchboard's popup pages, so the tests
//! that rely on them can trust what they do. They need nothing of Switchboard, so they live
//! with the kit: `cargo test --workspace --test fakes` runs them without building the server.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _};
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use serde_json::{Value, json};
use switchboard_testkit::fake_as::{
    AsConfig, ClientAuth, DEFAULT_SUBJECT, FakeAuthServer, JWT_BEARER_ASSERTION_TYPE,
    MachineClient, MetadataStyle, TokenFailure,
};
use switchboard_testkit::fake_http::{self, parse_form, pkce_challenge};
use switchboard_testkit::fake_mcp::{self, FakeMcpServer, McpAuth, McpConfig, Mode, PrmLocation};
use switchboard_testkit::jws::{self, JwsAlg, MAX_ASSERTION_BYTES, TestKey};
use switchboard_testkit::popup::{self, PopupError};

const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "a-code-verifier-that-is-long-enough-for-rfc-7636-0123456789";

/// A client that does not follow redirects, like a headless authorizer.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// POST a form; returns the status and the JSON body (`Null` if none).
async fn post_form(url: &str, pairs: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut request = http()
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(pairs));
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("token request");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = http().get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register(auth: &FakeAuthServer, metadata: Value) -> (u16, Value) {
    let response = http()
        .post(format!("{}/register", auth.url()))
        .json(&metadata)
        .send()
        .await
        .expect("register");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GET /authorize with a PKCE challenge for [`VERIFIER`]; returns the status and, for a
/// redirect, the parameters of its `Location`.
async fn authorize(
    auth: &FakeAuthServer,
    params: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>) {
    let challenge = pkce_challenge(VERIFIER);
    let mut query = vec![
        ("response_type", "code"),
        ("redirect_uri", REDIRECT_URI),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "state-1"),
    ];
    for (name, value) in params {
        query.retain(|(existing, _)| existing != name);
        query.push((*name, *value));
    }
    query.retain(|(_, value)| !value.is_empty());
    let url = format!("{}/authorize?{}", auth.url(), form_body(&query));
    let response = http().get(url).send().await.expect("authorize");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|location| location.to_str().expect("ASCII").to_owned());
    let params = location
        .map(|location| {
            let location = url::Url::parse(&location).expect("redirect URL");
            assert!(location.as_str().starts_with(REDIRECT_URI), "{location}");
            parse_form(location.query().unwrap_or_default().as_bytes())
        })
        .unwrap_or_default();
    (status, params)
}

/// Authorize `client_id` and return the code.
async fn code_for(auth: &FakeAuthServer, client_id: &str) -> String {
    let (status, params) = authorize(auth, &[("client_id", client_id)]).await;
    assert_eq!(status, 302);
    params["code"].clone()
}

fn exchange<'a>(code: &'a str, client_id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
        ("client_id", client_id),
    ]
}

/// POST one JSON-RPC message to the MCP server.
async fn rpc(mcp: &FakeMcpServer, headers: &[(&str, &str)], message: Value) -> reqwest::Response {
    let mut request = http()
        .post(mcp.url())
        .header("accept", "application/json, text/event-stream")
        .json(&message);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("MCP request")
}

fn call(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn initialize() -> Value {
    call(
        1,
        "initialize",
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "test", "version": "0" },
        }),
    )
}

fn challenge_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .expect("WWW-Authenticate")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

#[tokio::test]
async fn oauth_flow_from_challenge_to_tool_call() {
    let auth = FakeAuthServer::start(AsConfig {
        scopes_supported: Some(vec!["tools:read".into(), "tools:call".into()]),
        ..AsConfig::default()
    })
    .await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::OAuth {
            auth_server: auth.clone(),
            prm: PrmLocation::Header,
            challenge_scope: Some("tools:read".into()),
            scopes_supported: Some(vec!["tools:read".into(), "tools:call".into()]),
            resource_override: None,
            required_scopes: HashMap::from([("tools/call".into(), vec!["tools:call".into()])]),
        },
        ..McpConfig::default()
    })
    .await;

    // Discovery: challenge, protected resource metadata, authorization server metadata.
    let response = rpc(&mcp, &[], initialize()).await;
    assert_eq!(response.status(), 401);
    let prm_url = mcp.prm_url().expect("PRM URL");
    assert_eq!(
        challenge_of(&response),
        format!(
            r#"Bearer error="invalid_token", scope="tools:read", resource_metadata="{prm_url}""#
        )
    );
    let (status, prm) = get_json(&prm_url).await;
    assert_eq!(status, 200);
    assert_eq!(prm["resource"], mcp.url());
    assert_eq!(prm["authorization_servers"], json!([auth.issuer()]));
    assert_eq!(prm["scopes_supported"], json!(["tools:read", "tools:call"]));
    let (status, metadata) = get_json(&format!(
        "{}/.well-known/oauth-authorization-server",
        auth.url()
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(metadata["issuer"], auth.issuer());
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{}/register", auth.url())
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );

    // Registration.
    let (status, client) = register(
        &auth,
        json!({
            "client_name": "Switchboard",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(client["client_id"], "dcr-client-1");
    assert_eq!(client["client_secret"], "dcr-secret-1");
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(client["client_name"], "Switchboard");
    assert_eq!(auth.registrations()[0]["client_name"], "Switchboard");
    let basic = Some(("dcr-client-1", "dcr-secret-1"));

    // Authorization: an immediate redirect with code, state and iss.
    let mcp_url = mcp.url();
    let (status, redirect) = authorize(
        &auth,
        &[
            ("client_id", "dcr-client-1"),
            ("scope", "tools:read"),
            ("resource", &mcp_url),
        ],
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(redirect["code"], "code-1");
    assert_eq!(redirect["state"], "state-1");
    assert_eq!(redirect["iss"], auth.issuer());
    let authorize_request = &auth.authorize_requests()[0];
    assert_eq!(authorize_request["code_challenge_method"], "S256");
    assert_eq!(authorize_request["resource"], mcp.url());

    // Code exchange, once only.
    let token_url = format!("{}/token", auth.url());
    let mut exchange_form = exchange("code-1", "dcr-client-1");
    exchange_form.retain(|(name, _)| *name != "client_id");
    exchange_form.push(("resource", &mcp_url));
    let (status, tokens) = post_form(&token_url, &exchange_form, basic).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        tokens,
        json!({
            "access_token": "at-1",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt-1",
            "scope": "tools:read",
        })
    );
    let (status, error) = post_form(&token_url, &exchange_form, basic).await;
    assert_eq!((status, error), (400, json!({ "error": "invalid_grant" })));
    let first = &auth.token_requests()[0];
    assert_eq!(first.grant_type, "authorization_code");
    assert_eq!(first.client_auth, ClientAuth::Basic);
    assert_eq!(first.client_id.as_deref(), Some("dcr-client-1"));
    assert_eq!(first.field("resource"), Some(mcp_url.as_str()));
    assert_eq!(first.field("code_verifier"), Some(VERIFIER));

    // The token opens the server, but not the tool call that needs another scope.
    assert_eq!(
        auth.validate_access_token("at-1"),
        Some(vec!["tools:read".to_owned()])
    );
    let bearer = [("authorization", "Bearer at-1")];
    let response = rpc(&mcp, &bearer, initialize()).await;
    assert_eq!(response.status(), 200);
    let response = rpc(
        &mcp,
        &bearer,
        call(2, "tools/call", json!({ "name": "echo" })),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge_of(&response),
        format!(
            r#"Bearer error="insufficient_scope", scope="tools:call", resource_metadata="{prm_url}""#
        )
    );
    let stepped_up = auth.issue_access_token(&["tools:read", "tools:call"]);
    let authorization = format!("Bearer {stepped_up}");
    let response = rpc(
        &mcp,
        &[("authorization", &authorization)],
        call(
            3,
            "tools/call",
            json!({ "name": "echo", "arguments": { "message": "hi" } }),
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body["result"]["structuredContent"],
        json!({ "message": "hi" })
    );
    let sent = mcp.requests();
    assert_eq!(
        sent.last().expect("request").header("authorization"),
        Some(authorization.as_str())
    );

    // Refresh rotates; the old refresh token is dead.
    let refresh = |token: &'static str| {
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("resource", mcp_url.as_str()),
        ]
    };
    let (status, tokens) = post_form(&token_url, &refresh("rt-1"), basic).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["access_token"], "at-3");
    assert_eq!(tokens["refresh_token"], "rt-2");
    assert_eq!(tokens["scope"], "tools:read");
    let (status, error) = post_form(&token_url, &refresh("rt-1"), basic).await;
    assert_eq!((status, error), (400, json!({ "error": "invalid_grant" })));
    assert_eq!(auth.refresh_count(), 2);
    assert_eq!(
        auth.token_requests()[2].field("resource"),
        Some(mcp_url.as_str())
    );

    // Revocation is recorded and takes effect.
    let (status, _) = post_form(
        &format!("{}/revoke", auth.url()),
        &[("token", "rt-2"), ("token_type_hint", "refresh_token")],
        basic,
    )
    .await;
    assert_eq!(status, 200);
    let revocation = &auth.revocations()[0];
    assert_eq!(revocation.token, "rt-2");
    assert_eq!(revocation.token_type_hint.as_deref(), Some("refresh_token"));
    assert_eq!(revocation.client_id.as_deref(), Some("dcr-client-1"));
    let (status, _) = post_form(&token_url, &refresh("rt-2"), basic).await;
    assert_eq!(status, 400);

    // Server-side expiry turns the access token away.
    assert!(auth.validate_access_token("at-3").is_some());
    auth.expire_access_tokens();
    assert_eq!(auth.validate_access_token("at-3"), None);
    let response = rpc(&mcp, &[("authorization", "Bearer at-3")], initialize()).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn authorization_requests_are_validated_before_redirecting() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("app".into(), Some("s3cret".into()))],
        ..AsConfig::default()
    })
    .await;
    let (_, client) = register(&auth, json!({ "redirect_uris": [REDIRECT_URI] })).await;
    let dcr_client = client["client_id"].as_str().expect("client id");

    for (params, why) in [
        (vec![("client_id", "")], "no client"),
        (vec![("client_id", "stranger")], "unknown client"),
        (
            vec![("client_id", "https://app.example/client")],
            "CIMD is off",
        ),
        (
            vec![
                ("client_id", dcr_client),
                ("redirect_uri", "http://127.0.0.1:9/other"),
            ],
            "unregistered redirect",
        ),
        (
            vec![("client_id", "app"), ("response_type", "token")],
            "implicit",
        ),
        (
            vec![("client_id", "app"), ("code_challenge", "")],
            "no PKCE",
        ),
        (
            vec![("client_id", "app"), ("code_challenge_method", "plain")],
            "plain PKCE",
        ),
        (vec![("client_id", "app"), ("state", "")], "no state"),
    ] {
        let (status, redirect) = authorize(&auth, &params).await;
        assert_eq!((status, redirect.len()), (400, 0), "{why}");
    }
    assert_eq!(auth.authorize_requests().len(), 8);

    // A pre-registered client may use any redirect URI.
    let (status, redirect) = authorize(&auth, &[("client_id", "app")]).await;
    assert_eq!(status, 302);
    assert!(redirect.contains_key("code"));

    auth.set_authorize_error(Some("access_denied"));
    let (status, redirect) = authorize(&auth, &[("client_id", "app")]).await;
    assert_eq!(status, 302);
    let expected = BTreeMap::from([
        ("error".to_owned(), "access_denied".to_owned()),
        ("iss".to_owned(), auth.issuer()),
        ("state".to_owned(), "state-1".to_owned()),
    ]);
    assert_eq!(redirect, expected);
    auth.set_authorize_error(None);
    assert_eq!(authorize(&auth, &[("client_id", "app")]).await.0, 302);
}

#[tokio::test]
async fn code_exchange_checks_pkce_redirect_uri_and_client() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![
            ("app".into(), Some("s3cret".into())),
            ("public".into(), None),
        ],
        ..AsConfig::default()
    })
    .await;
    let token_url = format!("{}/token", auth.url());

    let code = code_for(&auth, "public").await;
    let mut form = exchange(&code, "public");
    form.retain(|(name, _)| *name != "code_verifier");
    form.push(("code_verifier", "not-the-verifier"));
    assert_eq!(post_form(&token_url, &form, None).await.0, 400);
    // The failed attempt used the code up.
    assert_eq!(
        post_form(&token_url, &exchange(&code, "public"), None)
            .await
            .0,
        400
    );

    let code = code_for(&auth, "public").await;
    let mut form = exchange(&code, "public");
    form.retain(|(name, _)| *name != "redirect_uri");
    form.push(("redirect_uri", "http://127.0.0.1:9/elsewhere"));
    assert_eq!(post_form(&token_url, &form, None).await.0, 400);

    let code = code_for(&auth, "public").await;
    let (status, error) =
        post_form(&token_url, &exchange(&code, "app"), Some(("app", "s3cret"))).await;
    assert_eq!(
        (status, error),
        (400, json!({ "error": "invalid_grant" })),
        "another client's code"
    );

    // Confidential clients authenticate with the right secret, by header or in the form.
    let code = code_for(&auth, "app").await;
    let (status, _) = post_form(&token_url, &exchange(&code, "app"), Some(("app", "wrong"))).await;
    assert_eq!(status, 401);
    let (status, _) = post_form(&token_url, &exchange(&code, "app"), None).await;
    assert_eq!(status, 401, "no secret at all");
    let mut form = exchange(&code, "app");
    form.push(("client_secret", "s3cret"));
    let (status, tokens) = post_form(&token_url, &form, None).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("scope").is_none(), "no scope was requested");

    // A public client cannot pretend to have a secret.
    let code = code_for(&auth, "public").await;
    let (status, _) = post_form(
        &token_url,
        &exchange(&code, "public"),
        Some(("public", "x")),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        post_form(&token_url, &exchange(&code, "public"), None)
            .await
            .0,
        200
    );

    let methods: Vec<ClientAuth> = auth
        .token_requests()
        .iter()
        .map(|request| request.client_auth)
        .collect();
    assert_eq!(
        &methods[4..],
        [
            ClientAuth::Basic,
            ClientAuth::None,
            ClientAuth::Post,
            ClientAuth::Basic,
            ClientAuth::None
        ]
    );
}

#[tokio::test]
async fn client_authentication_follows_the_advertised_methods() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("app".into(), Some("s3cret".into()))],
        token_auth_methods: vec!["client_secret_post".into()],
        ..AsConfig::default()
    })
    .await;
    let token_url = format!("{}/token", auth.url());
    let code = code_for(&auth, "app").await;
    let (status, error) =
        post_form(&token_url, &exchange(&code, "app"), Some(("app", "s3cret"))).await;
    assert_eq!((status, error), (401, json!({ "error": "invalid_client" })));
    let mut form = exchange(&code, "app");
    form.push(("client_secret", "s3cret"));
    assert_eq!(post_form(&token_url, &form, None).await.0, 200);

    // Registration is held to the same list, and a client keeps to the method it registered.
    let (status, error) = register(
        &auth,
        json!({ "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none" }),
    )
    .await;
    assert_eq!(
        (status, error),
        (400, json!({ "error": "invalid_client_metadata" }))
    );
    let (status, error) = register(&auth, json!({ "client_name": "no redirect" })).await;
    assert_eq!(
        (status, error),
        (400, json!({ "error": "invalid_redirect_uri" }))
    );

    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let (_, client) = register(
        &auth,
        json!({ "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none" }),
    )
    .await;
    assert!(client.get("client_secret").is_none(), "{client}");
    assert_eq!(client["token_endpoint_auth_method"], "none");
    let (_, client) = register(
        &auth,
        json!({ "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "client_secret_post" }),
    )
    .await;
    let id = client["client_id"].as_str().expect("id");
    let secret = client["client_secret"].as_str().expect("secret");
    let code = code_for(&auth, id).await;
    let (status, _) = post_form(
        &format!("{}/token", auth.url()),
        &exchange(&code, id),
        Some((id, secret)),
    )
    .await;
    assert_eq!(status, 401, "registered for client_secret_post, used basic");
}

#[tokio::test]
async fn metadata_is_served_where_the_style_says() {
    let styles = [
        (
            MetadataStyle::Rfc8414,
            Some("/.well-known/oauth-authorization-server/tenant1"),
        ),
        (
            MetadataStyle::Oidc,
            Some("/.well-known/openid-configuration/tenant1"),
        ),
        (
            MetadataStyle::OidcPathAppend,
            Some("/tenant1/.well-known/openid-configuration"),
        ),
        (MetadataStyle::None, None),
    ];
    let candidates = [
        "/.well-known/oauth-authorization-server/tenant1",
        "/.well-known/openid-configuration/tenant1",
        "/tenant1/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ];
    for (style, served) in styles {
        let auth = FakeAuthServer::start(AsConfig {
            issuer_path: Some("/tenant1".into()),
            metadata: style,
            ..AsConfig::default()
        })
        .await;
        assert_eq!(auth.issuer(), format!("{}/tenant1", auth.url()));
        assert_eq!(
            auth.metadata_url(),
            served.map(|path| format!("{}{path}", auth.url()))
        );
        for candidate in candidates {
            let (status, metadata) = get_json(&format!("{}{candidate}", auth.url())).await;
            if Some(candidate) == served {
                assert_eq!(status, 200, "{style:?} {candidate}");
                assert_eq!(metadata["issuer"], auth.issuer());
                assert_eq!(
                    metadata["authorization_endpoint"],
                    format!("{}/authorize", auth.url())
                );
            } else {
                assert_eq!(status, 404, "{style:?} {candidate}");
            }
        }
    }

    // Without metadata the endpoints are still at the origin's conventional paths.
    let auth = FakeAuthServer::start(AsConfig {
        metadata: MetadataStyle::None,
        ..AsConfig::default()
    })
    .await;
    let (status, client) = register(&auth, json!({ "redirect_uris": [REDIRECT_URI] })).await;
    assert_eq!(status, 201);
    let id = client["client_id"].as_str().expect("id");
    let code = code_for(&auth, id).await;
    let secret = client["client_secret"].as_str().expect("secret");
    let (status, _) = post_form(
        &format!("{}/token", auth.url()),
        &exchange(&code, id),
        Some((id, secret)),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metadata_variants_and_failures() {
    let auth = FakeAuthServer::start(AsConfig {
        wrong_issuer: true,
        pkce_methods: None,
        dcr: false,
        revocation: false,
        iss_parameter: false,
        cimd: true,
        scopes_supported: Some(vec!["read".into()]),
        token_auth_methods: vec!["none".into()],
        authorization_endpoint_override: Some("javascript:alert(1)".into()),
        token_endpoint_override: Some("http://10.0.0.1/token".into()),
        ..AsConfig::default()
    })
    .await;
    let metadata_url = auth.metadata_url().expect("metadata URL");
    let (_, metadata) = get_json(&metadata_url).await;
    assert_ne!(metadata["issuer"], auth.issuer());
    assert_eq!(metadata["authorization_endpoint"], "javascript:alert(1)");
    assert_eq!(metadata["token_endpoint"], "http://10.0.0.1/token");
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!(["none"])
    );
    assert_eq!(metadata["scopes_supported"], json!(["read"]));
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    for absent in [
        "code_challenge_methods_supported",
        "registration_endpoint",
        "revocation_endpoint",
        "authorization_response_iss_parameter_supported",
    ] {
        assert!(metadata.get(absent).is_none(), "{absent}: {metadata}");
    }
    let (status, _) = register(&auth, json!({ "redirect_uris": [REDIRECT_URI] })).await;
    assert_eq!(status, 404);

    // A client id metadata document URL is a public client; the redirect carries no iss.
    let cimd = "https://app.example/oauth/client.json";
    let (status, redirect) = authorize(&auth, &[("client_id", cimd)]).await;
    assert_eq!(status, 302);
    assert!(!redirect.contains_key("iss"));
    let (status, tokens) = post_form(
        &format!("{}/token", auth.url()),
        &exchange(&redirect["code"], cimd),
        None,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(auth.token_requests()[0].client_auth, ClientAuth::None);

    auth.set_metadata_failure(true);
    assert_eq!(get_json(&metadata_url).await.0, 500);
    auth.set_metadata_failure(false);
    assert_eq!(get_json(&metadata_url).await.0, 200);

    let auth = FakeAuthServer::start(AsConfig {
        revocation_endpoint_override: Some("http://169.254.169.254/revoke".into()),
        registration_endpoint_override: Some("file:///etc/passwd".into()),
        ..AsConfig::default()
    })
    .await;
    let (_, metadata) = get_json(&auth.metadata_url().expect("metadata URL")).await;
    assert_eq!(
        metadata["revocation_endpoint"],
        "http://169.254.169.254/revoke"
    );
    assert_eq!(metadata["registration_endpoint"], "file:///etc/passwd");
    assert_eq!(
        auth.requests()
            .iter()
            .map(|request| request.path.as_str())
            .collect::<Vec<_>>(),
        ["/.well-known/oauth-authorization-server"]
    );
}

#[tokio::test]
async fn token_endpoint_failure_switches() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        ..AsConfig::default()
    })
    .await;
    let token_url = auth.url() + "/token";
    let code = code_for(&auth, "public").await;
    let form = exchange(&code, "public");

    for (failure, status, body) in [
        (
            TokenFailure::InvalidGrant,
            400,
            json!({ "error": "invalid_grant" }),
        ),
        (
            TokenFailure::InvalidClient,
            401,
            json!({ "error": "invalid_client" }),
        ),
        (TokenFailure::ServerError, 503, Value::Null),
    ] {
        auth.set_token_failure(failure.clone());
        assert_eq!(
            post_form(&token_url, &form, None).await,
            (status, body),
            "{failure:?}"
        );
    }

    // Slow answers normally, late; the failures above did not consume the code.
    auth.set_token_failure(TokenFailure::Slow(Duration::from_millis(200)));
    let started = Instant::now();
    let (status, tokens) = post_form(&token_url, &form, None).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(auth.token_requests().len(), 4);
}

#[tokio::test]
async fn refresh_tokens_can_be_kept_or_withheld() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        rotate_refresh_tokens: false,
        access_token_ttl_secs: 60,
        ..AsConfig::default()
    })
    .await;
    let token_url = auth.url() + "/token";
    let code = code_for(&auth, "public").await;
    let (_, tokens) = post_form(&token_url, &exchange(&code, "public"), None).await;
    assert_eq!(tokens["expires_in"], 60);
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "rt-1"),
        ("client_id", "public"),
    ];
    for access_token in ["at-2", "at-3"] {
        let (status, tokens) = post_form(&token_url, &refresh, None).await;
        assert_eq!(status, 200);
        assert_eq!(tokens["access_token"], access_token);
        assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    }
    auth.revoke_all();
    assert_eq!(post_form(&token_url, &refresh, None).await.0, 400);
    assert_eq!(auth.validate_access_token("at-3"), None);

    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        issue_refresh_token: false,
        access_token_ttl_secs: 0,
        ..AsConfig::default()
    })
    .await;
    let code = code_for(&auth, "public").await;
    let (_, tokens) = post_form(&(auth.url() + "/token"), &exchange(&code, "public"), None).await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    assert_eq!(
        auth.validate_access_token("at-1"),
        None,
        "issued already expired"
    );
}

#[tokio::test]
async fn mcp_answers_json_rpc_and_pages_tools() {
    let tools = ["a", "b", "c", "d", "e"].map(fake_mcp::tool).to_vec();
    let mcp = FakeMcpServer::start(McpConfig {
        tools,
        page_size: 2,
        ..McpConfig::default()
    })
    .await;

    let response = rpc(&mcp, &[], initialize()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert!(response.headers().get("mcp-session-id").is_none());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "jsonrpc": "2.0", "id": 1, "result": {
            "protocolVersion": "2025-11-25",
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": { "name": "fake-mcp", "version": "1.0.0" },
        } })
    );
    let notification = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = rpc(&mcp, &[], notification).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.text().await.expect("body"), "");

    let mut names = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let params = if cursor.is_null() {
            json!({})
        } else {
            json!({ "cursor": cursor })
        };
        let body: Value = rpc(&mcp, &[], call(2, "tools/list", params))
            .await
            .json()
            .await
            .expect("JSON");
        let page = body["result"]["tools"].as_array().expect("tools");
        assert!(page.len() <= 2);
        names.extend(
            page.iter()
                .map(|tool| tool["name"].as_str().expect("name").to_owned()),
        );
        cursor = body["result"]["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert_eq!(mcp.count("tools/list"), 3);
    let body: Value = rpc(
        &mcp,
        &[],
        call(3, "tools/list", json!({ "cursor": "nonsense" })),
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(body["error"]["code"], -32602);

    let body: Value = rpc(&mcp, &[], call(4, "ping", json!({})))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["result"], json!({}));
    let body: Value = rpc(&mcp, &[], call(5, "resources/list", json!({})))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["error"]["code"], -32601);

    let response = http().get(mcp.url()).send().await.expect("GET");
    assert_eq!(response.status(), 405);
    let response = http()
        .post(mcp.url())
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 400);
    let recorded = mcp.requests();
    assert_eq!(recorded.len(), 10);
    assert_eq!(recorded[0].path, "/mcp");
    assert_eq!(
        recorded[0].header("accept"),
        Some("application/json, text/event-stream")
    );
    assert_eq!(recorded[0].json()["method"], "initialize");
    let methods: Vec<Value> = mcp
        .posted()
        .iter()
        .map(|message| message["method"].clone())
        .collect();
    assert_eq!(
        methods,
        [
            json!("initialize"),
            json!("notifications/initialized"),
            json!("tools/list"),
            json!("tools/list"),
            json!("tools/list"),
            json!("tools/list"),
            json!("ping"),
            json!("resources/list"),
            Value::Null,
        ],
        "the GET is not a posted message; the unparsable body is Null"
    );
    assert_eq!(mcp.posted()[2]["params"], json!({}));
    assert_eq!(mcp.posted()[3]["params"], json!({ "cursor": "2" }));

    // Repeated header lines are kept apart, and joined in `header`.
    let twice = [("x-trace", "a"), ("x-trace", "b")];
    assert_eq!(
        rpc(&mcp, &twice, call(6, "ping", json!({}))).await.status(),
        200
    );
    let last = mcp.requests().pop().expect("the ping");
    assert_eq!(last.header_values("x-trace"), ["a", "b"]);
    assert_eq!(last.header("x-trace"), Some("a, b"));
    assert_eq!(
        last.header_values("accept"),
        ["application/json, text/event-stream"]
    );
    assert!(last.header_values("x-missing").is_empty());
}

#[tokio::test]
async fn mcp_tools_echo_fail_and_reject_unknown_names() {
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let body: Value = rpc(&mcp, &[], call(1, "tools/list", json!({})))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        body["result"]["tools"],
        json!([fake_mcp::echo_tool(), fake_mcp::fail_tool()])
    );
    assert!(body["result"].get("nextCursor").is_none());

    let arguments = json!({ "message": "hello", "n": 2 });
    let params = json!({ "name": "echo", "arguments": arguments });
    let body: Value = rpc(&mcp, &[], call(2, "tools/call", params))
        .await
        .json()
        .await
        .expect("JSON");
    let result = &body["result"];
    assert_eq!(result["isError"], false);
    assert_eq!(result["structuredContent"], arguments);
    assert_eq!(result["content"][0]["type"], "text");
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().expect("text"))
        .expect("JSON text");
    assert_eq!(text, arguments);

    let body: Value = rpc(&mcp, &[], call(3, "tools/call", json!({ "name": "fail" })))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["result"]["isError"], true);
    assert!(body["result"]["content"][0]["text"].is_string());

    let body: Value = rpc(
        &mcp,
        &[],
        call(4, "tools/call", json!({ "name": "missing" })),
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(body["id"], 4);
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(mcp.count("tools/call"), 3);
}

#[tokio::test]
async fn mcp_sessions_are_issued_required_and_ended() {
    let mcp = FakeMcpServer::start(McpConfig {
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    let response = rpc(&mcp, &[], initialize()).await;
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let with_session = [("mcp-session-id", session.as_str())];
    let list = || call(2, "tools/list", json!({}));

    assert_eq!(rpc(&mcp, &[], list()).await.status(), 400);
    assert_eq!(
        rpc(&mcp, &[("mcp-session-id", "forged")], list())
            .await
            .status(),
        404
    );
    assert_eq!(rpc(&mcp, &with_session, list()).await.status(), 200);

    let delete = |session: &str| {
        http()
            .delete(mcp.url())
            .header("mcp-session-id", session)
            .send()
    };
    assert_eq!(delete(&session).await.expect("DELETE").status(), 200);
    assert_eq!(mcp.sessions_deleted(), vec![session.clone()]);
    assert_eq!(rpc(&mcp, &with_session, list()).await.status(), 404);

    let response = rpc(&mcp, &[], initialize()).await;
    let second = response.headers()["mcp-session-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_ne!(second, session);
    assert_eq!(mcp.sessions_issued(), [session.clone(), second.clone()]);
    mcp.expire_sessions();
    assert_eq!(
        rpc(&mcp, &[("mcp-session-id", &second)], list())
            .await
            .status(),
        404
    );
    assert_eq!(delete(&second).await.expect("DELETE").status(), 404);
}

#[tokio::test]
async fn mcp_header_schemes_challenge_without_metadata() {
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::StaticHeader {
            name: "X-Api-Key".into(),
            value: "k1".into(),
        },
        ..McpConfig::default()
    })
    .await;
    let response = rpc(&mcp, &[("x-api-key", "wrong")], initialize()).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenge_of(&response), r#"Bearer realm="fake""#);
    assert_eq!(
        rpc(&mcp, &[("x-api-key", "k1")], initialize())
            .await
            .status(),
        200
    );
    assert_eq!(mcp.prm_url(), None);

    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::BareInvalidToken,
        ..McpConfig::default()
    })
    .await;
    let response = rpc(&mcp, &[], initialize()).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenge_of(&response), r#"Bearer error="invalid_token""#);
    let wk = format!("{}/.well-known/oauth-protected-resource/mcp", mcp.origin());
    assert_eq!(get_json(&wk).await.0, 404);
    let response = rpc(
        &mcp,
        &[(AUTHORIZATION.as_str(), "Bearer anything")],
        initialize(),
    )
    .await;
    assert_eq!(response.status(), 200);

    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::BareUnauthorized,
        ..McpConfig::default()
    })
    .await;
    for headers in [&[][..], &[(AUTHORIZATION.as_str(), "Bearer anything")][..]] {
        let response = rpc(&mcp, headers, initialize()).await;
        assert_eq!(response.status(), 401);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(
            response.text().await.expect("body"),
            fake_mcp::UNAUTHORIZED_BODY
        );
    }
    assert_eq!(mcp.prm_url(), None);
}

#[tokio::test]
async fn protected_resource_metadata_is_published_where_configured() {
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let locations = [
        (
            PrmLocation::Header,
            Some("/.well-known/oauth-protected-resource/mcp"),
            true,
        ),
        (
            PrmLocation::Path,
            Some("/.well-known/oauth-protected-resource/mcp"),
            false,
        ),
        (
            PrmLocation::Root,
            Some("/.well-known/oauth-protected-resource"),
            false,
        ),
        (
            PrmLocation::HeaderCustomPath("/meta/prm.json".into()),
            Some("/meta/prm.json"),
            true,
        ),
        (PrmLocation::None, None, false),
    ];
    let candidates = [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/meta/prm.json",
    ];
    for (location, served, advertised) in locations {
        let mcp = FakeMcpServer::start(McpConfig {
            auth: McpAuth::OAuth {
                auth_server: auth.clone(),
                prm: location.clone(),
                challenge_scope: None,
                scopes_supported: None,
                resource_override: None,
                required_scopes: HashMap::new(),
            },
            ..McpConfig::default()
        })
        .await;
        let served_url = served.map(|path| format!("{}{path}", mcp.origin()));
        assert_eq!(mcp.prm_url(), served_url, "{location:?}");

        let response = rpc(&mcp, &[("authorization", "Bearer unknown")], initialize()).await;
        assert_eq!(response.status(), 401);
        let expected = match (&served_url, advertised) {
            (Some(url), true) => {
                format!(r#"Bearer error="invalid_token", resource_metadata="{url}""#)
            }
            _ => r#"Bearer error="invalid_token""#.to_owned(),
        };
        assert_eq!(challenge_of(&response), expected, "{location:?}");

        for candidate in candidates {
            let (status, document) = get_json(&format!("{}{candidate}", mcp.origin())).await;
            if Some(candidate) == served {
                assert_eq!(status, 200, "{location:?} {candidate}");
                let resource = if location == PrmLocation::Root {
                    mcp.origin()
                } else {
                    mcp.url()
                };
                assert_eq!(
                    document,
                    json!({ "resource": resource, "authorization_servers": [auth.issuer()] })
                );
            } else {
                assert_eq!(status, 404, "{location:?} {candidate}");
            }
        }

        if location == PrmLocation::None {
            // The authorization server's endpoints also answer on the MCP server's origin.
            let response = http()
                .get(format!("{}/authorize", mcp.origin()))
                .send()
                .await
                .expect("GET");
            assert_eq!(response.status(), 400);
            assert_eq!(response.text().await.expect("body"), "missing client_id");
            assert!(
                auth.requests()
                    .iter()
                    .any(|request| request.path == "/authorize")
            );
        }
    }

    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::OAuth {
            auth_server: auth.clone(),
            prm: PrmLocation::Path,
            challenge_scope: None,
            scopes_supported: None,
            resource_override: Some("https://elsewhere.example/mcp".into()),
            required_scopes: HashMap::new(),
        },
        ..McpConfig::default()
    })
    .await;
    let (_, document) = get_json(&mcp.prm_url().expect("PRM URL")).await;
    assert_eq!(document["resource"], "https://elsewhere.example/mcp");
}

#[tokio::test]
async fn mcp_failure_modes() {
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let token = auth.issue_access_token(&[]);
    let authorization = format!("Bearer {token}");
    let bearer = [("authorization", authorization.as_str())];

    mcp.set_mode(Mode::Slow(Duration::from_millis(200)));
    let started = Instant::now();
    assert_eq!(rpc(&mcp, &bearer, initialize()).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    mcp.set_mode(Mode::Drop);
    let failure = http()
        .post(mcp.url())
        .json(&initialize())
        .send()
        .await
        .expect_err("no answer");
    assert!(failure.status().is_none(), "{failure:?}");

    mcp.set_mode(Mode::InvalidJson);
    let response = rpc(&mcp, &bearer, initialize()).await;
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.is_err());

    mcp.set_mode(Mode::Oversized(100_000));
    let response = rpc(&mcp, &bearer, initialize()).await;
    let body = response.bytes().await.expect("body");
    assert_eq!(body.len(), 100_000);
    let parsed: Value = serde_json::from_slice(&body).expect("still JSON");
    assert_eq!(parsed["id"], 1);

    mcp.set_mode(Mode::ServerError);
    assert_eq!(rpc(&mcp, &bearer, initialize()).await.status(), 500);
    // Metadata is not affected by the mode.
    assert_eq!(get_json(&mcp.prm_url().expect("PRM URL")).await.0, 200);

    mcp.set_mode(Mode::RepeatingCursor);
    for params in [json!({}), json!({ "cursor": "again" })] {
        let body: Value = rpc(&mcp, &bearer, call(2, "tools/list", params))
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            body["result"],
            json!({ "tools": [], "nextCursor": "again" })
        );
    }
    let body: Value = rpc(
        &mcp,
        &bearer,
        call(3, "tools/call", json!({ "name": "echo" })),
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(body["result"]["isError"], false, "only the listing loops");

    mcp.set_mode(Mode::Normal);
    assert_eq!(rpc(&mcp, &bearer, initialize()).await.status(), 200);
    assert_eq!(mcp.count("initialize"), 6);
}

/// A stand-in for Switchboard's popup pages on 127.0.0.1: `/begin` sets the binding cookie and
/// sends the browser to `auth` for the client `popup-client`, `/callback` shows the cookie and
/// the code it got back, and `/no-cookie` and `/not-a-redirect` are broken begin links.
async fn popup_pages(auth: &FakeAuthServer) -> (String, fake_http::ServerTask) {
    let listener = fake_http::bind().await;
    let origin = format!("http://{}", listener.local_addr().expect("local address"));
    let challenge = pkce_challenge(VERIFIER);
    let query = form_body(&[
        ("response_type", "code"),
        ("client_id", "popup-client"),
        ("redirect_uri", &format!("{origin}/callback")),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("state", "state-1"),
    ]);
    let authorize_url = format!("{}/authorize?{query}", auth.url());
    let begin = move || async move {
        (
            StatusCode::FOUND,
            [
                (LOCATION, authorize_url),
                (SET_COOKIE, "binding=b1; HttpOnly; SameSite=Lax".to_owned()),
            ],
        )
    };
    let callback = |headers: HeaderMap, RawQuery(query): RawQuery| async move {
        let cookie = headers
            .get(COOKIE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let query = parse_form(query.unwrap_or_default().as_bytes());
        let code = query.get("code").cloned().unwrap_or_default();
        format!("cookie={cookie} code={code}")
    };
    let router = axum::Router::new()
        .route("/begin", get(begin))
        .route(
            "/no-cookie",
            get(|| async { (StatusCode::FOUND, [(LOCATION, "/callback")]) }),
        )
        .route("/not-a-redirect", get(|| async { "a page" }))
        .route("/callback", get(callback));
    (origin, fake_http::serve(listener, router))
}

#[tokio::test]
async fn the_popup_browser_follows_the_begin_link_and_loads_the_callback() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("popup-client".into(), None)],
        ..AsConfig::default()
    })
    .await;
    let (origin, _pages) = popup_pages(&auth).await;

    let popup = popup::follow_begin_link(&format!("{origin}/begin"))
        .await
        .expect("the popup reaches the callback");
    assert_eq!(popup.set_cookie, "binding=b1; HttpOnly; SameSite=Lax");
    assert_eq!(popup.begin_cookie, "binding=b1");
    assert!(
        popup
            .callback_url
            .starts_with(&format!("{origin}/callback?")),
        "{}",
        popup.callback_url
    );
    assert_eq!(
        auth.authorize_requests().len(),
        1,
        "the authorization server approved"
    );

    let page = popup::load_callback(&popup.callback_url, &popup.begin_cookie)
        .await
        .expect("the callback page");
    assert_eq!(page.status, 200);
    let code = popup
        .callback_url
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("a code in the callback URL");
    assert_eq!(page.page, format!("cookie=binding=b1 code={code}"));

    match popup::follow_begin_link(&format!("{origin}/no-cookie")).await {
        Err(PopupError::NoCookie) => {}
        other => panic!("expected NoCookie, got {other:?}"),
    }
    match popup::follow_begin_link(&format!("{origin}/not-a-redirect")).await {
        Err(PopupError::NotRedirected { url, status: 200 }) => {
            assert_eq!(url, format!("{origin}/not-a-redirect"));
        }
        other => panic!("expected NotRedirected, got {other:?}"),
    }
}

/// The MCP server's tool result text for a call of `name` with this bearer token.
async fn call_text(mcp: &FakeMcpServer, token: &str, name: &str) -> Value {
    let authorization = format!("Bearer {token}");
    let body: Value = rpc(
        mcp,
        &[("authorization", &authorization)],
        call(9, "tools/call", json!({ "name": name })),
    )
    .await
    .json()
    .await
    .expect("JSON");
    body
}

/// The names of the tools the MCP server lists to this bearer token.
async fn tool_names(mcp: &FakeMcpServer, token: &str) -> Vec<String> {
    let authorization = format!("Bearer {token}");
    let body: Value = rpc(
        mcp,
        &[("authorization", &authorization)],
        call(8, "tools/list", json!({})),
    )
    .await
    .json()
    .await
    .expect("JSON");
    body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|tool| tool["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn each_subject_gets_its_own_tokens_and_whoami_names_it() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        ..AsConfig::default()
    })
    .await;
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![fake_mcp::echo_tool(), fake_mcp::whoami_tool()],
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let token_url = auth.url() + "/token";

    // The subject is stamped when the code is issued, not when it is exchanged.
    auth.set_subject("alice");
    let alice_code = code_for(&auth, "public").await;
    auth.set_subject("bob");
    let bob_code = code_for(&auth, "public").await;
    let (_, bob) = post_form(&token_url, &exchange(&bob_code, "public"), None).await;
    let (_, alice) = post_form(&token_url, &exchange(&alice_code, "public"), None).await;
    let alice_token = alice["access_token"].as_str().expect("token");
    let bob_token = bob["access_token"].as_str().expect("token");
    assert_eq!(auth.token_subject(alice_token).as_deref(), Some("alice"));
    assert_eq!(auth.token_subject(bob_token).as_deref(), Some("bob"));
    let subjects: Vec<Option<String>> = auth
        .token_requests()
        .into_iter()
        .map(|request| request.subject)
        .collect();
    assert_eq!(subjects, [Some("bob".into()), Some("alice".into())]);

    // whoami answers with the subject the authorization server sees for the token.
    for (token, subject) in [(alice_token, "alice"), (bob_token, "bob")] {
        let body = call_text(&mcp, token, "whoami").await;
        assert_eq!(
            body["result"],
            json!({ "content": [{ "type": "text", "text": subject }], "isError": false })
        );
    }
    let unknown = rpc(&mcp, &[("authorization", "Bearer nobody")], initialize()).await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(auth.token_subject("nobody"), None);

    // A refresh keeps the subject, and is counted for it.
    let refresh = |token: &str| {
        form_body(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "public"),
        ])
    };
    let alice_refresh = alice["refresh_token"].as_str().expect("refresh token");
    let response = http()
        .post(&token_url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(refresh(alice_refresh))
        .send()
        .await
        .expect("refresh");
    let refreshed: Value = response.json().await.expect("JSON");
    let refreshed_token = refreshed["access_token"].as_str().expect("token");
    assert_eq!(
        auth.token_subject(refreshed_token).as_deref(),
        Some("alice")
    );
    assert_eq!(
        call_text(&mcp, refreshed_token, "whoami").await["result"]["content"][0]["text"],
        "alice"
    );
    // The rotated-away token is refused, and still counts as alice's.
    let (status, _) = post_form(
        &token_url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", alice_refresh),
            ("client_id", "public"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(auth.refresh_count_for("alice"), 2);
    assert_eq!(auth.refresh_count_for("bob"), 0);
    assert_eq!(auth.refresh_count(), 2);

    // Tokens issued directly: the default subject, or the one named.
    let user_token = auth.issue_access_token(&[]);
    assert_eq!(
        auth.token_subject(&user_token).as_deref(),
        Some(DEFAULT_SUBJECT)
    );
    assert_eq!(DEFAULT_SUBJECT, "user");
    let carol_token = auth.issue_access_token_for("carol", &["read"]);
    assert_eq!(auth.token_subject(&carol_token).as_deref(), Some("carol"));
    assert_eq!(
        auth.validate_access_token(&carol_token),
        Some(vec!["read".to_owned()])
    );

    // One subject's catalogue can differ from everyone else's.
    mcp.set_tools_for(
        "bob",
        vec![fake_mcp::whoami_tool(), fake_mcp::tool("bobs-tool")],
    );
    assert_eq!(tool_names(&mcp, bob_token).await, ["whoami", "bobs-tool"]);
    assert_eq!(tool_names(&mcp, refreshed_token).await, ["echo", "whoami"]);
    let body = call_text(&mcp, refreshed_token, "bobs-tool").await;
    assert_eq!(
        body["error"]["code"], -32602,
        "alice cannot call bob's tool"
    );
    let body = call_text(&mcp, bob_token, "bobs-tool").await;
    assert_eq!(body["result"]["isError"], false);
    let body = call_text(&mcp, bob_token, "echo").await;
    assert_eq!(body["error"]["code"], -32602, "bob's list has no echo");

    // Revocations name the subject of the token revoked; a stranger's token has none.
    let bob_refresh = bob["refresh_token"].as_str().expect("refresh token");
    let revoke_url = auth.url() + "/revoke";
    for token in [bob_refresh, "never-issued"] {
        let (status, _) = post_form(
            &revoke_url,
            &[("token", token), ("client_id", "public")],
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let revoked: Vec<(String, Option<String>)> = auth
        .revocations()
        .into_iter()
        .map(|revocation| (revocation.token, revocation.subject))
        .collect();
    assert_eq!(
        revoked,
        [
            (bob_refresh.to_owned(), Some("bob".to_owned())),
            ("never-issued".to_owned(), None),
        ]
    );

    // Expiry and revocation can hit one subject only.
    auth.expire_access_tokens_for("alice");
    assert_eq!(auth.token_subject(refreshed_token), None);
    assert_eq!(auth.token_subject(bob_token).as_deref(), Some("bob"));
    auth.revoke_all_for("bob");
    assert_eq!(auth.token_subject(bob_token), None);
    assert_eq!(auth.token_subject(&carol_token).as_deref(), Some("carol"));
}

#[tokio::test]
async fn whoami_is_anonymous_without_oauth() {
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![fake_mcp::whoami_tool()],
        auth: McpAuth::BareInvalidToken,
        ..McpConfig::default()
    })
    .await;
    let body = call_text(&mcp, "anything", "whoami").await;
    assert_eq!(body["result"]["content"][0]["text"], fake_mcp::ANONYMOUS);
    assert_eq!(fake_mcp::ANONYMOUS, "anonymous");

    // set_tools_for has no subject to apply to without OAuth.
    mcp.set_tools_for("anonymous", vec![fake_mcp::tool("other")]);
    assert_eq!(tool_names(&mcp, "anything").await, ["whoami"]);
}

#[tokio::test]
async fn the_popup_authorizes_as_one_subject_then_another() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("popup-client".into(), None)],
        ..AsConfig::default()
    })
    .await;
    let (origin, _pages) = popup_pages(&auth).await;
    let redirect_uri = format!("{origin}/callback");

    let mut tokens = Vec::new();
    for subject in ["alice", "bob"] {
        auth.set_subject(subject);
        let popup = popup::follow_begin_link(&format!("{origin}/begin"))
            .await
            .expect("the popup reaches the callback");
        let callback = url::Url::parse(&popup.callback_url).expect("callback URL");
        let query = parse_form(callback.query().unwrap_or_default().as_bytes());
        let (status, body) = post_form(
            &(auth.url() + "/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &query["code"]),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", VERIFIER),
                ("client_id", "popup-client"),
            ],
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["access_token"].as_str().expect("token").to_owned());
    }
    assert_eq!(auth.token_subject(&tokens[0]).as_deref(), Some("alice"));
    assert_eq!(auth.token_subject(&tokens[1]).as_deref(), Some("bob"));
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 has it: id and secret form-encoded first.
fn basic_header(id: &str, secret: &str) -> String {
    let encode =
        |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// POST a form with raw headers; returns the status and the JSON body (`Null` if none).
async fn post_form_with(
    url: &str,
    pairs: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http()
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(pairs));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn invalid_client() -> (u16, Value) {
    (401, json!({ "error": "invalid_client" }))
}

#[tokio::test]
async fn client_credentials_with_a_secret() {
    // A secret with every character form encoding changes.
    const SECRET: &str = "s3:cr&t+/= é";
    let auth = FakeAuthServer::start(AsConfig::client_credentials(MachineClient {
        token_ttl_secs: 1,
        ..MachineClient::secret("svc:1", SECRET)
    }))
    .await;
    let token_url = auth.url() + "/token";
    let (_, metadata) = get_json(&auth.metadata_url().expect("metadata URL")).await;
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert!(
        metadata
            .get("token_endpoint_auth_signing_alg_values_supported")
            .is_none()
    );

    let resource = "https://mcp.example/mcp";
    let grant = [
        ("grant_type", "client_credentials"),
        ("resource", resource),
        ("scope", "tools:read tools:call"),
    ];
    let basic = basic_header("svc:1", SECRET);
    let (status, body) = post_form_with(&token_url, &grant, &[("authorization", &basic)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "access_token": "at-1",
            "token_type": "Bearer",
            "expires_in": 1,
            "scope": "tools:read tools:call",
        }),
        "no refresh token"
    );
    assert_eq!(auth.token_subject("at-1").as_deref(), Some("svc:1"));
    let request = &auth.token_requests()[0];
    assert_eq!(request.grant_type, "client_credentials");
    assert_eq!(request.client_auth, ClientAuth::Basic);
    assert_eq!(request.client_id.as_deref(), Some("svc:1"));
    assert_eq!(request.subject.as_deref(), Some("svc:1"));
    assert_eq!(request.field("resource"), Some(resource));
    assert_eq!(request.field("scope"), Some("tools:read tools:call"));

    // client_secret_post works too; without a scope the answer has none.
    let mut post = vec![
        ("grant_type", "client_credentials"),
        ("client_id", "svc:1"),
        ("client_secret", SECRET),
    ];
    let (status, body) = post_form(&token_url, &post, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("scope").is_none() && body.get("refresh_token").is_none());
    assert_eq!(auth.token_requests()[1].client_auth, ClientAuth::Post);

    // The token expires when it says, and a new request renews it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(auth.token_subject("at-1"), None);
    let (status, body) = post_form_with(&token_url, &grant, &[("authorization", &basic)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["access_token"], "at-3");
    assert_eq!(auth.token_subject("at-3").as_deref(), Some("svc:1"));

    // Wrong secrets, no secret, unknown clients and mixed methods are all invalid_client.
    let wrong_basic = basic_header("svc:1", "wrong");
    let unknown_basic = basic_header("stranger", SECRET);
    let unencoded = format!("Basic {}", STANDARD.encode(format!("svc%3A1:{SECRET}")));
    for (headers, why) in [
        (
            vec![("authorization", wrong_basic.as_str())],
            "wrong secret",
        ),
        (vec![("authorization", unknown_basic.as_str())], "unknown"),
        (
            vec![("authorization", unencoded.as_str())],
            "not form-encoded",
        ),
        (vec![("authorization", "Basic !!!")], "not base64"),
    ] {
        assert_eq!(
            post_form_with(&token_url, &grant, &headers).await,
            invalid_client(),
            "{why}"
        );
    }
    post.retain(|(name, _)| *name != "client_secret");
    assert_eq!(
        post_form(&token_url, &post, None).await,
        invalid_client(),
        "no secret"
    );
    post.push(("client_secret", "wrong"));
    assert_eq!(
        post_form(&token_url, &post, None).await,
        invalid_client(),
        "wrong secret in the form"
    );
    let mut other_id = grant.to_vec();
    other_id.push(("client_id", "someone-else"));
    assert_eq!(
        post_form_with(&token_url, &other_id, &[("authorization", &basic)]).await,
        invalid_client(),
        "the form names another client than the header"
    );
    let mut both = grant.to_vec();
    both.push(("client_secret", SECRET));
    assert_eq!(
        post_form_with(&token_url, &both, &[("authorization", &basic)]).await,
        invalid_client(),
        "two methods at once"
    );

    // The rejection switch refuses good credentials, then lets them through again.
    auth.set_client_credentials_rejected(true);
    assert_eq!(
        post_form_with(&token_url, &grant, &[("authorization", &basic)]).await,
        invalid_client()
    );
    auth.set_client_credentials_rejected(false);
    assert_eq!(
        post_form_with(&token_url, &grant, &[("authorization", &basic)])
            .await
            .0,
        200
    );

    // Only the advertised methods are accepted.
    let auth = FakeAuthServer::start(AsConfig {
        token_auth_methods: vec!["client_secret_basic".into()],
        preregistered: vec![("app".into(), Some("app-secret".into()))],
        ..AsConfig::client_credentials(MachineClient::secret("svc", "s"))
    })
    .await;
    let token_url = auth.url() + "/token";
    let post = [
        ("grant_type", "client_credentials"),
        ("client_id", "svc"),
        ("client_secret", "s"),
    ];
    assert_eq!(post_form(&token_url, &post, None).await, invalid_client());
    let basic = basic_header("svc", "s");
    assert_eq!(
        post_form_with(&token_url, &post[..1], &[("authorization", &basic)])
            .await
            .0,
        200
    );
    // A client of the code flow is not a machine client.
    let app = basic_header("app", "app-secret");
    assert_eq!(
        post_form_with(&token_url, &post[..1], &[("authorization", &app)]).await,
        invalid_client()
    );

    // Without machine clients the grant is not offered at all.
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        ..AsConfig::default()
    })
    .await;
    let (_, metadata) = get_json(&auth.metadata_url().expect("metadata URL")).await;
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    let (status, body) = post_form(
        &(auth.url() + "/token"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "public"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({ "error": "unsupported_grant_type" }))
    );
}

/// Seconds since the epoch.
fn now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(elapsed.as_secs()).expect("a sane clock")
}

/// PKCS#8 DER out of the key's PEM, checking the armour the way a strict reader would.
fn pem_to_der(pem: &str) -> Vec<u8> {
    let lines: Vec<&str> = pem.lines().collect();
    assert_eq!(lines.first(), Some(&"-----BEGIN PRIVATE KEY-----"));
    assert_eq!(lines.last(), Some(&"-----END PRIVATE KEY-----"));
    assert!(pem.ends_with('\n'));
    let body = &lines[1..lines.len() - 1];
    let (last, full) = body.split_last().expect("a body");
    assert!(full.iter().all(|line| line.len() == 64), "{pem}");
    assert!(!last.is_empty() && last.len() <= 64, "{pem}");
    STANDARD.decode(body.concat()).expect("base64")
}

/// Sign a compact JWS with the private key read back from `key.private_pem`, independently of
/// the kit, so the test also proves the PEM and public key are what they claim.
fn sign_jws(key: &TestKey, header: &Value, claims: &Value) -> String {
    let der = pem_to_der(&key.private_pem);
    let encode = |part: &Value| URL_SAFE_NO_PAD.encode(part.to_string());
    let signing_input = format!("{}.{}", encode(header), encode(claims));
    let rng = SystemRandom::new();
    let signature = match key.alg {
        JwsAlg::Es256 => {
            let pair = signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
            )
            .expect("a P-256 PKCS#8 key");
            assert_eq!(pair.public_key().as_ref(), key.public_key.as_slice());
            let signature = pair.sign(&rng, signing_input.as_bytes()).expect("signing");
            signature.as_ref().to_vec()
        }
        JwsAlg::Rs256 => {
            let pair = signature::RsaKeyPair::from_pkcs8(&der).expect("an RSA PKCS#8 key");
            assert_eq!(pair.public_key().as_ref(), key.public_key.as_slice());
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("signing");
            signature
        }
    };
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Good claims for `client_id` at `auth`, with a fresh `jti`.
fn assertion_claims(auth: &FakeAuthServer, client_id: &str, jti: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": auth.issuer(),
        "iat": now(),
        "exp": now() + 60,
        "jti": jti,
    })
}

fn jwt_grant(assertion: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_assertion", assertion),
        ("resource", "https://mcp.example/mcp"),
    ]
}

#[tokio::test]
async fn client_credentials_with_an_es256_assertion() {
    let key = jws::generate_es256_key();
    assert_eq!(key.alg, JwsAlg::Es256);
    assert_eq!(key.public_key.len(), 65);
    assert_eq!(key.public_key[0], 4, "an uncompressed point");
    let other_key = jws::generate_es256_key();
    let auth = FakeAuthServer::start(AsConfig {
        issuer_path: Some("/tenant".into()),
        ..AsConfig::client_credentials(MachineClient {
            token_ttl_secs: 2,
            ..MachineClient::private_key_jwt("svc", &key)
        })
    })
    .await;
    let token_url = auth.url() + "/token";
    let (_, metadata) = get_json(&auth.metadata_url().expect("metadata URL")).await;
    assert_eq!(
        metadata["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "none",
            "private_key_jwt"
        ])
    );
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .expect("grant types")
            .contains(&json!("client_credentials"))
    );

    let header = json!({ "alg": "ES256", "typ": "JWT", "kid": "k1" });
    let claims = assertion_claims(&auth, "svc", "jti-1");
    let assertion = sign_jws(&key, &header, &claims);
    let mut grant = jwt_grant(&assertion);
    grant.push(("scope", "tools:read"));
    let (status, body) = post_form(&token_url, &grant, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "access_token": "at-1",
            "token_type": "Bearer",
            "expires_in": 2,
            "scope": "tools:read",
        })
    );
    assert_eq!(auth.token_subject("at-1").as_deref(), Some("svc"));
    assert_eq!(
        auth.assertions(),
        [json!({ "header": header, "claims": claims })]
    );
    let request = &auth.token_requests()[0];
    assert_eq!(request.client_auth, ClientAuth::PrivateKeyJwt);
    assert_eq!(
        request.client_id.as_deref(),
        Some("svc"),
        "from the assertion's sub"
    );
    assert_eq!(request.field("resource"), Some("https://mcp.example/mcp"));
    assert_eq!(request.field("client_assertion"), Some(assertion.as_str()));

    // Replaying the same assertion is refused.
    assert_eq!(
        post_form(&token_url, &jwt_grant(&assertion), None).await,
        invalid_client(),
        "replayed jti"
    );

    // A trailing slash on aud, an aud array and a matching client_id are all fine.
    let issuer_slash = format!("{}/", auth.issuer());
    for (n, aud) in [
        json!(issuer_slash),
        json!(["https://other.example", auth.issuer()]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut claims = assertion_claims(&auth, "svc", &format!("jti-ok-{n}"));
        claims["aud"] = aud;
        let assertion = sign_jws(&key, &header, &claims);
        let mut grant = jwt_grant(&assertion);
        grant.push(("client_id", "svc"));
        let (status, body) = post_form(&token_url, &grant, None).await;
        assert_eq!(status, 200, "{claims}: {body}");
    }

    // Every way an assertion can be wrong is invalid_client.
    let good = |jti: &str| assertion_claims(&auth, "svc", jti);
    let with = |jti: &str, name: &str, value: Value| {
        let mut claims = good(jti);
        claims[name] = value;
        claims
    };
    let without = |jti: &str, name: &str| {
        let mut claims = good(jti);
        claims.as_object_mut().expect("object").remove(name);
        claims
    };
    let signed = |claims: &Value| sign_jws(&key, &header, claims);
    let tampered = {
        let assertion = signed(&good("jti-tampered"));
        let mut parts: Vec<String> = assertion.split('.').map(str::to_owned).collect();
        let mut claims = good("jti-tampered");
        claims["sub"] = json!("svc");
        claims["scope"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        parts.join(".")
    };
    let flipped_signature = {
        let assertion = signed(&good("jti-flipped"));
        let (rest, signature) = assertion.rsplit_once('.').expect("three parts");
        let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        signature[10] ^= 1;
        format!("{rest}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none" }).to_string()),
        URL_SAFE_NO_PAD.encode(good("jti-none").to_string())
    );
    let cases = [
        (
            signed(&with("j1", "aud", json!("https://elsewhere.example"))),
            "wrong aud",
        ),
        (
            signed(&with("j2", "aud", json!(auth.url()))),
            "the origin, not the issuer",
        ),
        (signed(&without("j3", "aud")), "no aud"),
        (signed(&with("j4", "iss", json!("other"))), "wrong iss"),
        (signed(&with("j5", "sub", json!("other"))), "wrong sub"),
        (signed(&with("j6", "exp", json!(now() - 60))), "expired"),
        (
            signed(&with("j7", "exp", json!(now() + 600))),
            "exp too far ahead",
        ),
        (
            signed(&with("j8", "exp", json!("soon"))),
            "exp not a number",
        ),
        (signed(&without("j9", "exp")), "no exp"),
        (
            signed(&with("j10", "iat", json!(now() + 120))),
            "iat in the future",
        ),
        (
            signed(&with("j11", "nbf", json!(now() + 120))),
            "nbf in the future",
        ),
        (signed(&without("j12", "jti")), "no jti"),
        (signed(&with("j13", "jti", json!(""))), "empty jti"),
        (signed(&with("j14", "jti", json!(7))), "jti not a string"),
        (
            sign_jws(&key, &json!({ "alg": "RS256" }), &good("j15")),
            "wrong alg",
        ),
        (
            sign_jws(
                &key,
                &json!({ "alg": "ES256", "crit": ["exp"] }),
                &good("j16"),
            ),
            "unknown crit",
        ),
        (sign_jws(&other_key, &header, &good("j17")), "another key"),
        (tampered, "tampered claims"),
        (flipped_signature, "tampered signature"),
        (unsigned, "alg none"),
    ];
    let before = auth.assertions().len();
    for (assertion, why) in &cases {
        // Naming the client in the form, so a wrong `sub` is caught by itself.
        let mut grant = jwt_grant(assertion);
        grant.push(("client_id", "svc"));
        assert_eq!(
            post_form(&token_url, &grant, None).await,
            invalid_client(),
            "{why}"
        );
    }
    assert_eq!(auth.assertions().len(), before + cases.len());

    // A valid assertion sent the wrong way is refused too.
    let fresh = signed(&good("jti-form"));
    let mut wrong_type = jwt_grant(&fresh);
    wrong_type[1] = (
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    );
    let mut with_secret = jwt_grant(&fresh);
    with_secret.push(("client_secret", "guess"));
    let mut other_client = jwt_grant(&fresh);
    other_client.push(("client_id", "other"));
    for (grant, why) in [
        (wrong_type, "wrong assertion type"),
        (with_secret, "a secret as well"),
        (other_client, "client_id is not the assertion's"),
    ] {
        assert_eq!(
            post_form(&token_url, &grant, None).await,
            invalid_client(),
            "{why}"
        );
    }
    // None of those used the jti up.
    assert_eq!(post_form(&token_url, &jwt_grant(&fresh), None).await.0, 200);

    // The rejection switch refuses a good assertion without using its jti.
    let next = signed(&good("jti-switch"));
    auth.set_client_credentials_rejected(true);
    assert_eq!(
        post_form(&token_url, &jwt_grant(&next), None).await,
        invalid_client()
    );
    auth.set_client_credentials_rejected(false);
    let (status, body) = post_form(&token_url, &jwt_grant(&next), None).await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert!(body.get("refresh_token").is_none());

    // The token lives as long as expires_in said.
    assert_eq!(auth.token_subject(&token).as_deref(), Some("svc"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(auth.token_subject(&token), None);
}

#[tokio::test]
async fn hostile_assertions_are_refused_without_panicking() {
    let key = jws::generate_es256_key();
    let auth = FakeAuthServer::start(AsConfig::client_credentials(
        MachineClient::private_key_jwt("svc", &key),
    ))
    .await;
    let token_url = auth.url() + "/token";
    let object = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let good_header = object(&json!({ "alg": "ES256" }));
    let good_claims = object(&assertion_claims(&auth, "svc", "j"));
    let huge = format!(
        "{good_header}.{}.{}",
        "A".repeat(MAX_ASSERTION_BYTES),
        "A".repeat(86)
    );
    let hostile = [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a.b".into(),
        "a.b.c.d".into(),
        "!!!.###.$$$".into(),
        format!("{good_header}.{good_claims}"),
        format!("{good_header}.{good_claims}.%%%"),
        format!("{good_header}.{good_claims}.AAAA"),
        format!("{good_header}=.{good_claims}.AAAA"),
        format!("{}.{good_claims}.AAAA", object(&json!(["ES256"]))),
        format!("{}.{good_claims}.AAAA", URL_SAFE_NO_PAD.encode("not json")),
        format!(
            "{good_header}.{}.AAAA",
            URL_SAFE_NO_PAD.encode([0xff, 0xfe])
        ),
        format!("{}.{good_claims}.AAAA", object(&json!({ "alg": 256 }))),
        format!(
            "{good_header}.{}.AAAA",
            object(&json!({ "iss": ["svc"], "exp": 1e308 }))
        ),
        huge,
    ];
    for assertion in &hostile {
        assert_eq!(
            post_form(&token_url, &jwt_grant(assertion), None).await,
            invalid_client(),
            "{assertion:.80}"
        );
    }
    let recorded = auth.assertions();
    assert_eq!(recorded.len(), hostile.len());
    assert_eq!(recorded[0], json!({ "header": null, "claims": null }));
    assert_eq!(recorded[6], json!({ "header": null, "claims": null }));
    assert_eq!(
        recorded[7],
        json!({ "header": null, "claims": null }),
        "two segments are not an assertion"
    );
    assert_eq!(recorded[8]["header"], json!({ "alg": "ES256" }));
    assert_eq!(recorded[8]["claims"]["sub"], "svc");
    assert_eq!(
        recorded[11]["header"],
        Value::Null,
        "a header that is an array"
    );
    assert_eq!(recorded[11]["claims"]["sub"], "svc");
    assert_eq!(
        recorded.last(),
        Some(&json!({ "header": null, "claims": null })),
        "too long to read"
    );

    // The form fields alone, without an assertion, are no authentication either.
    let grant = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_id", "svc"),
    ];
    assert_eq!(post_form(&token_url, &grant, None).await, invalid_client());
    // Nor can a public client of the code flow claim private_key_jwt without a key.
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        token_auth_methods: vec!["none".into(), "private_key_jwt".into()],
        ..AsConfig::client_credentials(MachineClient::private_key_jwt("svc", &key))
    })
    .await;
    let code = code_for(&auth, "public").await;
    let mut exchange_form = exchange(&code, "public");
    exchange_form.push(("client_assertion_type", JWT_BEARER_ASSERTION_TYPE));
    exchange_form.push(("client_assertion", "x.y.z"));
    assert_eq!(
        post_form(&(auth.url() + "/token"), &exchange_form, None).await,
        invalid_client()
    );
}

#[tokio::test]
async fn client_credentials_with_an_rs256_assertion() {
    let key = jws::generate_rs256_key();
    assert_eq!(key.alg, JwsAlg::Rs256);
    assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let auth = FakeAuthServer::start(AsConfig::client_credentials(
        MachineClient::private_key_jwt("rsa-svc", &key),
    ))
    .await;
    let token_url = auth.url() + "/token";
    let (_, metadata) = get_json(&auth.metadata_url().expect("metadata URL")).await;
    assert_eq!(
        metadata["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS256"])
    );

    let header = json!({ "alg": "RS256", "typ": "JWT" });
    let assertion = sign_jws(&key, &header, &assertion_claims(&auth, "rsa-svc", "r1"));
    let (status, body) = post_form(&token_url, &jwt_grant(&assertion), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        auth.token_subject(body["access_token"].as_str().expect("token"))
            .as_deref(),
        Some("rsa-svc")
    );
    assert!(body.get("refresh_token").is_none());

    let es_key = jws::generate_es256_key();
    let mut tampered = sign_jws(&key, &header, &assertion_claims(&auth, "rsa-svc", "r2"));
    let last = tampered.pop().expect("a signature");
    tampered.push(if last == 'A' { 'Q' } else { 'A' });
    for (assertion, why) in [
        (
            sign_jws(
                &key,
                &json!({ "alg": "ES256" }),
                &assertion_claims(&auth, "rsa-svc", "r3"),
            ),
            "wrong alg",
        ),
        (
            sign_jws(
                &es_key,
                &json!({ "alg": "RS256" }),
                &assertion_claims(&auth, "rsa-svc", "r4"),
            ),
            "an ES256 signature under RS256",
        ),
        (tampered, "tampered signature"),
        (assertion, "replayed"),
    ] {
        assert_eq!(
            post_form(&token_url, &jwt_grant(&assertion), None).await,
            invalid_client(),
            "{why}"
        );
    }
}
