//! Files compiled into the binary (the console's and GraphiQL's) and the headers every page
//! made of them carries.
//!
//! - Every file has its exact content type, `X-Content-Type-Options: nosniff` and
//!   `Cross-Origin-Resource-Policy: same-origin`.
//! - `Cache-Control: no-cache` with a strong `ETag`, so a browser revalidates and picks up a
//!   new binary's files at once, while an unchanged file costs a `304`.
//! - A page's Content-Security-Policy lists this server's WebSocket URLs only for a Host
//!   header made of host-name characters; anything else is left out rather than echoed.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One file compiled into the binary.
pub struct EmbeddedFile {
    body: &'static [u8],
    content_type: &'static str,
    /// Strong validator: a quoted prefix of the body's SHA-256.
    etag: String,
}

impl EmbeddedFile {
    /// A file with its content type (`text/css; charset=utf-8`, …).
    pub fn new(body: &'static [u8], content_type: &'static str) -> EmbeddedFile {
        let digest = Sha256::digest(body);
        EmbeddedFile {
            body,
            content_type,
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
        }
    }

    /// The file, or `304 Not Modified` when the request's `If-None-Match` names it.
    pub fn serve(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .map(|tag| tag.trim().trim_start_matches("W/"))
                    .any(|tag| tag == self.etag || tag == "*")
            });
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            self.body.into_response()
        };
        let headers = response.headers_mut();
        if !fresh {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
        }
        if let Ok(etag) = HeaderValue::from_str(&self.etag) {
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
}

/// The `connect-src` sources of a page: this origin over HTTP(S) and WebSocket. The WebSocket
/// URLs are listed explicitly for the host the browser asked for, because older browsers do
/// not let `'self'` cover `ws:` and `wss:`.
pub fn connect_sources(host: Option<&HeaderValue>) -> String {
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
    format!("'self'{sockets}")
}

/// The headers of a page: its Content-Security-Policy, no framing, no referrer, and the
/// given `Cross-Origin-Opener-Policy`.
pub fn protect_page(response: &mut Response, policy: &str, opener_policy: &'static str) {
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static(opener_policy),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_sources_name_the_host_only_when_it_is_a_plain_host() {
        let plain = connect_sources(Some(&HeaderValue::from_static("127.0.0.1:8080")));
        assert_eq!(plain, "'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080");
        for hostile in ["evil; script-src *", "a b", "", "a'b"] {
            let sources = connect_sources(Some(&HeaderValue::from_str(hostile).unwrap()));
            assert_eq!(sources, "'self'", "{hostile}");
        }
        assert_eq!(connect_sources(None), "'self'");
    }

    #[test]
    fn a_matching_validator_answers_not_modified() {
        let file = EmbeddedFile::new(b"let a = 1;\n", "text/javascript; charset=utf-8");
        let mut request = HeaderMap::new();
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{}", file.etag)).unwrap(),
        );
        let response = file.serve(&request);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], file.etag.as_str());
        assert!(response.headers().get(header::CONTENT_TYPE).is_none());

        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        let response = file.serve(&request);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
    }
}
