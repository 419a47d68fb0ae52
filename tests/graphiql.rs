//! GraphiQL at `GET /graphql`: the page and its vendored files are served from this server
//! with exact content types, a strict Content-Security-Policy with a fresh nonce per response,
//! and the bytes committed in `assets/graphiql/` (whose README lists their SHA-256); and —
//! ignored by default because it needs Chromium — GraphiQL driven in a real browser
//! (`scripts/e2e.sh` runs it).

use sha2::{Digest, Sha256};

use crate::console::{repo_path, run_browser_scenario};
use crate::support::TestApp;
use crate::support::fake_mcp::{FakeMcpServer, McpConfig, echo_tool, tool};

/// The page's files under `/graphiql/`: path, content type.
const FILES: [(&str, &str); 6] = [
    (
        "react-18.3.1/react.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "react-dom-18.3.1/react-dom.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "graphiql-3.9.0/graphiql.min.js",
        "text/javascript; charset=utf-8",
    ),
    ("graphiql-3.9.0/graphiql.min.css", "text/css; charset=utf-8"),
    ("switchboard.js", "text/javascript; charset=utf-8"),
    ("switchboard.css", "text/css; charset=utf-8"),
];

/// The files copied from npm packages, with their licenses.
const VENDORED: [&str; 7] = [
    "graphiql-3.9.0/graphiql.min.js",
    "graphiql-3.9.0/graphiql.min.css",
    "graphiql-3.9.0/LICENSE",
    "react-18.3.1/react.production.min.js",
    "react-18.3.1/LICENSE",
    "react-dom-18.3.1/react-dom.production.min.js",
    "react-dom-18.3.1/LICENSE",
];

fn asset_bytes(path: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("assets/graphiql/{path}"))).unwrap()
}

/// The value of `attribute` in the tag that starts `tag`.
fn attribute<'a>(tag: &'a str, attribute: &str) -> Option<&'a str> {
    let end = tag.find('>')?;
    let start = tag[..end].find(&format!(" {attribute}=\""))? + attribute.len() + 3;
    let length = tag[start..].find('"')?;
    Some(&tag[start..start + length])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_served_under_a_strict_policy_with_a_fresh_nonce() {
    let t = TestApp::start().await;
    let response = t.http.get(t.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
    assert_eq!(
        headers["cache-control"], "no-store",
        "the page carries its nonce"
    );
    assert!(headers.get("etag").is_none());
    let html = response.text().await.unwrap();

    // Scripts: only this server's files, none inline; the last one carries the nonce.
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    let sources: Vec<&str> = scripts
        .iter()
        .map(|tag| attribute(tag, "src").expect("every script has a src"))
        .collect();
    assert_eq!(
        sources,
        [
            "/graphiql/react-18.3.1/react.production.min.js",
            "/graphiql/react-dom-18.3.1/react-dom.production.min.js",
            "/graphiql/graphiql-3.9.0/graphiql.min.js",
            "/graphiql/switchboard.js",
        ]
    );
    for tag in &scripts {
        assert!(tag.contains("></script>"), "a script with content: {tag}");
    }
    let nonce = attribute(scripts[3], "nonce").expect("the page script's nonce");
    assert!(nonce.len() >= 22, "{nonce}");
    assert!(
        nonce
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );

    // Styles: only this server's style sheets, none inline.
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "{html}"
    );
    let sheets: Vec<&str> = html
        .split("<link")
        .skip(1)
        .filter(|tag| attribute(tag, "rel") == Some("stylesheet"))
        .map(|tag| attribute(tag, "href").unwrap())
        .collect();
    assert_eq!(
        sheets,
        [
            "/graphiql/graphiql-3.9.0/graphiql.min.css",
            "/graphiql/switchboard.css"
        ]
    );
    // No other origin is named anywhere.
    assert!(
        !html.contains("http:") && !html.contains("https:") && !html.contains("//"),
        "{html}"
    );
    for name in [" src=\"", " href=\""] {
        for rest in html.split(name).skip(1) {
            assert!(rest.starts_with('/'), "{name}{rest}");
        }
    }
    assert!(html.contains(r#"data-endpoint="/graphql""#));
    assert!(html.contains(r#"data-subscription-endpoint="/graphql/ws""#));

    let host = t.addr.to_string();
    assert_eq!(
        headers["content-security-policy"],
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
             img-src 'self' data:; font-src data:; \
             connect-src 'self' ws://{host} wss://{host}; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'; object-src 'none'"
        )
        .as_str()
    );

    // A new response, a new nonce.
    let again = t
        .http
        .get(t.url("/graphql"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scripts: Vec<&str> = again.split("<script").skip(1).collect();
    let second = attribute(scripts[3], "nonce").unwrap();
    assert_ne!(nonce, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_leaves_out_a_host_header_that_is_not_a_plain_host() {
    let t = TestApp::start().await;
    let response = t
        .http
        .get(t.url("/graphql"))
        .header("host", "evil.example; script-src *")
        .send()
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("; connect-src 'self'; "), "{csp}");
    assert!(!csp.contains("evil"), "{csp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_is_served_as_committed_with_its_type_and_validator() {
    let t = TestApp::start().await;
    for (path, content_type) in FILES {
        let url = t.url(&format!("/graphiql/{path}"));
        let response = t.http.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert_eq!(
            headers["cross-origin-resource-policy"], "same-origin",
            "{path}"
        );
        let body = response.bytes().await.unwrap();
        assert!(body.as_ref() == asset_bytes(path).as_slice(), "{path}");

        let etag = headers["etag"].to_str().unwrap();
        let again = t
            .http
            .get(&url)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }

    // Nothing else of the directory, and no way out of it.
    for path in [
        "/graphiql/",
        "/graphiql/index.html",
        "/graphiql/README.md",
        "/graphiql/graphiql-3.9.0/LICENSE",
        "/graphiql/graphiql-3.9.0/index.umd.js.map",
        "/graphiql/..%2F..%2FCargo.toml",
        "/graphiql/switchboard.js/",
    ] {
        let response = t.http.get(t.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
}

#[test]
fn the_readme_lists_the_sha256_of_every_vendored_file() {
    let readme = std::fs::read_to_string(repo_path("assets/graphiql/README.md")).unwrap();
    for path in VENDORED {
        let digest = hex::encode(Sha256::digest(asset_bytes(path)));
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{path}` |")))
            .unwrap_or_else(|| panic!("no README row for {path}"));
        assert!(
            row.ends_with(&format!("| `{digest}` |")),
            "{path} has SHA-256 {digest}; README says {row}"
        );
    }
}

#[test]
fn the_page_script_never_parses_markup_or_evaluates_code() {
    let script = std::fs::read_to_string(repo_path("assets/graphiql/switchboard.js")).unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!script.contains(sink), "switchboard.js uses {sink}");
    }
    assert!(script.contains("'graphql-transport-ws'"));
}

// ---------------------------------------------------------------------------------------------
// GraphiQL in a real browser.

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium; run by scripts/e2e.sh"]
async fn graphiql_in_a_real_browser() {
    let t = TestApp::start().await;
    let search = FakeMcpServer::start(McpConfig {
        tools: vec![echo_tool(), tool("lookup")],
        ..McpConfig::default()
    })
    .await;
    let server_id = t
        .create_server(
            &t.admin,
            serde_json::json!({ "name": "Search", "url": search.url(), "authType": "NONE" }),
        )
        .await;
    let lists_before = search.count("tools/list");

    let out = run_browser_scenario(
        "graphiql.test.mjs",
        &[
            ("SWITCHBOARD_URL", t.url("")),
            ("SWITCHBOARD_TOKEN", t.admin.token.clone()),
            ("SWITCHBOARD_USER_ID", t.admin.user_id.to_string()),
            ("SWITCHBOARD_WORKSPACE_ID", t.admin.workspace_id.to_string()),
            ("MCP_SERVER_ID", server_id),
        ],
    )
    .await;
    assert!(out.join("graphiql.png").is_file(), "no screenshot written");
    // The event the subscription showed came from a refresh that reached the server.
    assert!(search.count("tools/list") > lists_before);
}
