//! Auth detection: one unauthenticated MCP request tells how a server wants to be
//! authenticated.
//!
//! - 2xx → no authentication;
//! - 401 with a `Bearer` challenge that carries `resource_metadata` or `scope` → OAuth;
//! - 401 otherwise (a bare `invalid_token`, a `realm`, another scheme) → static headers;
//! - 403 without a challenge → static headers;
//! - anything else, or a network failure → undetected: not a verdict, asked again on refresh,
//!   on a URL change and on request.
//!
//! The request follows the specification's era detection: first a `server/discover` of the
//! stateless revision (2026-07-28), with its protocol headers and `_meta`. A server of that
//! era answers it, or refuses it with an error of that era: `-32022` (unsupported version)
//! naming a version Switchboard speaks is asked once more, as version negotiation goes; another
//! refusal of that era is no verdict. Any other 4xx than 401 and 403 comes from a server of
//! the earlier era, which is then asked with `initialize` (revision 2025-11-25), and the
//! verdict follows that answer by the same rules. A legacy HTTP+SSE server is asked with the
//! GET that opens its event stream.
//!
//! A session the server opened for the probe is closed with a best-effort `DELETE`.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use url::Url;

use super::challenge::{self, Challenge};
use crate::domain::servers::{AuthType, Transport};
use crate::mcp::STATELESS_REVISION;
use crate::net::GuardedClient;

/// How long a probe waits.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// MCP protocol version sent by Switchboard in `initialize`.
pub const MCP_PROTOCOL_VERSION: &str = "2025-11-25";

/// Most bytes of a refusal read to find its JSON-RPC error code.
const MAX_REFUSAL_BYTES: usize = 8 * 1024;

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

/// The JSON-RPC `server/discover` request of the stateless era, with its `_meta`.
pub fn discover_request() -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "server/discover",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": STATELESS_REVISION,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {
                    "name": "switchboard",
                    "version": env!("CARGO_PKG_VERSION")
                }
            }
        }
    })
}

/// How the probe asks.
#[derive(Clone, Copy)]
enum Ask {
    /// `initialize` over Streamable HTTP.
    Initialize,
    /// `server/discover` with the stateless era's headers.
    Discover,
    /// The `GET` that opens an HTTP+SSE event stream.
    EventStream,
}

/// Probe a server URL (already validated against the outbound rules by the caller's URL
/// check; the guarded client checks again).
/// A Streamable HTTP server is asked with `server/discover`, then, if it is of the earlier
/// era, with an `initialize` POST; a legacy HTTP+SSE server with the GET that opens its event
/// stream (the body is never read).
pub async fn probe(http: &GuardedClient, url: &Url, transport: Transport) -> ProbeResult {
    let refused = || ProbeResult {
        auth_type: AuthType::Undetected,
        reason: "protocol_refused".into(),
        challenge: None,
    };
    match transport {
        Transport::StreamableHttp => match ask(http, url, Ask::Discover).await {
            Asked::Verdict(result) => result,
            Asked::Legacy => match ask(http, url, Ask::Initialize).await {
                Asked::Verdict(result) => result,
                Asked::Legacy | Asked::Stateless { .. } => refused(),
            },
            Asked::Stateless { negotiate: true } => match ask(http, url, Ask::Discover).await {
                Asked::Verdict(result) => result,
                Asked::Legacy | Asked::Stateless { .. } => refused(),
            },
            Asked::Stateless { negotiate: false } => refused(),
        },
        Transport::Sse => match ask(http, url, Ask::EventStream).await {
            Asked::Verdict(result) => result,
            Asked::Legacy | Asked::Stateless { .. } => refused(),
        },
    }
}

/// What one request of the probe found.
enum Asked {
    Verdict(ProbeResult),
    /// `server/discover` refused by a server of the earlier era.
    Legacy,
    /// Refused with an error of the stateless era; `negotiate` when it was `-32022` naming a
    /// version Switchboard speaks, which is worth asking again.
    Stateless {
        negotiate: bool,
    },
}

async fn ask(http: &GuardedClient, url: &Url, how: Ask) -> Asked {
    let post = |body: serde_json::Value| {
        http.request(Method::POST, url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(body.to_string())
    };
    let request = match how {
        Ask::Initialize => post(initialize_request()),
        Ask::Discover => post(discover_request())
            .header("mcp-protocol-version", STATELESS_REVISION)
            .header("mcp-method", "server/discover"),
        Ask::EventStream => http
            .request(Method::GET, url.clone())
            .header(ACCEPT, "text/event-stream"),
    }
    .timeout(PROBE_TIMEOUT);
    let response = match http.send(request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%error, "probe failed; the auth type stays undetected");
            return Asked::Verdict(ProbeResult {
                auth_type: AuthType::Undetected,
                reason: "unreachable".into(),
                challenge: None,
            });
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
        return Asked::Verdict(ProbeResult {
            auth_type: AuthType::None,
            reason: "no_auth_required".into(),
            challenge: None,
        });
    }
    if status.as_u16() == 401 {
        let challenge = challenge::parse(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        return Asked::Verdict(match challenge {
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
        });
    }
    if matches!(how, Ask::Discover) && status.is_client_error() && status.as_u16() != 403 {
        return match stateless_refusal(response).await {
            Some(negotiate) => Asked::Stateless { negotiate },
            None => Asked::Legacy,
        };
    }
    // A stateless server answers discovery; one that fails on it may be an earlier server
    // failing on a method it does not know, so `initialize` gets its chance.
    if matches!(how, Ask::Discover) && status.is_server_error() {
        return Asked::Legacy;
    }
    // A refusal without a challenge asks for credentials of some kind; any other answer (a
    // wrong path, a failing server) says nothing about authentication.
    Asked::Verdict(ProbeResult {
        auth_type: if status.as_u16() == 403 {
            AuthType::Headers
        } else {
            AuthType::Undetected
        },
        reason: format!("unexpected_status_{}", status.as_u16()),
        challenge: None,
    })
}

/// Whether a refused `server/discover` carries a JSON-RPC error of the stateless era (`-32020`
/// header mismatch, `-32021` missing capability, `-32022` unsupported protocol version): if
/// so, whether it is `-32022` naming the version Switchboard speaks. Only the code and the
/// supported versions are read.
async fn stateless_refusal(response: reqwest::Response) -> Option<bool> {
    let body = crate::net::read_body_capped(response, MAX_REFUSAL_BYTES)
        .await
        .ok()?;
    let message: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let error = message.get("error")?;
    match error.get("code").and_then(serde_json::Value::as_i64)? {
        -32022 => Some(
            error
                .pointer("/data/supported")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|supported| {
                    supported
                        .iter()
                        .any(|version| version == STATELESS_REVISION)
                }),
        ),
        -32021 | -32020 => Some(false),
        _ => None,
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
