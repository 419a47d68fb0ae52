//! Multi round-trip tools: a call answered with elicitation requests, completed by a retry
//! carrying the answers and the sealed `requestState`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::modern::{MISSING_CLIENT_CAPABILITY, RpcError, complete, server_info_meta};
use super::{ANONYMOUS, Caller, Shared};

/// How long a `requestState` is honoured.
const STATE_LIFETIME: Duration = Duration::from_secs(600);

/// The `confirm` tool: asks the user to confirm with one form elicitation (key `confirm`:
/// a required boolean `confirmed` and an optional `note`), then answers with the action taken,
/// the form's content and `"rounds": 2`.
pub fn confirm_tool() -> Value {
    json!({
        "name": "confirm",
        "title": "Confirm",
        "description": "Asks the user to confirm the action, then reports the answer.",
        "inputSchema": { "type": "object" },
    })
}

/// The `confirm_stateless` tool: as [`confirm_tool`], but it sends no `requestState`, and
/// refuses a retry that carries one.
pub fn confirm_stateless_tool() -> Value {
    json!({
        "name": "confirm_stateless",
        "title": "Confirm (stateless)",
        "description": "Asks the user to confirm the action, keeping no request state.",
        "inputSchema": { "type": "object" },
    })
}

/// The `survey` tool: asks a name (key `name`), then a colour among red, green and blue (key
/// `color`), then answers with both and `"rounds": 3`; a declined or cancelled question ends
/// it early.
pub fn survey_tool() -> Value {
    json!({
        "name": "survey",
        "title": "Survey",
        "description": "Asks two questions, one after the other.",
        "inputSchema": { "type": "object" },
    })
}

/// The `open_url` tool: asks the user to visit `<origin>/consent?id=…` (a URL-mode elicitation,
/// key `consent`), then answers "consented" if the user accepted, else the action taken.
pub fn open_url_tool() -> Value {
    json!({
        "name": "open_url",
        "title": "Open URL",
        "description": "Sends the user to a consent page.",
        "inputSchema": { "type": "object" },
    })
}

/// The `regional` tool: echoes its arguments. `region` (string), `priority` (integer) and
/// `verbose` (boolean) are annotated with `x-mcp-header` (`Region`, `Priority`, `Verbose`), so
/// a modern call must mirror them in `Mcp-Param-*` headers; `query` is not.
pub fn region_tool() -> Value {
    json!({
        "name": "regional",
        "title": "Regional",
        "description": "Returns its arguments; some travel as headers as well.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "region": { "type": "string", "x-mcp-header": "Region" },
                "priority": { "type": "integer", "x-mcp-header": "Priority" },
                "verbose": { "type": "boolean", "x-mcp-header": "Verbose" },
                "query": { "type": "string" },
            },
        },
    })
}

/// The `bad_header` tool: echoes its arguments, but its `x-mcp-header` annotation (`Has
/// Space`) is not a valid header name, so a conforming client drops it from its listing. The
/// server lists it anyway.
pub fn invalid_header_tool() -> Value {
    json!({
        "name": "bad_header",
        "title": "Bad header",
        "description": "Returns its arguments.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "value": { "type": "string", "x-mcp-header": "Has Space" },
            },
        },
    })
}

/// Whether `tool` is one that asks for input, which the legacy eras cannot do.
pub(super) fn asks_for_input(tool: &str) -> bool {
    matches!(
        tool,
        "confirm" | "confirm_stateless" | "survey" | "open_url"
    )
}

/// Seals and opens `requestState`: base64url of a JSON payload, a dot, and base64url of its
/// HMAC-SHA256 under a key drawn when the server starts.
pub(super) struct StateKey(hmac::Key);

impl StateKey {
    pub(super) fn generate() -> StateKey {
        StateKey(hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).expect("an HMAC key"))
    }

    fn seal(&self, payload: &Value) -> String {
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The payload of a state this key sealed; `None` for anything else.
    fn open(&self, state: &str) -> Option<Value> {
        let (payload, tag) = state.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, payload.as_bytes(), &tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn nonce() -> String {
    let mut bytes = [0u8; 12];
    SystemRandom::new().fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn invalid_state() -> RpcError {
    RpcError::in_band(-32602, "invalid request state")
}

/// One call of a multi round-trip tool, with what it needs to ask or finish.
struct Round<'a> {
    shared: &'a Shared,
    tool: &'a str,
    subject: &'a str,
    capabilities: &'a Value,
    responses: Option<&'a Value>,
}

/// Where a sealed exchange stands: the question pending, how many requests were made, the
/// answers so far.
struct Progress {
    step: String,
    requests: u64,
    answers: Value,
}

impl Round<'_> {
    /// The progress sealed in `state`, if it is this tool's, for this caller, and still fresh.
    fn open(&self, state: &Value) -> Result<Progress, RpcError> {
        let payload = state
            .as_str()
            .and_then(|state| self.shared.state_key.open(state))
            .ok_or_else(invalid_state)?;
        let fresh = payload["exp"].as_u64().is_some_and(|exp| exp > now());
        if payload["tool"] != self.tool || payload["sub"] != self.subject || !fresh {
            return Err(invalid_state());
        }
        Ok(Progress {
            step: payload["step"].as_str().unwrap_or_default().to_owned(),
            requests: payload["requests"].as_u64().unwrap_or_default(),
            answers: payload["answers"].clone(),
        })
    }

    fn seal(&self, progress: &Progress) -> String {
        self.shared.state_key.seal(&json!({
            "tool": self.tool,
            "sub": self.subject,
            "exp": now() + STATE_LIFETIME.as_secs(),
            "nonce": nonce(),
            "step": progress.step,
            "requests": progress.requests,
            "answers": progress.answers,
        }))
    }

    /// The client's answer to the question under `key`, if it sent one: an `ElicitResult`.
    fn answer(&self, key: &str) -> Result<Option<Answer>, RpcError> {
        let Some(answer) = self.responses.and_then(|responses| responses.get(key)) else {
            return Ok(None);
        };
        let action = answer
            .get("action")
            .and_then(Value::as_str)
            .filter(|action| matches!(*action, "accept" | "decline" | "cancel"))
            .ok_or_else(|| {
                RpcError::in_band(-32602, format!("invalid input response for '{key}'"))
            })?;
        Ok(Some(Answer {
            action: action.to_owned(),
            content: answer.get("content").cloned().unwrap_or(Value::Null),
        }))
    }

    /// An `input_required` result asking `question` under `key`, with `progress` sealed as its
    /// state (none when `progress` is `None`). The client must have declared the elicitation
    /// mode the question needs.
    fn ask(
        &self,
        key: &str,
        question: Value,
        progress: Option<&Progress>,
    ) -> Result<Value, RpcError> {
        let elicitation = self
            .capabilities
            .get("elicitation")
            .and_then(Value::as_object);
        let url = question["mode"] == "url";
        let declared = elicitation.is_some_and(|modes| {
            if url {
                modes.contains_key("url")
            } else {
                modes.is_empty() || modes.contains_key("form")
            }
        });
        if !declared {
            let mode = if url { "url" } else { "form" };
            return Err(RpcError::new(
                StatusCode::BAD_REQUEST,
                MISSING_CLIENT_CAPABILITY,
                "Server requires the elicitation capability for this request",
            )
            .with_data(json!({ "requiredCapabilities": { "elicitation": { mode: {} } } })));
        }
        let mut result = json!({
            "resultType": "input_required",
            "inputRequests": {
                key: { "method": "elicitation/create", "params": question },
            },
            "_meta": server_info_meta(),
        });
        if let Some(progress) = progress {
            result["requestState"] = json!(self.seal(progress));
        }
        Ok(result)
    }
}

/// An `ElicitResult` received.
struct Answer {
    action: String,
    content: Value,
}

impl Answer {
    /// A field of an accepted form's content; null otherwise.
    fn field(&self, name: &str) -> Value {
        if self.action == "accept" {
            self.content.get(name).cloned().unwrap_or(Value::Null)
        } else {
            Value::Null
        }
    }
}

fn finish(structured: Value) -> Value {
    finish_with_text(structured.to_string(), structured)
}

fn finish_with_text(text: String, structured: Value) -> Value {
    complete(json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": structured,
        "isError": false,
    }))
}

fn confirm_question() -> Value {
    json!({
        "mode": "form",
        "message": "Confirm the action",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "confirmed": { "type": "boolean", "title": "Confirmed" },
                "note": { "type": "string", "maxLength": 100 },
            },
            "required": ["confirmed"],
        },
    })
}

fn name_question() -> Value {
    json!({
        "mode": "form",
        "message": "What is your name?",
        "requestedSchema": {
            "type": "object",
            "properties": { "name": { "type": "string", "title": "Name" } },
            "required": ["name"],
        },
    })
}

fn color_question() -> Value {
    json!({
        "mode": "form",
        "message": "Which colour do you like best?",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "color": {
                    "type": "string",
                    "title": "Colour",
                    "enum": ["red", "green", "blue"],
                },
            },
            "required": ["color"],
        },
    })
}

/// Run a modern call of a multi round-trip tool; `None` when `tool` is not one.
pub(super) fn call(
    shared: &Shared,
    tool: &str,
    params: &Value,
    caller: Option<&Caller>,
    capabilities: &Value,
) -> Option<Result<Value, RpcError>> {
    if !asks_for_input(tool) {
        return None;
    }
    let round = Round {
        shared,
        tool,
        subject: caller.map_or(ANONYMOUS, |caller| caller.subject.as_str()),
        capabilities,
        responses: params.get("inputResponses"),
    };
    let state = params.get("requestState");
    Some(match tool {
        "confirm_stateless" => confirm_stateless(&round, state),
        "survey" => survey(&round, state),
        "open_url" => open_url(&round, state),
        _ => confirm(&round, state),
    })
}

/// The progress of a first call: answers without a state are refused.
fn first(round: &Round<'_>, step: &str) -> Result<Progress, RpcError> {
    if round.responses.is_some() {
        return Err(invalid_state());
    }
    Ok(Progress {
        step: step.to_owned(),
        requests: 1,
        answers: json!({}),
    })
}

/// The progress sealed in a retry's state, one request further on.
fn retry(round: &Round<'_>, state: &Value) -> Result<Progress, RpcError> {
    let mut progress = round.open(state)?;
    progress.requests = progress.requests.saturating_add(1);
    Ok(progress)
}

fn confirm(round: &Round<'_>, state: Option<&Value>) -> Result<Value, RpcError> {
    let Some(state) = state else {
        return round.ask(
            "confirm",
            confirm_question(),
            Some(&first(round, "confirm")?),
        );
    };
    let progress = retry(round, state)?;
    match round.answer("confirm")? {
        Some(answer) => Ok(finish(json!({
            "action": answer.action,
            "content": answer.content,
            "rounds": progress.requests,
        }))),
        None => round.ask("confirm", confirm_question(), Some(&progress)),
    }
}

fn confirm_stateless(round: &Round<'_>, state: Option<&Value>) -> Result<Value, RpcError> {
    if state.is_some() {
        return Err(invalid_state());
    }
    match round.answer("confirm")? {
        Some(answer) => Ok(finish(json!({
            "action": answer.action,
            "content": answer.content,
            "rounds": 2,
        }))),
        None => round.ask("confirm", confirm_question(), None),
    }
}

fn survey(round: &Round<'_>, state: Option<&Value>) -> Result<Value, RpcError> {
    let Some(state) = state else {
        return round.ask("name", name_question(), Some(&first(round, "name")?));
    };
    let mut progress = retry(round, state)?;
    if progress.step == "name" {
        let Some(answer) = round.answer("name")? else {
            return round.ask("name", name_question(), Some(&progress));
        };
        if answer.action != "accept" {
            return Ok(finish(json!({
                "action": answer.action,
                "name": null,
                "color": null,
                "rounds": progress.requests,
            })));
        }
        progress.step = "color".to_owned();
        progress.answers = json!({ "name": answer.field("name") });
        return round.ask("color", color_question(), Some(&progress));
    }
    let Some(answer) = round.answer("color")? else {
        return round.ask("color", color_question(), Some(&progress));
    };
    Ok(finish(json!({
        "action": answer.action,
        "name": progress.answers["name"],
        "color": answer.field("color"),
        "rounds": progress.requests,
    })))
}

fn open_url(round: &Round<'_>, state: Option<&Value>) -> Result<Value, RpcError> {
    let question = || {
        json!({
            "mode": "url",
            "message": "Sign in to continue",
            "url": format!("{}/consent?id={}", round.shared.origin, nonce()),
        })
    };
    let Some(state) = state else {
        return round.ask("consent", question(), Some(&first(round, "consent")?));
    };
    let progress = retry(round, state)?;
    let Some(answer) = round.answer("consent")? else {
        return round.ask("consent", question(), Some(&progress));
    };
    let text = if answer.action == "accept" {
        "consented".to_owned()
    } else {
        answer.action.clone()
    };
    Ok(finish_with_text(
        text,
        json!({ "action": answer.action, "rounds": progress.requests }),
    ))
}
