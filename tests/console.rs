//! The built-in console: how its files are served (content types, Content-Security-Policy,
//! caching), that it takes the words for reasons from the schema, that the OAuth callback page
//! reports to the console's own origin without any configuration, and — ignored by default
//! because it needs Chromium — the console driven in a real browser through the OAuth popup
//! flow, per-user accounts, a machine client added with its private key, and the forms and
//! pages a 2026-07-28 server asks for mid-call (`scripts/e2e.sh` runs it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::fake_as::{AsConfig, ClientAuth, FakeAuthServer, MachineClient};
use crate::support::fake_mcp::{
    Era, FakeMcpServer, McpAuth, McpConfig, confirm_tool, echo_tool, fail_tool, open_url_tool,
    survey_tool, tool, whoami_tool,
};
use crate::support::{Options, TestApp, no_redirects};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use switchboard::domain::access::Role;
use switchboard::domain::oauth::flow::FlowFailureReason;
use switchboard_testkit::jws::generate_es256_key;

/// The console's files: path, content type.
const FILES: [(&str, &str); 4] = [
    ("/", "text/html; charset=utf-8"),
    ("/console.js", "text/javascript; charset=utf-8"),
    ("/console.css", "text/css; charset=utf-8"),
    ("/favicon.svg", "image/svg+xml"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_served_with_its_content_types_and_a_strict_policy() {
    let t = TestApp::start().await;
    for (path, content_type) in FILES {
        let response = t.http.get(t.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");

        // Revalidation with the validator costs no body.
        let again = t
            .http
            .get(t.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }

    let page = t.http.get(t.url("/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    let host = t.addr.to_string();
    for expected in [
        "default-src 'none'".to_owned(),
        "script-src 'self'".to_owned(),
        "style-src 'self'".to_owned(),
        format!("connect-src 'self' ws://{host} wss://{host}"),
        "frame-ancestors 'none'".to_owned(),
        "form-action 'none'".to_owned(),
        "base-uri 'none'".to_owned(),
    ] {
        assert!(directives.contains(&expected.as_str()), "{expected}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert_eq!(
        page.headers()["cross-origin-opener-policy"],
        "same-origin-allow-popups",
        "the popup must keep its opener to report back"
    );

    // No inline script or style and nothing from another origin: the policy would block it.
    let html = page.text().await.unwrap();
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "{html}");
    assert!(
        scripts[0].starts_with(r#" type="module" src="/console.js"></script>"#),
        "{html}"
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "{html}"
    );
    for attribute in [" src=\"", " href=\""] {
        for value in html.split(attribute).skip(1) {
            assert!(
                value.starts_with('/') && !value.starts_with("//"),
                "only this origin's files: {attribute}{value}"
            );
        }
    }

    // The other paths are still the API's.
    let missing = t.http.get(t.url("/console.txt")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let graphiql = t.http.get(t.url("/graphql")).send().await.unwrap();
    assert_eq!(graphiql.status().as_u16(), 200);
}

#[test]
fn the_console_script_never_parses_markup() {
    let script = std::fs::read_to_string(repo_path("console/console.js")).unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
        "DOMParser",
    ] {
        assert!(
            !script.contains(sink),
            "console.js uses {sink}: put values on the page with textContent"
        );
    }
    assert!(
        script.contains("'graphql-transport-ws'"),
        "the console speaks graphql-transport-ws"
    );
}

/// The query the console runs for the words of reasons (its `vocabulary` query).
fn vocabulary_query(script: &str) -> &str {
    let start = script
        .find("vocabulary: `")
        .expect("console.js has a vocabulary query")
        + "vocabulary: `".len();
    let end = start
        + script[start..]
            .find('`')
            .expect("end of the vocabulary query");
    &script[start..end]
}

/// Value → description of one enum of the vocabulary answer.
fn descriptions(data: &Value, key: &str) -> Vec<(String, String)> {
    data[key]["enumValues"]
        .as_array()
        .unwrap_or_else(|| panic!("{key}: {data}"))
        .iter()
        .map(|value| {
            (
                value["name"].as_str().expect("a name").to_owned(),
                value["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_takes_the_words_for_reasons_from_the_schema() {
    let t = TestApp::start().await;
    let script = std::fs::read_to_string(repo_path("console/console.js")).unwrap();
    let query = vocabulary_query(&script);
    assert!(
        query.contains(r#"__type(name: "McpStatusReason")"#),
        "{query}"
    );

    // The console's own query answers for any member: a viewer is enough.
    let viewer = t
        .new_member("viewer", t.admin.workspace_id, Role::Viewer)
        .await;
    let data = t.ok(&viewer, query, json!({})).await;
    let status = descriptions(&data, "statusReasons");
    for name in ["CONNECTED", "HEADERS_REJECTED", "DETECTION_FAILED"] {
        assert!(status.iter().any(|(n, _)| n == name), "{name}: {data}");
    }
    // Every value has words, and none of them is written into the script: they come from the
    // schema only (and a failed flow's from the callback page, which the API describes in the
    // same words).
    let failures = FlowFailureReason::ALL.map(|r| (r.code().to_owned(), r.explain().to_owned()));
    for (name, description) in status.iter().chain(&failures) {
        assert!(!description.trim().is_empty(), "{name} has no description");
        assert!(
            !script.contains(description.trim()),
            "console.js spells out the description of {name}: read it from the schema"
        );
    }
}

/// The `origins` array the callback page posts its message to.
fn posted_origins(page: &str) -> Vec<String> {
    let start = page.find("var origins=").expect("origins in the page") + "var origins=".len();
    let end = start + page[start..].find(';').expect("end of the origins");
    serde_json::from_str(&page[start..end]).expect("origins are JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callback_page_reports_to_the_console_origin_with_no_configuration() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(a, json!({ "name": "docs", "url": mcp.url() }))
        .await;
    let console_origin = t.url("");
    let run = t.authorize_in_browser(a, &id).await;
    assert_eq!(run.status, 200, "{}", run.page);
    assert_eq!(
        posted_origins(&run.page),
        std::slice::from_ref(&console_origin)
    );

    // A failed flow reports to the console as well, so it can say why.
    let failed = no_redirects()
        .get(t.url("/oauth/callback?state=unknown&code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status().as_u16(), 400);
    let page = failed.text().await.unwrap();
    assert!(page.contains(r#""reason":"invalid_state""#), "{page}");
    assert_eq!(posted_origins(&page), [console_origin]);

    // The page posts its words with the code, for the console to show: the description of
    // the upper-cased code in the schema's McpOauthFailureReason.
    let words = FlowFailureReason::InvalidState.explain();
    assert!(
        page.contains(&format!(r#""message":"{words}""#)),
        "{words}: {page}"
    );
    let schema = std::fs::read_to_string(repo_path("schema.graphql")).unwrap();
    assert!(
        schema.contains(&format!("\t\"\"\"\n\t{words}\n\t\"\"\"\n\tINVALID_STATE\n")),
        "schema.graphql describes INVALID_STATE in the page's words"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_app_origins_do_not_displace_the_console_origin() {
    let t = TestApp::start_with(Options {
        app_origins: vec!["https://app.example.com".into()],
        ..Default::default()
    })
    .await;
    let page = no_redirects()
        .get(t.url("/oauth/callback?error=access_denied&state=unknown"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        posted_origins(&page),
        ["https://app.example.com".to_owned(), t.url("")]
    );
    assert!(!page.contains(r#"postMessage(message,"*")"#));
}

// ---------------------------------------------------------------------------------------------
// The console in a real browser.

pub(crate) fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Where the browser test writes its screenshots: `<target dir>/e2e`.
fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("e2e")
}

/// A tool whose title, description and schema try to inject markup.
fn hostile_tool() -> Value {
    json!({
        "name": "hostile",
        "title": HOSTILE_TEXT,
        "description": HOSTILE_TEXT,
        "inputSchema": {
            "type": "object",
            "properties": { "<img src=x onerror=alert(3)>": { "type": "string" } },
        },
    })
}

/// Text that would run script if it were ever parsed as HTML.
const HOSTILE_TEXT: &str =
    r#"<script>window.__injected = 1</script><img src=x onerror="window.__injected = 2">"#;

/// The header value the keyed server accepts.
const KEYED_HEADER_VALUE: &str = "keyed-right-value";

/// The member who signs in beside the admin, in a tab of their own.
const MEMBER_NAME: &str = "bea";

/// The machine client the machine-client server is reached with; its `whoami` answers with it.
const MACHINE_CLIENT_ID: &str = "console-machine";

/// What the browser scenario may ask the test to do to the world mid-way.
#[derive(Clone)]
struct Control {
    auth: FakeAuthServer,
    api: String,
    token: String,
    http: reqwest::Client,
}

fn control_router(control: Control) -> Router {
    Router::new()
        // The authorization server forgets every grant, so the next call needs a new one.
        .route(
            "/revoke-all",
            post(|State(control): State<Control>| async move {
                control.auth.revoke_all();
                StatusCode::NO_CONTENT
            }),
        )
        // Someone else refreshes a server through the API; the console hears of it only
        // through its status subscription.
        .route("/refresh/{id}", post(refresh_elsewhere))
        // The next authorizations belong to this upstream account, so a per-user server can
        // tell the members apart.
        .route(
            "/subject/{subject}",
            post(
                |State(control): State<Control>, UrlPath(subject): UrlPath<String>| async move {
                    control.auth.set_subject(&subject);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(control)
}

async fn refresh_elsewhere(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let body: Value = control
        .http
        .post(format!("{}/graphql", control.api))
        .bearer_auth(&control.token)
        .json(&json!({
            "query": "mutation($id: ID!) { refreshMcpServer(id: $id) { connectionStatus toolCount } }",
            "variables": { "id": id },
        }))
        .send()
        .await
        .expect("refresh request")
        .json()
        .await
        .expect("refresh answer");
    let status = if body.get("errors").is_some() {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

/// Run the browser scenario `script` of `e2e/` with Node, its environment being `env` plus
/// `CHROMIUM_PATH` and `E2E_OUTPUT`, and fail the test when it fails. Returns where its
/// screenshots are. Needs what `scripts/e2e.sh` installs.
pub(crate) async fn run_browser_scenario(script: &str, env: &[(&str, String)]) -> PathBuf {
    let e2e = repo_path("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "e2e/node_modules is missing: run scripts/e2e.sh, which installs it"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/e2e.sh, which installs it"
    );
    let out = output_dir();
    std::fs::create_dir_all(&out).unwrap();
    let mut node = std::process::Command::new("node")
        .arg(script)
        .current_dir(&e2e)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env("CHROMIUM_PATH", &chromium)
        .env("E2E_OUTPUT", &out)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node (Node 20 or newer must be on PATH)");
    // Polled rather than waited on, so the servers of the test keep running on this runtime.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = node.try_wait().expect("node's status") {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            panic!("{script} did not finish within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name = script.trim_end_matches(".test.mjs");
    assert!(
        status.success(),
        "{script} failed ({status}); its log is above and its screenshot is in {}",
        out.join(format!("{name}-failure.png")).display()
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium; run by scripts/e2e.sh"]
async fn the_console_in_a_real_browser() {
    let t = TestApp::start().await;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let docs = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![echo_tool(), fail_tool()],
        ..McpConfig::default()
    })
    .await;
    let calendar = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let search = FakeMcpServer::start(McpConfig {
        tools: vec![echo_tool(), tool("lookup"), tool("summarise")],
        ..McpConfig::default()
    })
    .await;
    let hostile = FakeMcpServer::start(McpConfig {
        tools: vec![hostile_tool()],
        ..McpConfig::default()
    })
    .await;
    // Accepts only the right key: added with a wrong one, its headers are rejected until they
    // are edited.
    let keyed = FakeMcpServer::start(McpConfig {
        auth: McpAuth::StaticHeader {
            name: "X-Api-Key".into(),
            value: KEYED_HEADER_VALUE.into(),
        },
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    // Per-user credentials: its whoami tool names the upstream account of each caller.
    let team = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![whoami_tool()],
        ..McpConfig::default()
    })
    .await;
    // Client credentials: an authorization server that knows one machine client, which signs
    // its assertions with `machine_key`; the console is given that key, and `unknown_key`,
    // which the authorization server refuses.
    let machine_key = generate_es256_key();
    let unknown_key = generate_es256_key();
    let machine_auth = FakeAuthServer::start(AsConfig::client_credentials(
        MachineClient::private_key_jwt(MACHINE_CLIENT_ID, &machine_key),
    ))
    .await;
    let machine = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&machine_auth),
        tools: vec![whoami_tool()],
        ..McpConfig::default()
    })
    .await;
    // Speaks 2026-07-28 only: its tools ask for input (forms, a page to visit) mid-call.
    let forms = FakeMcpServer::start(McpConfig {
        era: Era::Modern,
        tools: vec![survey_tool(), confirm_tool(), open_url_tool(), echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let member = t
        .new_member(MEMBER_NAME, t.admin.workspace_id, Role::Viewer)
        .await;
    // A port that was free a moment ago and has nothing listening now.
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/mcp", listener.local_addr().unwrap())
    };

    let control = crate::support::fake_http::bind().await;
    let control_url = format!("http://{}", control.local_addr().unwrap());
    let _control = crate::support::fake_http::serve(
        control,
        control_router(Control {
            auth: auth.clone(),
            api: t.url(""),
            token: t.admin.token.clone(),
            http: reqwest::Client::new(),
        }),
    );

    let out = run_browser_scenario(
        "console.test.mjs",
        &[
            ("SWITCHBOARD_URL", t.url("")),
            ("SWITCHBOARD_TOKEN", t.admin.token.clone()),
            ("CONTROL_URL", control_url),
            ("DOCS_MCP_URL", docs.url()),
            ("CALENDAR_MCP_URL", calendar.url()),
            ("SEARCH_MCP_URL", search.url()),
            ("HOSTILE_MCP_URL", hostile.url()),
            ("KEYED_MCP_URL", keyed.url()),
            ("KEYED_HEADER_VALUE", KEYED_HEADER_VALUE.to_owned()),
            ("UNREACHABLE_MCP_URL", unreachable),
            ("HOSTILE_TEXT", HOSTILE_TEXT.to_owned()),
            ("TEAM_MCP_URL", team.url()),
            ("MEMBER_TOKEN", member.token.clone()),
            ("MEMBER_NAME", MEMBER_NAME.to_owned()),
            ("MACHINE_MCP_URL", machine.url()),
            ("MACHINE_CLIENT_ID", MACHINE_CLIENT_ID.to_owned()),
            ("MACHINE_KEY", machine_key.private_pem.clone()),
            ("UNKNOWN_MACHINE_KEY", unknown_key.private_pem.clone()),
            ("FORMS_MCP_URL", forms.url()),
        ],
    )
    .await;
    assert!(out.join("console.png").is_file(), "no screenshot written");

    // What the fakes saw agrees with what the browser showed.
    assert!(
        auth.authorize_requests().len() >= 2,
        "two popup flows reached the authorization server"
    );
    assert!(docs.count("tools/call") >= 3);
    assert!(
        keyed.count("tools/list") >= 1,
        "the keyed server listed its tools once its headers were corrected"
    );
    // On the per-user server each member acted as their own account, and the admin's
    // disconnections revoked the member's grant and then everyone's.
    assert!(team.count("tools/call") >= 4);
    let revoked: Vec<Option<String>> = auth
        .revocations()
        .into_iter()
        .map(|revocation| revocation.subject)
        .collect();
    for subject in [
        format!("{MEMBER_NAME}-upstream"),
        "admin-upstream".to_owned(),
    ] {
        assert!(
            revoked
                .iter()
                .any(|s| s.as_deref() == Some(subject.as_str())),
            "{subject}'s grant was revoked: {revoked:?}"
        );
    }
    // The machine client got its tokens by itself, with assertions signed by the key typed
    // into the form: nobody was sent to authorize it, and its tool answered as the client.
    assert!(
        machine_auth.authorize_requests().is_empty(),
        "nobody authorizes a machine client"
    );
    let machine_tokens: Vec<_> = machine_auth
        .token_requests()
        .into_iter()
        .filter(|request| request.grant_type == "client_credentials")
        .collect();
    assert!(
        machine_tokens.len() >= 3,
        "a token at creation, a refused one with the unknown key, one after recovery: {}",
        machine_tokens.len()
    );
    assert!(
        machine_tokens
            .iter()
            .all(|request| matches!(request.client_auth, ClientAuth::PrivateKeyJwt)),
        "every token request was signed with a key"
    );
    assert!(machine.count("tools/call") >= 2);
    // The answers typed into the console's forms reached the 2026-07-28 server as elicitation
    // results: a name, then a colour, a consent to the page, a declined confirmation and an
    // accepted one.
    let survey = forms.input_responses("survey");
    assert!(
        survey.contains(
            &json!({ "name": { "action": "accept", "content": { "name": "Ada Lovelace" } } })
        ),
        "{survey:?}"
    );
    assert!(
        survey
            .contains(&json!({ "color": { "action": "accept", "content": { "color": "green" } } })),
        "{survey:?}"
    );
    assert_eq!(
        forms.input_responses("open_url"),
        [json!({ "consent": { "action": "accept" } })]
    );
    let confirm = forms.input_responses("confirm");
    for answer in [
        json!({ "confirm": { "action": "decline" } }),
        json!({ "confirm": { "action": "accept", "content": { "confirmed": true, "note": "all good" } } }),
    ] {
        assert!(confirm.contains(&answer), "{answer} in {confirm:?}");
    }
    // The consent page was fetched once, when Open was pressed, and told nothing of the console.
    let visits: Vec<_> = forms
        .requests()
        .into_iter()
        .filter(|request| request.path == "/consent")
        .collect();
    assert_eq!(visits.len(), 1, "the page is only opened on request");
    assert_eq!(visits[0].method, "GET");
    assert_eq!(
        visits[0].header("referer"),
        None,
        "the page learns no referrer"
    );
}
