//! The console signing in with an identity provider: the identity document it reads
//! (`/console/identity.json`, public data only), the page's Content-Security-Policy naming the
//! token endpoints, the fake provider's authorization code + PKCE flow whose tokens Switchboard
//! accepts, and — ignored by default because it needs Chromium — the console signing in
//! through the fake provider in a real browser, renewing its token and signing out
//! (`scripts/e2e.sh` runs it).

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::identity::provider::ConsoleClient;
use switchboard::domain::identity::{KeySource, Provider};
use switchboard_testkit::fake_http::pkce_challenge;
use switchboard_testkit::fake_oidc::{Behaviour, DEFAULT_AUDIENCE, FakeOidc, KeyAlg};

use crate::console::run_browser_scenario;
use crate::support::{Options, TestApp, no_redirects};

const CLIENT_ID: &str = "switchboard-console";
const VERIFIER: &str = "a-well-formed-code-verifier-of-more-than-43-characters";

/// A provider the console signs in with, named `display_name`.
fn console_provider(idp: &FakeOidc, display_name: &str) -> Provider {
    Provider {
        issuer: idp.issuer.clone(),
        keys: KeySource::Discovery,
        audience: DEFAULT_AUDIENCE.to_owned(),
        required_scope: Some("switchboard".to_owned()),
        subject_claim: "sub".to_owned(),
        name_claim: Some("name".to_owned()),
        memberships_claim: None,
        console: Some(ConsoleClient {
            client_id: CLIENT_ID.to_owned(),
            scopes: vec!["openid".to_owned(), "switchboard".to_owned()],
            display_name: display_name.to_owned(),
        }),
    }
}

async fn start(providers: Vec<Provider>) -> TestApp {
    TestApp::start_configured(Options::default(), move |config| {
        config.identity_providers = providers;
    })
    .await
}

async fn identity_document(t: &TestApp) -> Value {
    let response = t
        .http
        .get(t.url("/console/identity.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn connect_sources(t: &TestApp) -> Vec<String> {
    let page = t.http.get(t.url("/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let directive = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("connect-src "))
        .unwrap_or_else(|| panic!("no connect-src: {csp}"));
    directive
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

fn discoveries(idp: &FakeOidc) -> usize {
    idp.requests
        .all()
        .iter()
        .filter(|r| r.path == "/.well-known/openid-configuration")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_identity_document_offers_console_providers_with_public_fields_only() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let other = FakeOidc::start(&[KeyAlg::Es256]).await;
    let mut api_only = console_provider(&other, "unused");
    api_only.console = None;
    let t = start(vec![console_provider(&idp, "Example ID"), api_only]).await;

    let document = identity_document(&t).await;
    assert_eq!(
        document,
        json!({ "providers": [{
            "issuer": idp.issuer,
            "display_name": "Example ID",
            "client_id": CLIENT_ID,
            "scopes": ["openid", "switchboard"],
            "authorization_endpoint": format!("{}/authorize", idp.issuer),
            "token_endpoint": format!("{}/token", idp.issuer),
        }]}),
        "only public fields, only the console's provider"
    );
    assert_eq!(
        discoveries(&other),
        0,
        "a provider without console is not read"
    );

    // Discovery is cached: the page and the document again read nothing more.
    let _ = connect_sources(&t).await;
    assert_eq!(identity_document(&t).await, document);
    assert_eq!(discoveries(&idp), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_console_provider_nothing_is_offered_and_the_policy_is_unchanged() {
    let plain = TestApp::start().await;
    assert_eq!(identity_document(&plain).await, json!({ "providers": [] }));
    let host = plain.addr.to_string();
    assert_eq!(
        connect_sources(&plain).await,
        [
            "'self'".to_owned(),
            format!("ws://{host}"),
            format!("wss://{host}")
        ]
    );

    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let mut api_only = console_provider(&idp, "unused");
    api_only.console = None;
    let t = start(vec![api_only]).await;
    assert_eq!(identity_document(&t).await, json!({ "providers": [] }));
    assert_eq!(connect_sources(&t).await.len(), 3);
    assert_eq!(discoveries(&idp), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_policy_allows_exactly_the_token_endpoints_of_console_providers() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let t = start(vec![console_provider(&idp, "Example ID")]).await;
    let host = t.addr.to_string();
    assert_eq!(
        connect_sources(&t).await,
        [
            "'self'".to_owned(),
            format!("ws://{host}"),
            format!("wss://{host}"),
            format!("{}/token", idp.issuer),
        ]
    );

    // A provider whose OpenID configuration names another issuer is neither offered nor
    // allowed.
    let liar = FakeOidc::start(&[KeyAlg::Es256]).await;
    liar.set_behaviour(Behaviour::WrongIssuer);
    let t = start(vec![console_provider(&liar, "Liar")]).await;
    assert_eq!(identity_document(&t).await, json!({ "providers": [] }));
    assert_eq!(connect_sources(&t).await.len(), 3);
}

/// `/authorize` with `params` over the defaults; returns the status and the `Location`.
async fn authorize(idp: &FakeOidc, params: &[(&str, &str)]) -> (u16, Option<url::Url>) {
    let challenge = pkce_challenge(VERIFIER);
    let mut query: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", "http://127.0.0.1:1/"),
        ("scope", "openid switchboard"),
        ("state", "the-state"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("nonce", "the-nonce"),
    ];
    for (name, value) in params {
        query.retain(|(n, _)| n != name);
        query.push((name, value));
    }
    let mut url = url::Url::parse(&format!("{}/authorize", idp.issuer)).unwrap();
    url.query_pairs_mut().extend_pairs(&query);
    let response = no_redirects().get(url).send().await.unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap());
    (response.status().as_u16(), location)
}

async fn redeem(
    idp: &FakeOidc,
    form: &[(&str, &str)],
    origin: &str,
) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .header("origin", origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let cors = response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        response.status().as_u16(),
        cors,
        response.json().await.unwrap(),
    )
}

fn query_value(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_provider_redeems_a_code_once_against_its_verifier_and_switchboard_accepts_the_token()
 {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let t = start(vec![console_provider(&idp, "Example ID")]).await;
    let redirect_uri = t.url("/");
    let origin = format!("http://{}", t.addr);
    idp.register_client(CLIENT_ID, &redirect_uri);
    idp.set_user("person-1", "Ada Console");
    idp.set_refresh_tokens(true);

    // Refused before any redirect: an unregistered redirect URI or client, a plain challenge.
    for params in [
        vec![
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", "other"),
        ],
        vec![("redirect_uri", "http://127.0.0.1:1/")],
        vec![("redirect_uri", &format!("{redirect_uri}x"))],
        vec![
            ("redirect_uri", redirect_uri.as_str()),
            ("code_challenge_method", "plain"),
        ],
    ] {
        let (status, location) = authorize(&idp, &params).await;
        assert_eq!((status, location), (400, None), "{params:?}");
    }

    let code_for = || async {
        let (status, location) = authorize(&idp, &[("redirect_uri", redirect_uri.as_str())]).await;
        assert_eq!(status, 303);
        let location = location.unwrap();
        assert!(location.as_str().starts_with(&redirect_uri), "{location}");
        assert_eq!(
            query_value(&location, "state").as_deref(),
            Some("the-state")
        );
        assert_eq!(query_value(&location, "iss"), Some(idp.issuer.clone()));
        query_value(&location, "code").unwrap()
    };
    let exchange = |code: String, verifier: &'static str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("code_verifier", verifier.to_owned()),
            ("client_id", CLIENT_ID.to_owned()),
            ("redirect_uri", redirect_uri.clone()),
        ]
    };

    // A wrong verifier spends the code: the right one cannot redeem it afterwards.
    let code = code_for().await;
    let wrong = "another-well-formed-code-verifier-of-43-characters-x";
    let (status, cors, body) = redeem(&idp, &pairs(&exchange(code.clone(), wrong)), &origin).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    assert_eq!(
        cors.as_deref(),
        Some(origin.as_str()),
        "errors are readable too"
    );
    let (status, _, body) = redeem(&idp, &pairs(&exchange(code, VERIFIER)), &origin).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));

    // A fresh code with its verifier: once.
    let code = code_for().await;
    let (status, cors, tokens) =
        redeem(&idp, &pairs(&exchange(code.clone(), VERIFIER)), &origin).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(cors.as_deref(), Some(origin.as_str()));
    assert_eq!(tokens["token_type"], "Bearer");
    let (status, _, _) = redeem(&idp, &pairs(&exchange(code, VERIFIER)), &origin).await;
    assert_eq!(status, 400, "a code is redeemed once");

    // Switchboard accepts the access token: the person is created just in time.
    let access = tokens["access_token"].as_str().unwrap();
    let body = t
        .gql(
            Some(access),
            "{ viewer { name authenticatedBy { method issuer } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["viewer"]["name"], "Ada Console", "{body}");
    assert_eq!(
        body["data"]["viewer"]["authenticatedBy"]["issuer"],
        idp.issuer
    );

    // The refresh token rotates; another origin is not allowed to read the answer.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let renew = |token: String| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token),
            ("client_id", CLIENT_ID.to_owned()),
        ]
    };
    let (status, cors, renewed) =
        redeem(&idp, &pairs(&renew(refresh.clone())), "http://127.0.0.1:1").await;
    assert_eq!(status, 200);
    assert_eq!(cors, None);
    assert_ne!(renewed["refresh_token"], json!(refresh));
    let (status, _, _) = redeem(&idp, &pairs(&renew(refresh)), &origin).await;
    assert_eq!(status, 400, "a used refresh token is spent");
    assert_eq!(idp.issued_grants(), ["authorization_code", "refresh_token"]);
}

fn pairs<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium; run by scripts/e2e.sh"]
async fn the_console_signs_in_with_the_identity_provider_in_a_real_browser() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let mapped = Provider {
        memberships_claim: Some("switchboard_workspaces".to_owned()),
        ..console_provider(&idp, "Example ID")
    };
    let t = start(vec![mapped]).await;
    idp.register_client(CLIENT_ID, &t.url("/"));
    idp.set_user("person-7", "Grace Browser");
    // The provider makes the person an editor of the admin's workspace, so it loads.
    idp.set_extra_claims(json!({
        "switchboard_workspaces": { t.admin.workspace_id.to_string(): "editor" }
    }));
    idp.set_refresh_tokens(true);
    idp.set_token_lifetime(Duration::from_secs(8));
    let _ = run_browser_scenario(
        "console_identity.test.mjs",
        &[
            ("SWITCHBOARD_URL", t.url("")),
            ("PROVIDER_NAME", "Example ID".to_owned()),
            ("PERSON_NAME", "Grace Browser".to_owned()),
        ],
    )
    .await;
    let issued = idp.issued_grants();
    assert!(
        issued.iter().any(|g| g == "refresh_token"),
        "the console renewed its token: {issued:?}"
    );
    let token_requests = idp
        .requests
        .all()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/token")
        .count();
    assert_eq!(
        token_requests,
        issued.len(),
        "every code the console redeemed was its own: {issued:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn warmed_endpoints_serve_the_page_while_the_provider_is_slow() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let t = start(vec![console_provider(&idp, "Example ID")]).await;
    assert!(t.app.identity.offers_console_sign_in());
    // What the background task does at start-up.
    t.app.identity.warm_console_providers(&t.app.http).await;
    assert_eq!(discoveries(&idp), 1);
    // Fresh: warming again reads nothing.
    t.app.identity.warm_console_providers(&t.app.http).await;
    assert_eq!(discoveries(&idp), 1);

    // A page load then reads the warmed endpoints, never the (now slow) provider.
    idp.set_behaviour(Behaviour::Slow(Duration::from_secs(30)));
    let document = identity_document(&t).await;
    assert_eq!(document["providers"][0]["display_name"], "Example ID");
    assert_eq!(discoveries(&idp), 1, "served from what was warmed");
}
