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
//! GET that opens its event stream: directly when it is registered for that transport, and
//! after an `initialize` refused with 400, 404 or 405 when it is not, since that is how a
//! server without Streamable HTTP answers a POST ([`ProbeResult::transport`] then says so).
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
    /// The transport the verdict came from: the one asked for, or HTTP+SSE when a server
    /// asked over Streamable HTTP only answered that way.
    pub transport: Transport,
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
    /// The same `GET` to a server registered for Streamable HTTP: an answer counts only when
    /// the stream starts with the `endpoint` event, as an HTTP+SSE server's does.
    EndpointEvent,
}

/// Probe a server URL (already validated against the outbound rules by the caller's URL
/// check; the guarded client checks again).
/// A Streamable HTTP server is asked with `server/discover`, then, if it is of the earlier
/// era, with an `initialize` POST; a legacy HTTP+SSE server with the GET that opens its event
/// stream (the body is never read).
pub async fn probe(http: &GuardedClient, url: &Url, transport: Transport) -> ProbeResult {
    // Traces only: the host, never the URL (its query may be a secret).
    let span = tracing::info_span!(
        target: crate::telemetry::SPANS,
        "probe",
        server.address = url.host_str(),
        auth_type = tracing::field::Empty,
        reason = tracing::field::Empty,
    );
    let result = tracing::Instrument::instrument(detect(http, url, transport), span.clone()).await;
    span.record("auth_type", tracing::field::debug(&result.auth_type));
    span.record("reason", result.reason.as_str());
    result
}

async fn detect(http: &GuardedClient, url: &Url, transport: Transport) -> ProbeResult {
    let refused = || Verdict {
        auth_type: AuthType::Undetected,
        reason: "protocol_refused".into(),
        challenge: None,
    };
    let (verdict, transport) = match transport {
        Transport::StreamableHttp => match ask(http, url, Ask::Discover).await {
            Asked::Verdict(verdict) => (verdict, transport),
            Asked::Legacy => match ask(http, url, Ask::Initialize).await {
                Asked::Verdict(verdict) => (verdict, transport),
                Asked::Older(refusal) => match ask(http, url, Ask::EndpointEvent).await {
                    Asked::Verdict(verdict) if verdict.answered() => (verdict, Transport::Sse),
                    // Not an event stream either: the POST's refusal is the better answer.
                    _ => (refusal, transport),
                },
                Asked::Legacy | Asked::Stateless { .. } => (refused(), transport),
            },
            Asked::Stateless { negotiate: true } => match ask(http, url, Ask::Discover).await {
                Asked::Verdict(verdict) => (verdict, transport),
                _ => (refused(), transport),
            },
            Asked::Stateless { negotiate: false } | Asked::Older(_) => (refused(), transport),
        },
        Transport::Sse => match ask(http, url, Ask::EventStream).await {
            Asked::Verdict(verdict) => (verdict, transport),
            _ => (refused(), transport),
        },
    };
    ProbeResult {
        auth_type: verdict.auth_type,
        reason: verdict.reason,
        challenge: verdict.challenge,
        transport,
    }
}

/// What one answer says about authentication.
struct Verdict {
    auth_type: AuthType,
    reason: String,
    challenge: Option<Challenge>,
}

impl Verdict {
    /// Whether the server answered as an MCP endpoint would: in its way, or asking for
    /// credentials.
    fn answered(&self) -> bool {
        self.auth_type != AuthType::Undetected
    }
}

/// What one request of the probe found.
enum Asked {
    Verdict(Verdict),
    /// `server/discover` refused by a server of the earlier era.
    Legacy,
    /// `initialize` refused with 400, 404 or 405, as a server without Streamable HTTP
    /// refuses a POST; the verdict that refusal gives alone.
    Older(Verdict),
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
        Ask::EventStream | Ask::EndpointEvent => http
            .request(Method::GET, url.clone())
            .header(ACCEPT, "text/event-stream"),
    }
    .timeout(PROBE_TIMEOUT);
    let response = match http.send(request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%error, "probe failed; the auth type stays undetected");
            return Asked::Verdict(Verdict {
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
        if matches!(how, Ask::EndpointEvent) && !starts_with_endpoint(response).await {
            return Asked::Verdict(Verdict {
                auth_type: AuthType::Undetected,
                reason: "no_endpoint_event".into(),
                challenge: None,
            });
        }
        return Asked::Verdict(Verdict {
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
            Some(c) if c.signals_oauth() => Verdict {
                auth_type: AuthType::Oauth,
                reason: "oauth_challenge".into(),
                challenge: Some(c),
            },
            Some(c) => Verdict {
                auth_type: AuthType::Headers,
                reason: "bearer_challenge".into(),
                challenge: Some(c),
            },
            None => Verdict {
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
    let verdict = Verdict {
        auth_type: if status.as_u16() == 403 {
            AuthType::Headers
        } else {
            AuthType::Undetected
        },
        reason: format!("unexpected_status_{}", status.as_u16()),
        challenge: None,
    };
    if matches!(how, Ask::Initialize) && matches!(status.as_u16(), 400 | 404 | 405) {
        return Asked::Older(verdict);
    }
    Asked::Verdict(verdict)
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

/// Most bytes of an event stream read to find its `endpoint` event.
const MAX_ENDPOINT_SEARCH_BYTES: usize = 4 * 1024;

/// Whether an event stream's first event is `endpoint`, read within the probe's timeout and
/// [`MAX_ENDPOINT_SEARCH_BYTES`]; the stream is dropped either way.
async fn starts_with_endpoint(mut response: reqwest::Response) -> bool {
    let mut seen = Vec::new();
    while seen.len() < MAX_ENDPOINT_SEARCH_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => seen.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
        let text = String::from_utf8_lossy(&seen);
        // The first event ends at its blank line; only its name matters.
        if let Some(end) = text.find("\n\n").or_else(|| text.find("\r\n\r\n")) {
            return text[..end]
                .lines()
                .any(|line| line.trim_end() == "event: endpoint");
        }
    }
    false
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
