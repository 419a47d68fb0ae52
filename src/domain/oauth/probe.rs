//! Auth detection: one unauthenticated MCP `initialize` tells how a server wants to be
//! authenticated.
//!
//! - 2xx → no authentication;
//! - 401 with a `Bearer` challenge that carries `resource_metadata` or `scope` → OAuth;
//! - 401 otherwise (a bare `invalid_token`, a `realm`, another scheme) → static headers;
//! - 403 without a challenge → static headers;
//! - anything else, or a network failure → undetected: not a verdict, asked again on refresh,
//!   on a URL change and on request.
//!
//! A session the server opened for the probe is closed with a best-effort `DELETE`.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use url::Url;

use super::challenge::{self, Challenge};
use crate::domain::servers::{AuthType, Transport};
use crate::net::GuardedClient;

/// How long a probe waits.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// MCP protocol version sent by Switchboard.
pub const MCP_PROTOCOL_VERSION: &str = "2025-11-25";

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The detected auth type.
    pub auth_type: AuthType,
    /// Why, in a few words (`no_auth_required`, `oauth_challenge`, `bearer_challenge`,
    /// `unexpected_status_503`, `unreachable`, …).
    pub reason: String,
    /// The `Bearer` challenge of a 401, if any.
    pub challenge: Option<Challenge>,
}

/// The JSON-RPC `initialize` request Switchboard sends first.
pub fn initialize_request() -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": MCP_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "switchboard", "version": env!("CARGO_PKG_VERSION") }
        }
    })
}

/// Probe a server URL (already validated against the outbound rules by the caller's URL
/// check; the guarded client checks again).
/// A Streamable HTTP server is asked with an `initialize` POST; a legacy HTTP+SSE server with
/// the GET that opens its event stream (the body is never read).
pub async fn probe(http: &GuardedClient, url: &Url, transport: Transport) -> ProbeResult {
    let request = match transport {
        Transport::StreamableHttp => http
            .request(Method::POST, url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(initialize_request().to_string()),
        Transport::Sse => http
            .request(Method::GET, url.clone())
            .header(ACCEPT, "text/event-stream"),
    }
    .timeout(PROBE_TIMEOUT);
    let response = match http.send(request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%error, "probe failed; the auth type stays undetected");
            return ProbeResult {
                auth_type: AuthType::Undetected,
                reason: "unreachable".into(),
                challenge: None,
            };
        }
    };
    let status = response.status();
    if let Some(session) = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        close_session(http, url, session.to_owned());
    }
    if status.is_success() {
        return ProbeResult {
            auth_type: AuthType::None,
            reason: "no_auth_required".into(),
            challenge: None,
        };
    }
    if status.as_u16() == 401 {
        let challenge = challenge::parse(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        return match challenge {
            Some(c) if c.signals_oauth() => ProbeResult {
                auth_type: AuthType::Oauth,
                reason: "oauth_challenge".into(),
                challenge: Some(c),
            },
            Some(c) => ProbeResult {
                auth_type: AuthType::Headers,
                reason: "bearer_challenge".into(),
                challenge: Some(c),
            },
            None => ProbeResult {
                auth_type: AuthType::Headers,
                reason: "unauthorized".into(),
                challenge: None,
            },
        };
    }
    // A refusal without a challenge asks for credentials of some kind; any other answer (a
    // wrong path, a failing server) says nothing about authentication.
    ProbeResult {
        auth_type: if status.as_u16() == 403 {
            AuthType::Headers
        } else {
            AuthType::Undetected
        },
        reason: format!("unexpected_status_{}", status.as_u16()),
        challenge: None,
    }
}

/// Close a session the probe opened, in the background and without waiting.
fn close_session(http: &GuardedClient, url: &Url, session: String) {
    let http = http.clone();
    let url = url.clone();
    tokio::spawn(async move {
        let request = http
            .request(Method::DELETE, url)
            .timeout(PROBE_TIMEOUT)
            .header("mcp-session-id", session);
        if let Err(error) = http.send(request).await {
            tracing::debug!(%error, "closing the probe's session failed");
        }
    });
}
