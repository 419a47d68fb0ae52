//! The built-in status console: one page of plain HTML, CSS and JavaScript from `console/`,
//! compiled into the binary and served at `/`.
//!
//! The page talks to this server's public GraphQL API (HTTP and WebSocket), as any other
//! client would, and has no privileges. Its one endpoint of its own,
//! `GET /console/identity.json`, tells it without authentication which identity providers it
//! can sign in with (public data only, see [`crate::domain::identity::console`]); it then
//! redeems codes and renews tokens at those providers' token endpoints, which the page's
//! policy allows it to reach and nothing else outside this origin. What this module owns is how
//! the files are served (see [`super::embedded`] for content types, `nosniff` and caching):
//! the page runs under a strict Content-Security-Policy: scripts and styles only from this
//! origin (no inline code), network access only to this origin over HTTP and WebSocket, no
//! framing, no form submission (the page's forms are handled by its script, and a native
//! submit would put the pasted API token in a URL).

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::embedded::{EmbeddedFile, connect_sources, protect_page};

static INDEX: LazyLock<EmbeddedFile> = LazyLock::new(|| {
    EmbeddedFile::new(
        include_bytes!("../../console/index.html"),
        "text/html; charset=utf-8",
    )
});
static SCRIPT: LazyLock<EmbeddedFile> = LazyLock::new(|| {
    EmbeddedFile::new(
        include_bytes!("../../console/console.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<EmbeddedFile> = LazyLock::new(|| {
    EmbeddedFile::new(
        include_bytes!("../../console/console.css"),
        "text/css; charset=utf-8",
    )
});
static ICON: LazyLock<EmbeddedFile> = LazyLock::new(|| {
    EmbeddedFile::new(include_bytes!("../../console/favicon.svg"), "image/svg+xml")
});

/// `GET /`: the console page, which is also where identity providers redirect back to.
pub async fn index(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let token_endpoints: Vec<String> = state
        .app
        .identity
        .console_providers(&state.app.http)
        .await
        .into_iter()
        .map(|provider| provider.token_endpoint)
        .collect();
    let mut response = INDEX.serve(&headers);
    // Keeps the opener link to the OAuth popup (which the callback page needs to report
    // back) while isolating the console from windows of other origins.
    protect_page(
        &mut response,
        &page_policy(headers.get(header::HOST), &token_endpoints),
        "same-origin-allow-popups",
    );
    response
}

/// `GET /console/identity.json`: the identity providers the console can sign in with, as
/// `{"providers": [...]}` (an empty list when none is configured for the console).
pub async fn identity(State(state): State<HttpState>) -> Response {
    let providers = state.app.identity.console_providers(&state.app.http).await;
    let mut response = axum::Json(serde_json::json!({ "providers": providers })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /console.js`.
pub async fn script(headers: HeaderMap) -> Response {
    SCRIPT.serve(&headers)
}

/// `GET /console.css`.
pub async fn style(headers: HeaderMap) -> Response {
    STYLE.serve(&headers)
}

/// `GET /favicon.svg`.
pub async fn icon(headers: HeaderMap) -> Response {
    ICON.serve(&headers)
}

/// The page's Content-Security-Policy; `token_endpoints` are the token endpoints of the
/// console's identity providers (checked to be plain policy sources when they were read).
pub fn page_policy(host: Option<&HeaderValue>, token_endpoints: &[String]) -> String {
    let mut sources = connect_sources(host);
    for endpoint in token_endpoints {
        sources.push(' ');
        sources.push_str(endpoint);
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src {sources}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_host_only_when_it_is_a_plain_host() {
        let plain = page_policy(Some(&HeaderValue::from_static("127.0.0.1:8080")), &[]);
        assert!(
            plain.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"),
            "{plain}"
        );
        for hostile in ["evil; script-src *", "a b", ""] {
            let policy = page_policy(Some(&HeaderValue::from_str(hostile).unwrap()), &[]);
            assert!(
                policy.contains("connect-src 'self';"),
                "{hostile}: {policy}"
            );
            assert!(!policy.contains("script-src *"));
        }
        assert!(page_policy(None, &[]).contains("connect-src 'self';"));
        let with_provider = page_policy(None, &["https://id.example.com/token".to_owned()]);
        assert!(
            with_provider.contains("connect-src 'self' https://id.example.com/token;"),
            "{with_provider}"
        );
    }
}
