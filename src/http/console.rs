//! The built-in status console: one page of plain HTML, CSS and JavaScript from `console/`,
//! compiled into the binary and served at `/`.
//!
//! The page only talks to this server's public GraphQL API (HTTP and WebSocket), as any other
//! client would; it has no endpoint of its own and no privileges. What this module owns is how
//! the files are served:
//! - every file has its exact content type and `X-Content-Type-Options: nosniff`;
//! - the page runs under a strict Content-Security-Policy: scripts and styles only from this
//!   origin (no inline code), network access only to this origin over HTTP and WebSocket, no
//!   framing, no form submission (the page's forms are handled by its script, and a native
//!   submit would put the pasted API token in a URL);
//! - `Cache-Control: no-cache` with a strong `ETag`, so a browser revalidates and picks up a
//!   new binary's files at once, while an unchanged file costs a `304`.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// Strong validator: a quoted prefix of the body's SHA-256.
    etag: String,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        let digest = Sha256::digest(body);
        Asset {
            body,
            content_type,
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
        }
    }
}

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../../console/index.html"),
        "text/html; charset=utf-8",
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../../console/console.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../../console/console.css"),
        "text/css; charset=utf-8",
    )
});
static ICON: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_bytes!("../../console/favicon.svg"), "image/svg+xml"));

/// `GET /`: the console page.
pub async fn index(headers: HeaderMap) -> Response {
    let mut response = serve(&INDEX, &headers);
    let csp = page_policy(headers.get(header::HOST));
    let out = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        out.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Keeps the opener link to the OAuth popup (which the callback page needs to report
    // back) while isolating the console from windows of other origins.
    out.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin-allow-popups"),
    );
    response
}

/// `GET /console.js`.
pub async fn script(headers: HeaderMap) -> Response {
    serve(&SCRIPT, &headers)
}

/// `GET /console.css`.
pub async fn style(headers: HeaderMap) -> Response {
    serve(&STYLE, &headers)
}

/// `GET /favicon.svg`.
pub async fn icon(headers: HeaderMap) -> Response {
    serve(&ICON, &headers)
}

/// The page's Content-Security-Policy. WebSocket URLs are listed explicitly for the host the
/// browser asked for, because older browsers do not let `'self'` cover `ws:` and `wss:`; a
/// Host header with anything but host-name characters is left out rather than echoed.
pub fn page_policy(host: Option<&HeaderValue>) -> String {
    let sockets = host
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 255
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map(|host| format!(" ws://{host} wss://{host}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == asset.etag || tag == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
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

    #[test]
    fn a_matching_validator_answers_not_modified() {
        let mut request = HeaderMap::new();
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{}", SCRIPT.etag)).unwrap(),
        );
        let response = serve(&SCRIPT, &request);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], SCRIPT.etag.as_str());
        let response = serve(&SCRIPT, &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }
}
