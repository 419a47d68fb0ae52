//! What callers give to create or change a server, and its validation: the name and
//! description, the URL and its normalised form, the timeout and retries, the static headers
//! and the pre-registered client's credentials.
//!
//! Invariants:
//! - Every rule is pure except [`validate_url`], which also checks the URL against the outbound
//!   rules (resolving its host).
//! - An error names the API's input field (`timeoutMs`, `oauthClientId`, …) and never echoes a
//!   header value or a client secret.
//! - The normalised form of a URL (lowercase scheme and host, no default port, no fragment, no
//!   trailing slash) is what uniqueness within a workspace compares.

use std::collections::HashSet;

use url::Url;

use super::{AuthType, CredentialMode, Transport};
use crate::crypto::Secret;
use crate::domain::{Context, Error, Result, bad_input};
use crate::mcp::RESERVED_HEADERS;
use crate::net::{self, NetError};

/// A change to one field of an update: absent leaves it, `Clear` empties it.
#[derive(Clone, Debug, Default)]
pub enum Patch<T> {
    /// Field absent: unchanged.
    #[default]
    Unchanged,
    /// `null` (or `""` where that means empty): clear it.
    Clear,
    /// A new value.
    Set(T),
}

impl<T> Patch<T> {
    /// Whether the field was absent.
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Patch::Unchanged)
    }

    /// A field that cannot be cleared: its new value, if any; `null` is an error naming it.
    pub fn required(self, field: &str) -> Result<Option<T>> {
        match self {
            Patch::Unchanged => Ok(None),
            Patch::Clear => Err(bad_input(field, "cannot be null")),
            Patch::Set(value) => Ok(Some(value)),
        }
    }

    /// A field that can be cleared: `None` when absent, `Some(None)` to clear.
    pub fn optional(self) -> Option<Option<T>> {
        match self {
            Patch::Unchanged => None,
            Patch::Clear => Some(None),
            Patch::Set(value) => Some(Some(value)),
        }
    }
}

/// A static header as given by the caller.
#[derive(Clone, Debug)]
pub struct HeaderInput {
    /// Header name.
    pub name: String,
    /// Header value (sealed at rest, never returned).
    pub value: Secret,
}

/// Input of [`create`].
#[derive(Clone, Debug, Default)]
pub struct NewServer {
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// MCP endpoint.
    pub url: String,
    /// Transport (default Streamable HTTP).
    pub transport: Option<Transport>,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// Request timeout in milliseconds.
    pub timeout_ms: Option<i32>,
    /// Connection retries.
    pub retries: Option<i32>,
    /// Explicit auth type; when absent it is inferred.
    pub auth_type: Option<AuthType>,
    /// Static headers.
    pub headers: Option<Vec<HeaderInput>>,
    /// Pre-registered OAuth client id (`""` means none).
    pub oauth_client_id: Option<String>,
    /// Pre-registered OAuth client secret (`""` means none).
    pub oauth_client_secret: Option<Secret>,
    /// Accept an authorization server that omits `code_challenge_methods_supported`.
    pub oauth_lenient_pkce: Option<bool>,
    /// Whose credentials reach it (default shared).
    pub credentials: Option<CredentialMode>,
    /// A machine client's private key (PEM), for `private_key_jwt` (`""` means none).
    pub oauth_client_key: Option<Secret>,
}

/// Input of [`update`]: every field optional.
#[derive(Clone, Debug, Default)]
pub struct ServerChanges {
    /// Display name.
    pub name: Patch<String>,
    /// Free text.
    pub description: Patch<String>,
    /// MCP endpoint.
    pub url: Patch<String>,
    /// Transport.
    pub transport: Patch<Transport>,
    /// Enabled.
    pub enabled: Patch<bool>,
    /// Request timeout in milliseconds.
    pub timeout_ms: Patch<i32>,
    /// Connection retries.
    pub retries: Patch<i32>,
    /// Auth type.
    pub auth_type: Patch<AuthType>,
    /// Static headers (`Clear` or an empty list removes them all).
    pub headers: Patch<Vec<HeaderInput>>,
    /// Pre-registered OAuth client id.
    pub oauth_client_id: Patch<String>,
    /// Pre-registered OAuth client secret.
    pub oauth_client_secret: Patch<Secret>,
    /// Accept an authorization server that omits `code_challenge_methods_supported`.
    pub oauth_lenient_pkce: Patch<bool>,
    /// Whose credentials reach it.
    pub credentials: Patch<CredentialMode>,
    /// A machine client's private key (PEM).
    pub oauth_client_key: Patch<Secret>,
}

/// Default request timeout.
pub const DEFAULT_TIMEOUT_MS: i32 = 30_000;
/// Accepted request timeouts.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<i32> = 1_000..=300_000;
/// Default retries.
pub const DEFAULT_RETRIES: i32 = 3;
/// Accepted retries.
pub const RETRIES_RANGE: std::ops::RangeInclusive<i32> = 0..=10;
/// Most static headers per server.
pub const MAX_HEADERS: usize = 32;

impl<T> Patch<T> {
    /// Transform the value of a `Set`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Unchanged => Patch::Unchanged,
            Patch::Clear => Patch::Clear,
            Patch::Set(value) => Patch::Set(f(value)),
        }
    }
}

/// A validated server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// As stored: the caller's text, trimmed, without fragment.
    pub url: String,
    /// The form compared for uniqueness.
    pub normalized: String,
    /// Parsed.
    pub parsed: Url,
}

/// Validate a server URL and check it against the outbound rules (resolving the host).
pub async fn validate_url(ctx: &Context, field: &str, raw: &str) -> Result<ServerUrl> {
    let parsed = parse_server_url(field, raw)?;
    net::check_url(&parsed, ctx.http.policy())
        .await
        .map_err(|e| url_error(field, e))?;
    let url = raw.trim().split('#').next().unwrap_or_default().to_owned();
    Ok(ServerUrl {
        url,
        normalized: normalize_url(&parsed),
        parsed,
    })
}

pub(crate) fn parse_server_url(field: &str, raw: &str) -> Result<Url> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad_input(field, "is required"));
    }
    if raw.len() > 2048 {
        return Err(bad_input(field, "is longer than 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|e| bad_input(field, format!("is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_input(field, "must be an http or https URL"));
    }
    if url.host().is_none() {
        return Err(bad_input(field, "must have a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad_input(
            field,
            "must not contain credentials; use headers instead",
        ));
    }
    Ok(url)
}

fn url_error(field: &str, error: NetError) -> Error {
    match error {
        NetError::DisallowedAddress { .. } | NetError::HttpsRequired => Error::UnsafeUrl {
            field: field.to_owned(),
            message: error.to_string(),
        },
        other => bad_input(field, other.to_string()),
    }
}

/// The normalised form of a URL: lowercase scheme and host (the parser does both), default
/// port dropped, no fragment, no trailing slash.
pub fn normalize_url(url: &Url) -> String {
    let mut normalized = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        normalized.push_str(&format!(":{port}"));
    }
    normalized.push_str(url.path().trim_end_matches('/'));
    if let Some(query) = url.query() {
        normalized.push('?');
        normalized.push_str(query);
    }
    normalized
}

pub(super) fn validate_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(bad_input("name", "is required"));
    }
    if name.chars().count() > 200 {
        return Err(bad_input("name", "is longer than 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad_input("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

pub(super) fn validate_description(raw: Option<&str>) -> Result<Option<String>> {
    let Some(text) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > 2000 {
        return Err(bad_input("description", "is longer than 2000 characters"));
    }
    Ok(Some(text.to_owned()))
}

pub(super) fn validate_timeout(ms: i32) -> Result<i32> {
    if TIMEOUT_MS_RANGE.contains(&ms) {
        Ok(ms)
    } else {
        Err(bad_input(
            "timeoutMs",
            format!(
                "must be between {} and {}",
                TIMEOUT_MS_RANGE.start(),
                TIMEOUT_MS_RANGE.end()
            ),
        ))
    }
}

pub(super) fn validate_retries(n: i32) -> Result<i32> {
    if RETRIES_RANGE.contains(&n) {
        Ok(n)
    } else {
        Err(bad_input(
            "retries",
            format!(
                "must be between {} and {}",
                RETRIES_RANGE.start(),
                RETRIES_RANGE.end()
            ),
        ))
    }
}

pub(super) fn validate_headers(headers: Vec<HeaderInput>) -> Result<Vec<(String, Secret)>> {
    if headers.len() > MAX_HEADERS {
        return Err(bad_input(
            "headers",
            format!("at most {MAX_HEADERS} headers are allowed"),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.name.trim().to_owned();
        if name.is_empty()
            || name.len() > 128
            || http::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err(bad_input(
                "headers",
                format!("{name:?} is not a valid header name"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(bad_input(
                "headers",
                format!("{name} is set by Switchboard and cannot be configured"),
            ));
        }
        if !seen.insert(lower) {
            return Err(bad_input(
                "headers",
                format!("{name} is given more than once"),
            ));
        }
        let value = header.value;
        // The value is never echoed: it is a secret.
        if value.expose().len() > 8192 || http::HeaderValue::from_str(value.expose()).is_err() {
            return Err(bad_input(
                "headers",
                format!("the value of {name} is not a valid header value"),
            ));
        }
        out.push((name, value));
    }
    Ok(out)
}

pub(super) fn validate_client_id(raw: Option<&str>) -> Result<Option<String>> {
    let Some(id) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if id.len() > 512 || id.chars().any(char::is_control) {
        return Err(bad_input(
            "oauthClientId",
            "must be at most 512 printable characters",
        ));
    }
    Ok(Some(id.to_owned()))
}

pub(super) fn validate_client_secret(raw: Option<Secret>) -> Result<Option<Secret>> {
    let Some(secret) = raw.filter(|s| !s.expose().is_empty()) else {
        return Ok(None);
    };
    if secret.expose().len() > 2048 || secret.expose().chars().any(char::is_control) {
        return Err(bad_input(
            "oauthClientSecret",
            "must be at most 2048 printable characters",
        ));
    }
    Ok(Some(secret))
}

/// A machine client's private key: a PEM key this server can sign `private_key_jwt`
/// assertions with (RSA of 2048 bits or more for RS256, P-256 for ES256). The error never
/// quotes the key.
pub(super) fn validate_client_key(raw: Option<Secret>) -> Result<Option<Secret>> {
    let Some(key) = raw.filter(|s| !s.expose().trim().is_empty()) else {
        return Ok(None);
    };
    crate::domain::oauth::assertion::PrivateKey::from_pem(key.expose())
        .map_err(|error| bad_input("oauthClientKey", error.to_string()))?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        normalize_url(&Url::parse(raw).unwrap())
    }

    #[test]
    fn normalisation_matches_the_product_rules() {
        assert_eq!(
            norm("HTTPS://MCP.Example.com/mcp/"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            norm("https://mcp.example.com/mcp#frag"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            norm("https://mcp.example.com:443/"),
            "https://mcp.example.com"
        );
        assert_eq!(norm("https://mcp.example.com"), "https://mcp.example.com");
        assert_eq!(
            norm("http://127.0.0.1:8080/a/?x=1"),
            "http://127.0.0.1:8080/a?x=1"
        );
        assert_ne!(
            norm("https://mcp.example.com/A"),
            norm("https://mcp.example.com/a")
        );
    }

    #[test]
    fn header_rules() {
        let h = |n: &str, v: &str| HeaderInput {
            name: n.into(),
            value: Secret::new(v),
        };
        assert!(
            validate_headers(vec![h("Authorization", "Bearer x"), h("X-Api-Key", "k")]).is_ok()
        );
        assert!(validate_headers(vec![h("Host", "x")]).is_err());
        assert!(validate_headers(vec![h("X-A", "1"), h("x-a", "2")]).is_err());
        assert!(validate_headers(vec![h("Bad Name", "1")]).is_err());
        let error = validate_headers(vec![h("X-A", "line\r\nbreak-secret")]).unwrap_err();
        assert!(!error.to_string().contains("break-secret"));
    }

    #[test]
    fn url_rules() {
        assert!(parse_server_url("url", "ftp://x.example").is_err());
        assert!(parse_server_url("url", "javascript:alert(1)").is_err());
        assert!(parse_server_url("url", "https://user:pw@x.example").is_err());
        assert!(parse_server_url("url", "").is_err());
        assert!(parse_server_url("url", "https://x.example/mcp").is_ok());
    }
}
