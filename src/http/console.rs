//! The built-in status console: one page of plain HTML, CSS and JavaScript from `console/`,
//! compiled into the binary and served at `/`.
//!
//! The page only talks to this server's public GraphQL API (HTTP and WebSocket), as any other
//! client would; it has no endpoint of its own and no privileges. What this module owns is how
//! the files are served (see [`super::embedded`] for content types, `nosniff` and caching):
//! the page runs under a strict Content-Security-Policy: scripts and styles only from this
//! origin (no inline code), network access only to this origin over HTTP and WebSocket, no
//! framing, no form submission (the page's forms are handled by its script, and a native
//! submit would put the pasted API token in a URL).

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

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

/// `GET /`: the console page.
pub async fn index(headers: HeaderMap) -> Response {
    let mut response = INDEX.serve(&headers);
    // Keeps the opener link to the OAuth popup (which the callback page needs to report
    // back) while isolating the console from windows of other origins.
    protect_page(
        &mut response,
        &page_policy(headers.get(header::HOST)),
        "same-origin-allow-popups",
    );
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

/// The page's Content-Security-Policy.
pub fn page_policy(host: Option<&HeaderValue>) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        connect_sources(host)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_host_only_when_it_is_a_plain_host() {
        let plain = page_policy(Some(&HeaderValue::from_static("127.0.0.1:8080")));
        assert!(
            plain.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"),
            "{plain}"
        );
        for hostile in ["evil; script-src *", "a b", ""] {
            let policy = page_policy(Some(&HeaderValue::from_str(hostile).unwrap()));
            assert!(
                policy.contains("connect-src 'self';"),
                "{hostile}: {policy}"
            );
            assert!(!policy.contains("script-src *"));
        }
        assert!(page_policy(None).contains("connect-src 'self';"));
    }
}
