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
use switchboard_testkit::fake_mcp::{
    self, Era, FakeMcpServer, McpAuth, McpConfig, Mode, PrmLocation,
};
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

// The modern era (2026-07-28): stateless requests, mirrored headers, multi round-trip tools
// and listen streams.

const MODERN: &str = fake_mcp::MODERN_PROTOCOL_VERSION;

/// Client capabilities declaring both elicitation modes.
fn elicits() -> Value {
    json!({ "elicitation": { "form": {}, "url": {} } })
}

/// `params` with the per-request `_meta` of a 2026 client declaring `capabilities`.
fn with_meta(mut params: Value, capabilities: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": { "name": "test", "version": "0" },
    });
    params
}

/// POST one message as is; returns the status and the JSON body (`Null` if none).
async fn post_raw(mcp: &FakeMcpServer, headers: &[(&str, &str)], message: Value) -> (u16, Value) {
    let response = rpc(mcp, headers, message).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A modern request as a conforming client sends it: `_meta` declaring `capabilities`, and
/// the `MCP-Protocol-Version`, `Mcp-Method` and (for `tools/call`) `Mcp-Name` headers, plus
/// `extra` headers.
async fn modern_with(
    mcp: &FakeMcpServer,
    id: u64,
    method: &str,
    params: Value,
    capabilities: Value,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let name = params["name"].as_str().unwrap_or_default().to_owned();
    let mut headers = vec![("mcp-protocol-version", MODERN), ("mcp-method", method)];
    if method == "tools/call" {
        headers.push(("mcp-name", &name));
    }
    headers.extend_from_slice(extra);
    let message = call(id, method, with_meta(params, capabilities));
    post_raw(mcp, &headers, message).await
}

/// [`modern_with`], declaring both elicitation modes and no extra headers.
async fn modern(mcp: &FakeMcpServer, id: u64, method: &str, params: Value) -> (u16, Value) {
    modern_with(mcp, id, method, params, elicits(), &[]).await
}

async fn modern_server(tools: Vec<Value>) -> FakeMcpServer {
    FakeMcpServer::start(McpConfig {
        tools,
        era: Era::Modern,
        ..McpConfig::default()
    })
    .await
}

fn server_info() -> Value {
    json!({ "io.modelcontextprotocol/serverInfo": { "name": "fake-mcp", "version": "1.0.0" } })
}

#[tokio::test]
async fn modern_era_refuses_initialize_and_keeps_no_sessions() {
    let mcp = FakeMcpServer::start(McpConfig {
        era: Era::Modern,
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    assert_eq!(mcp.era(), Era::Modern);
    let response = rpc(&mcp, &[], initialize()).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("mcp-session-id").is_none());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "jsonrpc": "2.0", "id": 1, "error": {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": { "supported": ["2026-07-28"], "requested": "2025-11-25" },
        } })
    );
    assert_eq!(mcp.sessions_issued(), Vec::<String>::new());

    // No session is needed, and one sent is ignored.
    let (status, body) = modern_with(
        &mcp,
        2,
        "tools/list",
        json!({}),
        json!({}),
        &[("mcp-session-id", "from-elsewhere")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["tools"][0]["name"], "echo");

    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = http()
            .request(method.clone(), mcp.url())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    assert_eq!(mcp.count("initialize"), 1);
    assert_eq!(mcp.count("tools/list"), 1);
}

#[tokio::test]
async fn modern_era_discovers_lists_and_calls() {
    let mcp = FakeMcpServer::start(McpConfig {
        era: Era::Modern,
        tools: ["a", "b", "c"].map(fake_mcp::tool).to_vec(),
        page_size: 2,
        list_ttl_ms: 5_000,
        ..McpConfig::default()
    })
    .await;
    let (status, body) = modern(&mcp, 1, "server/discover", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "jsonrpc": "2.0", "id": 1, "result": {
            "resultType": "complete",
            "supportedVersions": ["2026-07-28"],
            "capabilities": { "tools": { "listChanged": true } },
            "ttlMs": 5_000,
            "cacheScope": "private",
            "_meta": server_info(),
        } })
    );

    let (status, body) = modern(&mcp, 2, "tools/list", json!({})).await;
    assert_eq!(status, 200);
    let page = &body["result"];
    assert_eq!(page["resultType"], "complete");
    assert_eq!(page["ttlMs"], 5_000);
    assert_eq!(page["cacheScope"], "private");
    assert_eq!(page["_meta"], server_info());
    assert_eq!(page["tools"].as_array().expect("tools").len(), 2);
    assert_eq!(page["nextCursor"], "2");
    let (_, body) = modern(&mcp, 3, "tools/list", json!({ "cursor": "2" })).await;
    assert_eq!(body["result"]["tools"][0]["name"], "c");
    assert!(body["result"].get("nextCursor").is_none());
    let (status, body) = modern(&mcp, 4, "tools/list", json!({ "cursor": "x" })).await;
    assert_eq!((status, &body["error"]["code"]), (200, &json!(-32602)));

    let arguments = json!({ "message": "hi" });
    let (_, body) = modern(
        &mcp,
        5,
        "tools/call",
        json!({ "name": "b", "arguments": arguments }),
    )
    .await;
    assert_eq!(
        body["result"],
        json!({
            "resultType": "complete",
            "content": [{ "type": "text", "text": arguments.to_string() }],
            "structuredContent": arguments,
            "isError": false,
            "_meta": server_info(),
        })
    );
    let (status, body) = modern(&mcp, 6, "tools/call", json!({ "name": "nope" })).await;
    assert_eq!((status, &body["error"]["code"]), (200, &json!(-32602)));
    assert_eq!(body["id"], 6);

    // ping is gone in 2026; unknown methods get 404 with -32601.
    let (status, body) = modern(&mcp, 7, "ping", json!({})).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!(-32601)));
    assert_eq!(body["id"], 7);
    let notification = json!({ "jsonrpc": "2.0", "method": "notifications/anything" });
    assert_eq!(post_raw(&mcp, &[], notification).await.0, 202);

    // The loop switch applies to modern listings too.
    mcp.set_mode(Mode::RepeatingCursor);
    let (_, body) = modern(&mcp, 8, "tools/list", json!({ "cursor": "again" })).await;
    assert_eq!(body["result"]["nextCursor"], "again");
    assert_eq!(body["result"]["resultType"], "complete");
    mcp.set_mode(Mode::Normal);

    let sent = mcp.requests();
    assert_eq!(sent[0].header("mcp-method"), Some("server/discover"));
    assert_eq!(sent[0].header("mcp-protocol-version"), Some(MODERN));
    assert_eq!(mcp.posted()[4]["params"]["name"], "b");
    assert_eq!(mcp.count("tools/list"), 4);
}

#[tokio::test]
async fn modern_requests_need_their_meta_and_matching_headers() {
    let mcp = modern_server(vec![fake_mcp::echo_tool()]).await;
    let list = |params: Value| call(1, "tools/list", params);
    let headers = [
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/list"),
    ];
    let code = |body: &Value| body["error"]["code"].as_i64().expect("an error code");

    // _meta keys are required.
    let (status, body) = post_raw(&mcp, &headers, list(json!({}))).await;
    assert_eq!((status, code(&body)), (400, -32602));
    assert_eq!(body["id"], 1);
    let mut params = with_meta(json!({}), json!({}));
    params["_meta"]
        .as_object_mut()
        .expect("meta")
        .remove("io.modelcontextprotocol/clientCapabilities");
    let (status, body) = post_raw(&mcp, &headers, list(params)).await;
    assert_eq!((status, code(&body)), (400, -32602));

    // The version header must be there and equal the body's.
    let good = with_meta(json!({}), json!({}));
    let (status, body) = post_raw(&mcp, &headers[1..], list(good.clone())).await;
    assert_eq!((status, code(&body)), (400, -32020));
    let other = [
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-method", "tools/list"),
    ];
    let (status, body) = post_raw(&mcp, &other, list(good.clone())).await;
    assert_eq!((status, code(&body)), (400, -32020));

    // An unknown version, consistently sent, is unsupported.
    let mut future = good.clone();
    future["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let future_headers = [
        ("mcp-protocol-version", "2099-01-01"),
        ("mcp-method", "tools/list"),
    ];
    let (status, body) = post_raw(&mcp, &future_headers, list(future)).await;
    assert_eq!((status, code(&body)), (400, -32022));
    assert_eq!(
        body["error"]["data"],
        json!({ "supported": ["2026-07-28"], "requested": "2099-01-01" })
    );

    // Mcp-Method must name the method.
    let wrong = [
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
    ];
    let (status, body) = post_raw(&mcp, &wrong, list(good.clone())).await;
    assert_eq!((status, code(&body)), (400, -32020));
    let (status, body) = post_raw(&mcp, &headers[..1], list(good.clone())).await;
    assert_eq!((status, code(&body)), (400, -32020));
    assert_eq!(post_raw(&mcp, &headers, list(good)).await.0, 200);

    // Mcp-Name must name the tool, plainly or in the base64 form.
    let echo = |name: &str| {
        call(
            2,
            "tools/call",
            with_meta(json!({ "name": name, "arguments": {} }), json!({})),
        )
    };
    let call_headers = |name: &'static str| {
        [
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", name),
        ]
    };
    let (status, body) = post_raw(&mcp, &call_headers("echo")[..2], echo("echo")).await;
    assert_eq!((status, code(&body)), (400, -32020));
    let (status, body) = post_raw(&mcp, &call_headers("fail"), echo("echo")).await;
    assert_eq!((status, code(&body)), (400, -32020));
    let (status, body) = post_raw(&mcp, &call_headers("=?base64?ZWNobw==?="), echo("echo")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["resultType"], "complete");
    let (status, body) = post_raw(&mcp, &call_headers("=?base64?!!?="), echo("echo")).await;
    assert_eq!((status, code(&body)), (400, -32020));
    assert_eq!(mcp.count("tools/call"), 4);
}

#[tokio::test]
async fn modern_calls_mirror_annotated_arguments_in_headers() {
    let mcp = modern_server(vec![
        fake_mcp::region_tool(),
        fake_mcp::invalid_header_tool(),
    ])
    .await;
    let (_, body) = modern(&mcp, 1, "tools/list", json!({})).await;
    assert_eq!(
        body["result"]["tools"],
        json!([fake_mcp::region_tool(), fake_mcp::invalid_header_tool()]),
        "the invalid annotation is listed all the same"
    );
    assert_eq!(
        fake_mcp::region_tool()["inputSchema"]["properties"]["region"]["x-mcp-header"],
        "Region"
    );

    let regional = |arguments: Value| json!({ "name": "regional", "arguments": arguments });
    let all = json!({ "region": "us-west1", "priority": 42, "verbose": false, "query": "q" });
    let headers = [
        ("mcp-param-region", "us-west1"),
        ("mcp-param-priority", "42"),
        ("mcp-param-verbose", "false"),
    ];
    let (status, body) = modern_with(
        &mcp,
        2,
        "tools/call",
        regional(all.clone()),
        json!({}),
        &headers,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"], all);
    let sent = mcp.requests().pop().expect("the call");
    assert_eq!(sent.header("mcp-param-priority"), Some("42"));
    assert_eq!(sent.header("mcp-name"), Some("regional"));

    let refused = |status: u16, body: &Value| status == 400 && body["error"]["code"] == -32020;
    // A header missing, different, or sent for an absent argument.
    for (headers, why) in [
        (&headers[1..], "Region missing"),
        (
            &[
                ("mcp-param-region", "eu-west1"),
                ("mcp-param-priority", "42"),
                ("mcp-param-verbose", "false"),
            ][..],
            "Region differs",
        ),
        (
            &[
                ("mcp-param-region", "us-west1"),
                ("mcp-param-priority", "41"),
                ("mcp-param-verbose", "false"),
            ][..],
            "Priority differs",
        ),
        (
            &[
                ("mcp-param-region", "us-west1"),
                ("mcp-param-priority", "42"),
                ("mcp-param-verbose", "False"),
            ][..],
            "Verbose is case-sensitive",
        ),
    ] {
        let (status, body) = modern_with(
            &mcp,
            3,
            "tools/call",
            regional(all.clone()),
            json!({}),
            headers,
        )
        .await;
        assert!(refused(status, &body), "{why}: {status} {body}");
    }
    let (status, body) = modern_with(
        &mcp,
        4,
        "tools/call",
        regional(json!({ "query": "q" })),
        json!({}),
        &[("mcp-param-region", "us-west1")],
    )
    .await;
    assert!(refused(status, &body), "a header for an absent argument");

    // Null and absent arguments take no header; unannotated ones never do.
    let (status, _) = modern_with(
        &mcp,
        5,
        "tools/call",
        regional(json!({ "region": null, "query": "q" })),
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200);

    // Values a header cannot carry plainly travel base64-encoded; the server decodes them.
    let zurich = format!("=?base64?{}?=", STANDARD.encode("Zürich "));
    let (status, body) = modern_with(
        &mcp,
        6,
        "tools/call",
        regional(json!({ "region": "Zürich " })),
        json!({}),
        &[("mcp-param-region", &zurich)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = modern_with(
        &mcp,
        7,
        "tools/call",
        regional(json!({ "region": "Zürich " })),
        json!({}),
        &[("mcp-param-region", "Zurich")],
    )
    .await;
    assert!(refused(status, &body));

    // The invalid annotation cannot be checked, so the tool answers whatever is sent.
    let (status, body) = modern(
        &mcp,
        8,
        "tools/call",
        json!({ "name": "bad_header", "arguments": { "value": "v" } }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["structuredContent"], json!({ "value": "v" }));
}

/// The form the `confirm` tools ask for.
fn confirm_request() -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": "Confirm the action",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "confirmed": { "type": "boolean", "title": "Confirmed" },
                    "note": { "type": "string", "maxLength": 100 },
                },
                "required": ["confirmed"],
            },
        },
    })
}

#[tokio::test]
async fn confirm_takes_two_rounds_bound_to_a_sealed_state() {
    let mcp = modern_server(vec![fake_mcp::confirm_tool(), fake_mcp::survey_tool()]).await;
    let (status, body) = modern(&mcp, 1, "tools/call", json!({ "name": "confirm" })).await;
    assert_eq!(status, 200);
    let first = body["result"].clone();
    let state = first["requestState"].as_str().expect("a state").to_owned();
    assert_eq!(
        first,
        json!({
            "resultType": "input_required",
            "inputRequests": { "confirm": confirm_request() },
            "requestState": state,
            "_meta": server_info(),
        })
    );

    let answer = json!({ "action": "accept", "content": { "confirmed": true, "note": "ok" } });
    let retry = |state: Value| {
        json!({
            "name": "confirm",
            "inputResponses": { "confirm": answer },
            "requestState": state,
        })
    };
    let (status, body) = modern(&mcp, 2, "tools/call", retry(json!(state))).await;
    assert_eq!(status, 200);
    let structured = json!({ "action": "accept", "content": answer["content"], "rounds": 2 });
    assert_eq!(
        body["result"],
        json!({
            "resultType": "complete",
            "content": [{ "type": "text", "text": structured.to_string() }],
            "structuredContent": structured,
            "isError": false,
            "_meta": server_info(),
        })
    );

    // The state is checked, not trusted: tampered, missing, foreign or not a string.
    let mut tampered = state.clone();
    let last = tampered.pop().expect("a character");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (_, survey) = modern(&mcp, 3, "tools/call", json!({ "name": "survey" })).await;
    let survey_state = survey["result"]["requestState"].clone();
    for (state, why) in [
        (json!(tampered), "tampered"),
        (Value::Null, "missing"),
        (survey_state, "another tool's"),
        (json!(42), "not a string"),
    ] {
        let mut params = retry(state);
        if params["requestState"].is_null() {
            params
                .as_object_mut()
                .expect("params")
                .remove("requestState");
        }
        let (status, body) = modern(&mcp, 4, "tools/call", params).await;
        assert_eq!(status, 200, "{why}");
        assert_eq!(
            body["error"],
            json!({ "code": -32602, "message": "invalid request state" }),
            "{why}"
        );
    }

    // A decline completes too; a retry without the answer is asked again.
    let (_, body) = modern(
        &mcp,
        5,
        "tools/call",
        json!({ "name": "confirm", "inputResponses": { "confirm": { "action": "decline" } },
                "requestState": state }),
    )
    .await;
    assert_eq!(
        body["result"]["structuredContent"],
        json!({ "action": "decline", "content": null, "rounds": 2 })
    );
    let (_, body) = modern(
        &mcp,
        6,
        "tools/call",
        json!({ "name": "confirm", "requestState": state }),
    )
    .await;
    assert_eq!(body["result"]["resultType"], "input_required");
    assert_ne!(body["result"]["requestState"], json!(state));

    // A client that cannot elicit is told what the call needs.
    let (status, body) = modern_with(
        &mcp,
        7,
        "tools/call",
        json!({ "name": "confirm" }),
        json!({ "elicitation": { "url": {} } }),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        json!({
            "code": -32021,
            "message": "Server requires the elicitation capability for this request",
            "data": { "requiredCapabilities": { "elicitation": { "form": {} } } },
        })
    );
    let (status, _) = modern_with(
        &mcp,
        8,
        "tools/call",
        json!({ "name": "confirm" }),
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = modern_with(
        &mcp,
        9,
        "tools/call",
        json!({ "name": "confirm" }),
        json!({ "elicitation": {} }),
        &[],
    )
    .await;
    assert_eq!(status, 200, "an empty elicitation capability means form");

    let received = mcp.input_responses("confirm");
    assert_eq!(received.len(), 6, "{received:?}");
    assert_eq!(received[0], json!({ "confirm": answer }));
    assert_eq!(received[5], json!({ "confirm": { "action": "decline" } }));
    assert!(mcp.input_responses("survey").is_empty());
}

#[tokio::test]
async fn the_request_state_is_bound_to_the_caller() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        ..AsConfig::default()
    })
    .await;
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![fake_mcp::confirm_tool()],
        auth: McpAuth::oauth(&auth),
        era: Era::Modern,
        ..McpConfig::default()
    })
    .await;
    let token_url = auth.url() + "/token";
    let mut tokens = Vec::new();
    for subject in ["alice", "bob"] {
        auth.set_subject(subject);
        let code = code_for(&auth, "public").await;
        let (_, body) = post_form(&token_url, &exchange(&code, "public"), None).await;
        tokens.push(format!(
            "Bearer {}",
            body["access_token"].as_str().expect("token")
        ));
    }
    let alice = [("authorization", tokens[0].as_str())];
    let bob = [("authorization", tokens[1].as_str())];

    let confirm = json!({ "name": "confirm" });
    let (_, body) = modern_with(&mcp, 1, "tools/call", confirm, elicits(), &alice).await;
    let state = body["result"]["requestState"].clone();
    let retry = json!({
        "name": "confirm",
        "inputResponses": { "confirm": { "action": "cancel" } },
        "requestState": state,
    });
    let (_, body) = modern_with(&mcp, 2, "tools/call", retry.clone(), elicits(), &bob).await;
    assert_eq!(
        body["error"]["code"], -32602,
        "bob cannot use alice's state"
    );
    let (_, body) = modern_with(&mcp, 3, "tools/call", retry, elicits(), &alice).await;
    assert_eq!(body["result"]["structuredContent"]["action"], "cancel");
}

#[tokio::test]
async fn survey_asks_two_questions_over_three_requests() {
    let mcp = modern_server(vec![fake_mcp::survey_tool()]).await;
    let (_, body) = modern(&mcp, 1, "tools/call", json!({ "name": "survey" })).await;
    let first = &body["result"];
    assert_eq!(first["resultType"], "input_required");
    let asked = &first["inputRequests"]["name"];
    assert_eq!(asked["method"], "elicitation/create");
    assert_eq!(
        asked["params"]["requestedSchema"]["properties"]["name"]["type"],
        "string"
    );
    assert_eq!(
        asked["params"]["requestedSchema"]["required"],
        json!(["name"])
    );
    let state1 = first["requestState"].clone();

    let name = json!({ "action": "accept", "content": { "name": "Ada" } });
    let (_, body) = modern(
        &mcp,
        2,
        "tools/call",
        json!({ "name": "survey", "inputResponses": { "name": name }, "requestState": state1 }),
    )
    .await;
    let second = &body["result"];
    assert_eq!(second["resultType"], "input_required");
    assert!(second["inputRequests"].get("name").is_none());
    assert_eq!(
        second["inputRequests"]["color"]["params"]["requestedSchema"]["properties"]["color"]["enum"],
        json!(["red", "green", "blue"])
    );
    let state2 = second["requestState"].clone();
    assert!(state2.is_string());
    assert_ne!(state2, state1);

    let color = json!({ "action": "accept", "content": { "color": "green" } });
    let (_, body) = modern(
        &mcp,
        3,
        "tools/call",
        json!({ "name": "survey", "inputResponses": { "color": color }, "requestState": state2 }),
    )
    .await;
    assert_eq!(body["result"]["resultType"], "complete");
    assert_eq!(
        body["result"]["structuredContent"],
        json!({ "action": "accept", "name": "Ada", "color": "green", "rounds": 3 })
    );
    assert_eq!(
        mcp.input_responses("survey"),
        [json!({ "name": name }), json!({ "color": color })]
    );

    // The round-1 state only answers the first question; a decline ends the survey.
    let (_, body) = modern(
        &mcp,
        4,
        "tools/call",
        json!({ "name": "survey", "inputResponses": { "name": { "action": "decline" } },
                "requestState": state1 }),
    )
    .await;
    assert_eq!(
        body["result"]["structuredContent"],
        json!({ "action": "decline", "name": null, "color": null, "rounds": 2 })
    );
    assert_eq!(mcp.count("tools/call"), 4);
}

#[tokio::test]
async fn open_url_and_stateless_confirm() {
    let mcp = modern_server(vec![
        fake_mcp::open_url_tool(),
        fake_mcp::confirm_stateless_tool(),
    ])
    .await;
    let (_, body) = modern(&mcp, 1, "tools/call", json!({ "name": "open_url" })).await;
    let asked = &body["result"]["inputRequests"]["consent"];
    assert_eq!(asked["method"], "elicitation/create");
    assert_eq!(asked["params"]["mode"], "url");
    assert_eq!(asked["params"]["message"], "Sign in to continue");
    let url = asked["params"]["url"].as_str().expect("a URL");
    assert!(
        url.starts_with(&format!("{}/consent?id=", mcp.origin())),
        "{url}"
    );
    assert!(asked["params"].get("elicitationId").is_none());
    let state = body["result"]["requestState"].clone();
    for (action, text) in [
        ("accept", "consented"),
        ("decline", "decline"),
        ("cancel", "cancel"),
    ] {
        let (_, body) = modern(
            &mcp,
            2,
            "tools/call",
            json!({ "name": "open_url", "inputResponses": { "consent": { "action": action } },
                    "requestState": state }),
        )
        .await;
        assert_eq!(body["result"]["content"][0]["text"], text);
        assert_eq!(
            body["result"]["structuredContent"],
            json!({ "action": action, "rounds": 2 })
        );
    }
    let (status, body) = modern_with(
        &mcp,
        3,
        "tools/call",
        json!({ "name": "open_url" }),
        json!({ "elicitation": {} }),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["data"],
        json!({ "requiredCapabilities": { "elicitation": { "url": {} } } })
    );

    let (_, body) = modern(
        &mcp,
        4,
        "tools/call",
        json!({ "name": "confirm_stateless" }),
    )
    .await;
    assert_eq!(
        body["result"],
        json!({
            "resultType": "input_required",
            "inputRequests": { "confirm": confirm_request() },
            "_meta": server_info(),
        })
    );
    let answer = json!({ "action": "accept", "content": { "confirmed": false } });
    let (_, body) = modern(
        &mcp,
        5,
        "tools/call",
        json!({ "name": "confirm_stateless", "inputResponses": { "confirm": answer } }),
    )
    .await;
    assert_eq!(
        body["result"]["structuredContent"],
        json!({ "action": "accept", "content": { "confirmed": false }, "rounds": 2 })
    );
    let (_, body) = modern(
        &mcp,
        6,
        "tools/call",
        json!({ "name": "confirm_stateless", "inputResponses": { "confirm": answer },
                "requestState": "anything" }),
    )
    .await;
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(mcp.input_responses("confirm_stateless").len(), 2);
    assert_eq!(mcp.input_responses("open_url").len(), 3);
}

#[tokio::test]
async fn legacy_eras_answer_input_tools_with_a_tool_error() {
    let mcp = FakeMcpServer::start(McpConfig {
        tools: vec![fake_mcp::confirm_tool(), fake_mcp::survey_tool()],
        ..McpConfig::default()
    })
    .await;
    assert_eq!(mcp.era(), Era::Legacy);
    for era in [Era::Legacy, Era::Both] {
        mcp.set_era(era);
        for tool in ["confirm", "survey"] {
            let (status, body) =
                post_raw(&mcp, &[], call(1, "tools/call", json!({ "name": tool }))).await;
            assert_eq!(status, 200);
            assert_eq!(
                body["result"],
                json!({ "content": [{ "type": "text", "text": "needs input" }], "isError": true }),
                "{era:?} {tool}"
            );
        }
    }
}

/// Reads server-sent events from a response, skipping comments.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next event's data as JSON; `None` when the stream ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("JSON data"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("an event within 5 s")
                .expect("a readable stream")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

async fn listen(mcp: &FakeMcpServer, id: Value, filter: Value) -> Events {
    let message = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "subscriptions/listen",
        "params": with_meta(json!({ "notifications": filter }), json!({})),
    });
    let response = rpc(
        mcp,
        &[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "subscriptions/listen"),
        ],
        message,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    Events {
        response,
        buffer: String::new(),
    }
}

/// Wait until the server counts `expected` open listen streams.
async fn wait_for_listeners(mcp: &FakeMcpServer, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while mcp.listeners() != expected {
        assert!(
            Instant::now() < deadline,
            "{} listeners, expected {expected}",
            mcp.listeners()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn listen_streams_acknowledge_then_carry_list_changes() {
    let mcp = modern_server(vec![fake_mcp::echo_tool()]).await;
    let filter = json!({ "toolsListChanged": true, "promptsListChanged": true });
    let mut tools = listen(&mcp, json!("listen-1"), filter).await;
    assert_eq!(
        tools.next().await,
        Some(json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {
                "_meta": { "io.modelcontextprotocol/subscriptionId": "listen-1" },
                "notifications": { "toolsListChanged": true },
            },
        }))
    );
    let mut quiet = listen(&mcp, json!(7), json!({ "resourcesListChanged": true })).await;
    assert_eq!(
        quiet.next().await.expect("an acknowledgement")["params"],
        json!({ "_meta": { "io.modelcontextprotocol/subscriptionId": 7 }, "notifications": {} })
    );
    assert_eq!(mcp.listeners(), 2);

    mcp.set_tools(vec![fake_mcp::tool("new")]);
    let changed = json!({
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
        "params": { "_meta": { "io.modelcontextprotocol/subscriptionId": "listen-1" } },
    });
    assert_eq!(tools.next().await, Some(changed.clone()));
    mcp.set_tools_for("anonymous", vec![]);
    mcp.set_tools(vec![fake_mcp::echo_tool()]);
    assert_eq!(
        tools.next().await,
        Some(changed),
        "one per change, for this caller"
    );

    // A graceful end: the final result, then the end of the stream.
    mcp.close_listeners();
    assert_eq!(mcp.listeners(), 0);
    let end = |id: Value| {
        let mut meta = server_info();
        meta["io.modelcontextprotocol/subscriptionId"] = id.clone();
        json!({ "jsonrpc": "2.0", "id": id, "result": { "resultType": "complete", "_meta": meta } })
    };
    assert_eq!(tools.next().await, Some(end(json!("listen-1"))));
    assert_eq!(tools.next().await, None);
    assert_eq!(quiet.next().await, Some(end(json!(7))));
    assert_eq!(
        quiet.next().await,
        None,
        "nothing was sent it had not asked for"
    );

    // An abrupt end: the stream just stops.
    let mut again = listen(&mcp, json!(8), json!({ "toolsListChanged": true })).await;
    again.next().await.expect("an acknowledgement");
    mcp.drop_listeners();
    assert_eq!(again.next().await, None);

    // A client that goes away stops being counted.
    let mut gone = listen(&mcp, json!(9), json!({ "toolsListChanged": true })).await;
    gone.next().await.expect("an acknowledgement");
    assert_eq!(mcp.listeners(), 1);
    drop(gone);
    wait_for_listeners(&mcp, 0).await;
    assert_eq!(mcp.count("subscriptions/listen"), 4);
}

#[tokio::test]
async fn listen_streams_hear_only_their_subjects_catalogue() {
    let auth = FakeAuthServer::start(AsConfig {
        preregistered: vec![("public".into(), None)],
        ..AsConfig::default()
    })
    .await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        era: Era::Modern,
        ..McpConfig::default()
    })
    .await;
    let token_url = auth.url() + "/token";
    let mut streams = Vec::new();
    for (id, subject) in [(1, "alice"), (2, "bob")] {
        auth.set_subject(subject);
        let code = code_for(&auth, "public").await;
        let (_, body) = post_form(&token_url, &exchange(&code, "public"), None).await;
        let token = format!("Bearer {}", body["access_token"].as_str().expect("token"));
        let message = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "subscriptions/listen",
            "params": with_meta(json!({ "notifications": { "toolsListChanged": true } }), json!({})),
        });
        let response = rpc(
            &mcp,
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "subscriptions/listen"),
                ("authorization", &token),
            ],
            message,
        )
        .await;
        let mut events = Events {
            response,
            buffer: String::new(),
        };
        events.next().await.expect("an acknowledgement");
        streams.push(events);
    }
    mcp.set_tools_for("bob", vec![fake_mcp::tool("bobs")]);
    mcp.set_tools(vec![]);
    let subscription = |event: Option<Value>| {
        let event = event.expect("an event");
        assert_eq!(event["method"], "notifications/tools/list_changed");
        event["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"].clone()
    };
    // Alice hears only the common change; bob hears his own first.
    assert_eq!(subscription(streams[0].next().await), 1);
    assert_eq!(subscription(streams[1].next().await), 2);
    assert_eq!(subscription(streams[1].next().await), 2);
    mcp.drop_listeners();
    assert_eq!(streams[0].next().await, None);
    assert_eq!(streams[1].next().await, None);
}

#[tokio::test]
async fn both_eras_answer_legacy_and_modern_requests() {
    let mcp = FakeMcpServer::start(McpConfig {
        era: Era::Both,
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    let response = rpc(&mcp, &[], initialize()).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");

    // Legacy requests follow the handshake: with the session, without resultType.
    let legacy = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let (status, body) = post_raw(&mcp, &legacy, call(2, "tools/list", json!({}))).await;
    assert_eq!(status, 200);
    assert!(body["result"].get("resultType").is_none());
    assert_eq!(body["result"]["tools"][0]["name"], "echo");
    let (status, _) = post_raw(&mcp, &legacy[1..], call(3, "tools/list", json!({}))).await;
    assert_eq!(status, 400, "a legacy request needs its session");

    // Modern requests need no session.
    let (status, body) = modern(&mcp, 4, "server/discover", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["supportedVersions"], json!(["2026-07-28"]));
    let (_, body) = modern(&mcp, 5, "tools/list", json!({})).await;
    assert_eq!(body["result"]["resultType"], "complete");
    // A discover without its _meta is still a modern request, refused as such.
    let (status, body) = post_raw(&mcp, &[], call(6, "server/discover", json!({}))).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!(-32602)));

    // Back to legacy only: discover is unknown again.
    mcp.set_era(Era::Legacy);
    let (status, body) = post_raw(
        &mcp,
        &legacy,
        call(7, "server/discover", with_meta(json!({}), json!({}))),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (200, &json!(-32601)));
    assert_eq!(mcp.sessions_issued(), [session]);
}

#[tokio::test]
async fn the_legacy_default_answers_discover_as_unknown() {
    assert_eq!(McpConfig::default().era, Era::Legacy);
    assert_eq!(McpConfig::default().list_ttl_ms, 0);
    let discover = || call(1, "server/discover", with_meta(json!({}), json!({})));
    let headers = [
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "server/discover"),
    ];
    let mcp = FakeMcpServer::start(McpConfig::default()).await;
    let (status, body) = post_raw(&mcp, &headers, discover()).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "jsonrpc": "2.0", "id": 1,
                    "error": { "code": -32601, "message": "Method not found" } })
        )
    );
    let (status, body) = post_raw(
        &mcp,
        &headers,
        call(2, "subscriptions/listen", with_meta(json!({}), json!({}))),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (200, &json!(-32601)));
    let (status, body) = post_raw(&mcp, &[], initialize()).await;
    assert_eq!(
        (status, &body["result"]["protocolVersion"]),
        (200, &json!("2025-11-25"))
    );

    let mcp = FakeMcpServer::start(McpConfig {
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    let (status, body) = post_raw(&mcp, &headers, discover()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Bad Request: Mcp-Session-Id header is required"
    );
}

#[test]
fn the_fake_provider_checks_pkce_verifiers_as_rfc_7636_says() {
    use switchboard_testkit::fake_oidc::pkce_s256_matches;
    // RFC 7636, appendix B.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(pkce_s256_matches(verifier, challenge));
    assert!(!pkce_s256_matches(&verifier.replace('d', "e"), challenge));
    assert!(!pkce_s256_matches(verifier, &challenge.replace('E', "F")));
    // Malformed verifiers fail even when their transform matches.
    for malformed in ["short", &"a".repeat(129), &format!("{verifier} ")] {
        assert!(
            !pkce_s256_matches(malformed, &pkce_challenge(malformed)),
            "{malformed}"
        );
    }
}
