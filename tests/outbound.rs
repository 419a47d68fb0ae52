//! The outbound policy as a user of the API meets it: refusals name the rule without telling
//! where a hostname resolves, and authorization servers must use https except on loopback.

use crate::support::fake_as::{AsConfig, FakeAuthServer};
use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig};
use crate::support::{Options, START_OAUTH, TestApp, error_code};
use serde_json::json;

const CREATE: &str =
    "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }";

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_rule_but_not_where_a_hostname_resolves() {
    let t = TestApp::start_with(Options {
        allow_private_networks: false,
        ..Options::default()
    })
    .await;
    let a = &t.admin;
    let create = |url: &str| {
        let input =
            json!({ "i": { "workspaceId": a.workspace_id.to_string(), "name": "x", "url": url } });
        let token = a.token.clone();
        let t = &t;
        async move { t.gql(Some(&token), CREATE, input).await }
    };

    // `localhost` resolves to loopback without asking DNS.
    let body = create("http://localhost:9/mcp").await;
    assert_eq!(error_code(&body), Some("UNSAFE_URL"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "url: the host localhost is refused: private networks are not allowed, so only public \
         addresses other than cloud metadata endpoints may be reached"
    );

    // The user typed the address, so its class may be named.
    let body = create("https://10.1.2.3/mcp").await;
    assert_eq!(error_code(&body), Some("UNSAFE_URL"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("url: the address 10.1.2.3 (private) is refused: "),
        "{message}"
    );

    // The Azure WireServer is public address space, and refused all the same.
    let body = create("https://168.63.129.16/machine").await;
    assert_eq!(error_code(&body), Some("UNSAFE_URL"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("(cloud metadata)"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_endpoints_stay_refused_with_private_networks_allowed() {
    let t = TestApp::start().await;
    let a = &t.admin;
    for url in [
        "https://169.254.170.23/v1/credentials",
        "https://169.254.0.23/meta-data",
        "https://168.63.129.16/machine",
        "https://[fd00:ec2::23]/v1/credentials",
        "https://[fd20:ce::254]/computeMetadata/v1/",
        "https://[::ffff:169.254.170.23]/",
        "https://[64:ff9b::a83f:8110]/",
    ] {
        let input =
            json!({ "i": { "workspaceId": a.workspace_id.to_string(), "name": "x", "url": url } });
        let body = t.gql(Some(&a.token), CREATE, input).await;
        assert_eq!(error_code(&body), Some("UNSAFE_URL"), "{url}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("(cloud metadata)") && message.contains("never reached"),
            "{url}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_servers_need_https_except_on_loopback() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let start = |auth_config: AsConfig| async {
        let auth = FakeAuthServer::start(auth_config).await;
        let mcp = FakeMcpServer::start(McpConfig {
            auth: McpAuth::oauth(&auth),
            ..McpConfig::default()
        })
        .await;
        let id = t
            .create_server(a, json!({ "name": "oauth", "url": mcp.url() }))
            .await;
        let body = t
            .gql(Some(&a.token), START_OAUTH, json!({ "id": id }))
            .await;
        (auth, body)
    };

    for (endpoint, config) in [
        (
            "authorization",
            AsConfig {
                authorization_endpoint_override: Some("http://as.example/authorize".into()),
                ..AsConfig::default()
            },
        ),
        (
            "token",
            AsConfig {
                token_endpoint_override: Some("http://as.example/token".into()),
                ..AsConfig::default()
            },
        ),
        (
            "registration",
            AsConfig {
                registration_endpoint_override: Some("http://as.example/register".into()),
                ..AsConfig::default()
            },
        ),
        (
            "revocation",
            AsConfig {
                revocation_endpoint_override: Some("http://as.example/revoke".into()),
                ..AsConfig::default()
            },
        ),
    ] {
        let (auth, body) = start(config).await;
        assert_eq!(
            error_code(&body),
            Some("UPSTREAM_ERROR"),
            "{endpoint}: {body}"
        );
        assert_eq!(
            body["errors"][0]["message"],
            format!(
                "the authorization server advertises a plain http {endpoint} endpoint; \
                 https is required except on loopback hosts"
            )
        );
        assert!(auth.registrations().is_empty(), "{endpoint}");
        assert!(auth.authorize_requests().is_empty(), "{endpoint}");
    }

    // The fake authorization server is plain http on 127.0.0.1: loopback stays allowed.
    let (_auth, body) = start(AsConfig::default()).await;
    assert_eq!(
        body["data"]["startMcpOauth"]["status"], "REDIRECT",
        "{body}"
    );
}
