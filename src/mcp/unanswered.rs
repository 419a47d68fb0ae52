//! Input a server of an earlier revision asked for in the middle of a tool call.
//!
//! A server that keeps sessions (2025-11-25 and earlier) asks for input with an
//! `elicitation/create` request of its own, sent while the call runs. Switchboard declares no
//! elicitation to such servers, and nobody could answer mid-call, so a request sent anyway is
//! answered `cancel` ([`super::session`]); this log remembers what was asked, by the call it
//! came with, so the call's result can say the server asked for input it could not get.
//!
//! Invariants:
//! - A request is attributed only to the call whose response stream carried it (rmcp tells
//!   which); one arriving elsewhere (the session's own event stream) is logged, not attributed,
//!   since several calls may share the session.
//! - Bounded: at most [`MAX_PER_CALL`] requests per call, [`MAX_CALLS`] calls at once, and
//!   [`MAX_MESSAGE_CHARS`] of each message.

use std::collections::HashMap;
use std::sync::Mutex;

use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction, RequestId};

/// Most requests remembered for one call.
pub const MAX_PER_CALL: usize = 16;

/// Most calls with remembered requests at once; a call's entry goes when its result arrives.
const MAX_CALLS: usize = 256;

/// Longest message kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// One input request that got no answer but `cancel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnansweredInput {
    /// A form.
    Form {
        /// What the server said to the user.
        message: String,
    },
    /// A web page to open.
    Url {
        /// What the server said to the user.
        message: String,
        /// The page, when it is an http(s) URL.
        url: Option<String>,
    },
}

impl UnansweredInput {
    fn of(request: &ElicitRequestParams) -> UnansweredInput {
        let capped = |message: &str| message.chars().take(MAX_MESSAGE_CHARS).collect();
        match request {
            ElicitRequestParams::FormElicitationParams { message, .. } => UnansweredInput::Form {
                message: capped(message),
            },
            ElicitRequestParams::UrlElicitationParams { message, url, .. } => {
                UnansweredInput::Url {
                    message: capped(message),
                    url: url::Url::parse(url)
                        .ok()
                        .filter(|url| matches!(url.scheme(), "https" | "http"))
                        .map(String::from),
                }
            }
            // A mode of a later revision: still input the server did not get.
            _ => UnansweredInput::Form {
                message: String::new(),
            },
        }
    }
}

/// The unanswered requests of a session's calls in flight, by the call's request id.
#[derive(Debug, Default)]
pub(super) struct Unanswered {
    by_call: Mutex<HashMap<RequestId, Vec<UnansweredInput>>>,
}

impl Unanswered {
    /// Remember `request`, which came with the call `call`.
    pub(super) fn record(&self, call: RequestId, request: &ElicitRequestParams) {
        let mut by_call = self.by_call.lock().unwrap_or_else(|p| p.into_inner());
        if !by_call.contains_key(&call) && by_call.len() >= MAX_CALLS {
            return;
        }
        let asked = by_call.entry(call).or_default();
        if asked.len() < MAX_PER_CALL {
            asked.push(UnansweredInput::of(request));
        }
    }

    /// The answer to an input request that came with the call `call`: `cancel`, since
    /// nobody can answer a legacy server mid-call. The request is remembered for the call.
    pub(super) fn cancel(&self, call: RequestId, request: &ElicitRequestParams) -> ElicitResult {
        tracing::info!(
            "the MCP server asked for input during a call; answered cancel (nobody can answer a \
             legacy server's request mid-call)"
        );
        self.record(call, request);
        ElicitResult::new(ElicitationAction::Cancel)
    }

    /// What the call `call` was asked, forgotten from here on.
    pub(super) fn take(&self, call: &RequestId) -> Vec<UnansweredInput> {
        self.by_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(message: &str) -> ElicitRequestParams {
        serde_json::from_value(serde_json::json!({
            "mode": "form",
            "message": message,
            "requestedSchema": { "type": "object", "properties": {} },
        }))
        .unwrap()
    }

    #[test]
    fn requests_are_kept_by_call_within_bounds() {
        let log = Unanswered::default();
        let (one, two) = (RequestId::Number(1), RequestId::Number(2));
        log.record(one.clone(), &form("Proceed?"));
        for _ in 0..MAX_PER_CALL + 3 {
            log.record(two.clone(), &form(&"x".repeat(MAX_MESSAGE_CHARS + 10)));
        }
        assert_eq!(
            log.take(&one),
            vec![UnansweredInput::Form {
                message: "Proceed?".into()
            }]
        );
        assert!(log.take(&one).is_empty(), "taken once");
        let asked = log.take(&two);
        assert_eq!(asked.len(), MAX_PER_CALL);
        assert!(
            matches!(&asked[0], UnansweredInput::Form { message } if message.chars().count() == MAX_MESSAGE_CHARS)
        );

        for n in 0..MAX_CALLS as i64 + 5 {
            log.record(RequestId::Number(100 + n), &form("?"));
        }
        assert_eq!(log.by_call.lock().unwrap().len(), MAX_CALLS);
    }

    #[test]
    fn only_web_urls_are_kept() {
        let url = |url: &str| -> ElicitRequestParams {
            serde_json::from_value(serde_json::json!({
                "mode": "url", "message": "Sign in", "url": url, "elicitationId": "e1",
            }))
            .unwrap()
        };
        assert_eq!(
            UnansweredInput::of(&url("https://example.test/consent")),
            UnansweredInput::Url {
                message: "Sign in".into(),
                url: Some("https://example.test/consent".into())
            }
        );
        assert_eq!(
            UnansweredInput::of(&url("javascript:alert(1)")),
            UnansweredInput::Url {
                message: "Sign in".into(),
                url: None
            }
        );
    }
}
