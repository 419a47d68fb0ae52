//! GraphiQL at `GET /graphql`: a pinned build of GraphiQL and React from `assets/graphiql/`
//! (origins and SHA-256 in its README), compiled into the binary, so the page works offline
//! and loads nothing from another origin.
//!
//! Invariants:
//! - every script and style sheet of the page comes from `/graphiql/…` on this server; the
//!   page has no inline script;
//! - the page's Content-Security-Policy allows scripts and style sheets from this origin only,
//!   network access to this origin only (HTTP and WebSocket), fonts and images from `data:`
//!   URLs (GraphiQL's style sheet carries its fonts and a few icons that way), and one inline
//!   style: the `<style>` element GraphiQL's dialogs add to lock scrolling, admitted by a
//!   nonce drawn for each response and handed to the page's own script;
//! - the page is never cached (it carries its nonce); the other files are revalidated by
//!   `ETag` like the console's.
//!
//! The page's own script (`assets/graphiql/switchboard.js`) sends queries and mutations to
//! `POST /graphql` with the headers typed in GraphiQL's headers editor, and subscriptions over
//! `/graphql/ws` (graphql-transport-ws) with that `Authorization` in `connection_init`.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::embedded::{EmbeddedFile, connect_sources, protect_page};
use crate::crypto::random_token;

/// The page, with [`NONCE_SLOT`] where the response's nonce goes.
const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// Marks the one place in [`PAGE`] that carries the nonce.
const NONCE_SLOT: &str = "{{style-nonce}}";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files under `/graphiql/`: path below it, body, content type.
const FILES: [(&str, &[u8], &str); 6] = [
    (
        "react-18.3.1/react.production.min.js",
        include_bytes!("../../assets/graphiql/react-18.3.1/react.production.min.js"),
        JAVASCRIPT,
    ),
    (
        "react-dom-18.3.1/react-dom.production.min.js",
        include_bytes!("../../assets/graphiql/react-dom-18.3.1/react-dom.production.min.js"),
        JAVASCRIPT,
    ),
    (
        "graphiql-3.9.0/graphiql.min.js",
        include_bytes!("../../assets/graphiql/graphiql-3.9.0/graphiql.min.js"),
        JAVASCRIPT,
    ),
    (
        "graphiql-3.9.0/graphiql.min.css",
        include_bytes!("../../assets/graphiql/graphiql-3.9.0/graphiql.min.css"),
        CSS,
    ),
    (
        "switchboard.js",
        include_bytes!("../../assets/graphiql/switchboard.js"),
        JAVASCRIPT,
    ),
    (
        "switchboard.css",
        include_bytes!("../../assets/graphiql/switchboard.css"),
        CSS,
    ),
];

static EMBEDDED: LazyLock<Vec<(&'static str, EmbeddedFile)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, body, content_type)| (path, EmbeddedFile::new(body, content_type)))
        .collect()
});

/// `GET /graphql`: the GraphiQL page.
pub async fn page(headers: HeaderMap) -> Response {
    // 128 bits, base64url: only characters a CSP nonce allows.
    let nonce = random_token(16);
    let mut response = PAGE.replace(NONCE_SLOT, &nonce).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    protect_page(
        &mut response,
        &page_policy(headers.get(header::HOST), &nonce),
        "same-origin",
    );
    response
}

/// `GET /graphiql/{*file}`: one of the page's scripts and style sheets.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match EMBEDDED.iter().find(|(path, _)| *path == file) {
        Some((_, embedded)) => embedded.serve(&headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The page's Content-Security-Policy.
pub fn page_policy(host: Option<&HeaderValue>, nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' data:; font-src data:; connect-src {}; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'; object-src 'none'",
        connect_sources(host)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_nonce_slot_and_names_every_file() {
        assert_eq!(PAGE.matches(NONCE_SLOT).count(), 1);
        for (path, _, _) in FILES {
            assert!(PAGE.contains(&format!("\"/graphiql/{path}\"")), "{path}");
        }
    }
}
