//! Client credentials: a server reached with the workspace's machine client (the MCP OAuth
//! client-credentials extension), with a secret or a private key, against the fake
//! authorization server; no user, no refresh token, renewal when the token is due.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::jws::{TestKey, generate_es256_key, generate_rs256_key};

use crate::support::fake_as::{AsConfig, ClientAuth, FakeAuthServer, MachineClient};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, echo_tool, whoami_tool};
use crate::support::{TestApp, error_code};

const CREATE: &str = "mutation($input: CreateMcpServerInput!) { createMcpServer(input: $input) { server { \
    id credentials authType authStatus statusReason toolCount hasOauthClientSecret hasOauthClientKey \
    oauth { issuer registration } } } }";
const WHOAMI: &str =
    "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"whoami\") { content isError } }";
const SERVER: &str = "query($id: ID!) { mcpServer(id: $id) { authStatus statusReason lastError } }";

async fn world(config: AsConfig) -> (FakeAuthServer, FakeMcpServer) {
    let auth = FakeAuthServer::start(config).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![echo_tool(), whoami_tool()],
        ..McpConfig::default()
    })
    .await;
    (auth, mcp)
}

async fn create(t: &TestApp, mcp: &FakeMcpServer, credentials: Value) -> Value {
    let mut input = json!({
        "workspaceId": t.admin.workspace_id,
        "name": "machine",
        "url": mcp.url(),
        "credentials": "CLIENT_CREDENTIALS",
        "oauthClientId": "machine-client",
    });
    input
        .as_object_mut()
        .unwrap()
        .extend(credentials.as_object().unwrap().clone());
    t.ok(&t.admin, CREATE, json!({ "input": input })).await["createMcpServer"]["server"].clone()
}

async fn whoami(t: &TestApp, id: &str) -> Result<String, String> {
    let body = t
        .gql(Some(&t.admin.token), WHOAMI, json!({ "id": id }))
        .await;
    match error_code(&body) {
        Some(code) => Err(code.to_owned()),
        None => Ok(body["data"]["callMcpTool"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned()),
    }
}

fn client_credentials_requests(
    auth: &FakeAuthServer,
) -> Vec<switchboard_testkit::fake_as::TokenRequest> {
    auth.token_requests()
        .into_iter()
        .filter(|r| r.grant_type == "client_credentials")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_client_with_a_secret_connects_without_anyone() {
    let t = TestApp::start().await;
    let (auth, mcp) = world(AsConfig::client_credentials(MachineClient::secret(
        "machine-client",
        "s3cret",
    )))
    .await;
    let server = create(&t, &mcp, json!({ "oauthClientSecret": "s3cret" })).await;
    // The first token and the catalogue came with the creation.
    assert_eq!(server["credentials"], "CLIENT_CREDENTIALS");
    assert_eq!(server["authStatus"], "AUTHORIZED", "{server}");
    assert_eq!(server["toolCount"], 2, "{server}");
    assert_eq!(server["hasOauthClientSecret"], true);
    assert_eq!(server["oauth"]["issuer"], auth.issuer());
    assert_eq!(server["oauth"]["registration"], "CLIENT_CREDENTIALS");
    let id = server["id"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&t, &id).await.unwrap(), "machine-client");

    let requests = client_credentials_requests(&auth);
    assert_eq!(
        requests.len(),
        1,
        "one token served the listing and the call"
    );
    let request = &requests[0];
    assert!(matches!(request.client_auth, ClientAuth::Basic));
    assert_eq!(request.field("resource"), Some(mcp.url().as_str()));
    assert_eq!(
        request.field("client_secret"),
        None,
        "the secret travels in the header"
    );
    // Nobody authorizes such a server.
    let body = t
        .gql(
            Some(&t.admin.token),
            crate::support::START_OAUTH,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");

    // Dropping its token revokes it as the machine client; the next call gets a new one.
    t.ok(
        &t.admin,
        "mutation($id: ID!) { disconnectMcpOauth(serverId: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let revoked = auth.revocations();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].subject.as_deref(), Some("machine-client"));
    assert_eq!(whoami(&t, &id).await.unwrap(), "machine-client");
    assert_eq!(client_credentials_requests(&auth).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_goes_in_the_body_when_that_is_all_the_server_accepts() {
    let t = TestApp::start().await;
    let mut config =
        AsConfig::client_credentials(MachineClient::secret("machine-client", "s3cret"));
    config.token_auth_methods = vec!["client_secret_post".into()];
    let (auth, mcp) = world(config).await;
    let server = create(&t, &mcp, json!({ "oauthClientSecret": "s3cret" })).await;
    let id = server["id"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&t, &id).await.unwrap(), "machine-client");
    let requests = client_credentials_requests(&auth);
    assert!(matches!(requests[0].client_auth, ClientAuth::Post));
}

async fn private_key(key: TestKey, alg: &str) {
    let t = TestApp::start().await;
    let (auth, mcp) = world(AsConfig::client_credentials(
        MachineClient::private_key_jwt("machine-client", &key),
    ))
    .await;
    let server = create(&t, &mcp, json!({ "oauthClientKey": key.private_pem })).await;
    assert_eq!(server["authStatus"], "AUTHORIZED", "{server}");
    assert_eq!(server["hasOauthClientKey"], true);
    assert_eq!(server["hasOauthClientSecret"], false);
    let id = server["id"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&t, &id).await.unwrap(), "machine-client");

    let requests = client_credentials_requests(&auth);
    assert!(matches!(requests[0].client_auth, ClientAuth::PrivateKeyJwt));
    assert_eq!(
        requests[0].field("client_id"),
        None,
        "the assertion names the client"
    );
    let assertions = auth.assertions();
    let assertion = assertions.last().unwrap();
    assert_eq!(assertion["header"]["alg"], alg);
    let claims = &assertion["claims"];
    assert_eq!(claims["iss"], "machine-client");
    assert_eq!(claims["sub"], "machine-client");
    assert_eq!(claims["aud"], auth.issuer());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(
        (1..=60).contains(&lifetime),
        "a short-lived assertion: {lifetime}"
    );

    // The key is never returned, whatever is asked.
    let everything = t
        .ok(
            &t.admin,
            "query($id: ID!) { mcpServer(id: $id) { id name url hasOauthClientKey oauth { issuer } } }",
            json!({ "id": id }),
        )
        .await
        .to_string();
    assert!(!everything.contains("PRIVATE KEY"), "{everything}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_client_signs_es256_assertions_with_its_key() {
    private_key(generate_es256_key(), "ES256").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_client_signs_rs256_assertions_with_its_key() {
    private_key(generate_rs256_key(), "RS256").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_token_is_replaced_with_a_new_one_and_every_assertion_is_fresh() {
    let t = TestApp::start().await;
    let key = generate_es256_key();
    let mut client = MachineClient::private_key_jwt("machine-client", &key);
    client.token_ttl_secs = 1;
    let (auth, mcp) = world(AsConfig::client_credentials(client)).await;
    let server = create(&t, &mcp, json!({ "oauthClientKey": key.private_pem })).await;
    let id = server["id"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&t, &id).await.unwrap(), "machine-client");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(whoami(&t, &id).await.unwrap(), "machine-client");
    let requests = client_credentials_requests(&auth);
    assert!(
        requests.len() >= 2,
        "a new token after expiry: {}",
        requests.len()
    );
    assert!(requests.iter().all(|r| r.field("refresh_token").is_none()));
    // The fake server refuses a replayed jti, so every renewal signed a new assertion.
    let assertions = auth.assertions();
    let mut ids: Vec<&str> = assertions
        .iter()
        .map(|a| a["claims"]["jti"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), assertions.len(), "every jti is new");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_client_gives_a_clear_status_and_new_credentials_recover() {
    let t = TestApp::start().await;
    let (auth, mcp) = world(AsConfig::client_credentials(MachineClient::secret(
        "machine-client",
        "s3cret",
    )))
    .await;
    auth.set_client_credentials_rejected(true);
    let server = create(&t, &mcp, json!({ "oauthClientSecret": "wrong" })).await;
    let id = server["id"].as_str().unwrap().to_owned();
    assert_eq!(server["statusReason"], "CLIENT_REJECTED", "{server}");
    assert_ne!(server["authStatus"], "AUTHORIZED");
    // Trying again is refused the same way, and the reason stays the one that says why.
    let body = t
        .gql(
            Some(&t.admin.token),
            "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("REAUTH_REQUIRED"), "{body}");
    let status = t.ok(&t.admin, SERVER, json!({ "id": id })).await;
    assert_eq!(
        status["mcpServer"]["statusReason"], "CLIENT_REJECTED",
        "{status}"
    );

    // The operator fixes the secret: the next token comes at once.
    auth.set_client_credentials_rejected(false);
    let updated = t
        .ok(
            &t.admin,
            "mutation($id: ID!) { updateMcpServer(id: $id, input: { oauthClientSecret: \"s3cret\" }) { authStatus toolCount } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        updated["updateMcpServer"]["authStatus"], "AUTHORIZED",
        "{updated}"
    );
    assert_eq!(whoami(&t, &id).await.unwrap(), "machine-client");
}

#[tokio::test(flavor = "multi_thread")]
async fn machine_credentials_are_checked_when_entered() {
    let t = TestApp::start().await;
    let (_auth, mcp) = world(AsConfig::client_credentials(MachineClient::secret(
        "m", "s",
    )))
    .await;
    let input = |extra: Value| {
        let mut input = json!({
            "workspaceId": t.admin.workspace_id, "name": "m", "url": mcp.url(),
            "credentials": "CLIENT_CREDENTIALS",
        });
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "input": input })
    };
    for (extra, field) in [
        (json!({ "oauthClientSecret": "s" }), "oauthClientId"),
        (json!({ "oauthClientId": "m" }), "oauthClientSecret"),
        (
            json!({ "oauthClientId": "m", "oauthClientKey": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----" }),
            "oauthClientKey",
        ),
    ] {
        let body = t.gql(Some(&t.admin.token), CREATE, input(extra)).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        assert!(
            !body.to_string().contains("not a key"),
            "the key is never echoed: {body}"
        );
    }
}

/// `switchboard connect --client-credentials`, as the conformance scenarios drive it.
async fn headless(config: AsConfig, secret: Option<&str>, key: Option<&TestKey>) -> String {
    let (_auth, mcp) = world(config).await;
    let options = switchboard::headless::ConnectOptions {
        url: mcp.url(),
        client_id: Some("machine-client".into()),
        client_secret: secret.map(|s| switchboard::crypto::Secret::new(s.to_owned())),
        allow_loopback: true,
        client_credentials: true,
        private_key: key.map(|k| switchboard::crypto::Secret::new(k.private_pem.clone())),
        ..Default::default()
    };
    let mut out = Vec::new();
    let result = switchboard::headless::connect(options, &mut out).await;
    let printed = String::from_utf8(out).unwrap();
    result.unwrap_or_else(|e| panic!("{e:#}\n{printed}"));
    printed
}

#[tokio::test(flavor = "multi_thread")]
async fn the_headless_client_connects_as_a_machine_client() {
    let printed = headless(
        AsConfig::client_credentials(MachineClient::secret("machine-client", "s3cret")),
        Some("s3cret"),
        None,
    )
    .await;
    assert!(
        printed.contains("called whoami: isError=false"),
        "{printed}"
    );
    assert!(printed.contains("machine-client"), "{printed}");
    assert!(
        !printed.contains("authorizing at"),
        "nobody authorized: {printed}"
    );

    let key = generate_es256_key();
    let printed = headless(
        AsConfig::client_credentials(MachineClient::private_key_jwt("machine-client", &key)),
        None,
        Some(&key),
    )
    .await;
    assert!(
        printed.contains("called whoami: isError=false"),
        "{printed}"
    );
    assert!(printed.ends_with("done\n"), "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_client_declares_its_extension_to_a_stateless_server() {
    let t = TestApp::start().await;
    let auth = FakeAuthServer::start(AsConfig::client_credentials(MachineClient::secret(
        "machine-client",
        "s3cret",
    )))
    .await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![echo_tool(), whoami_tool()],
        era: crate::support::fake_mcp::Era::Modern,
        ..McpConfig::default()
    })
    .await;
    let server = create(&t, &mcp, json!({ "oauthClientSecret": "s3cret" })).await;
    let id = server["id"].as_str().unwrap();
    assert_eq!(whoami(&t, id).await.as_deref(), Ok("machine-client"));
    let calls: Vec<Value> = mcp
        .posted()
        .into_iter()
        .filter(|m| m["method"] == "tools/call")
        .collect();
    assert!(!calls.is_empty());
    for call in calls {
        assert_eq!(
            call["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]["extensions"],
            json!({ "io.modelcontextprotocol/oauth-client-credentials": {} }),
            "{call}"
        );
    }
}
