//! Input a server asks for in the middle of a tool call (multi round-trip requests of revision
//! 2026-07-28), passed to the API caller and back.
//!
//! A tool call answered `input_required` returns the server's requests and a *continuation*:
//! everything the retry needs (the server, the tool, its arguments, the server's request state
//! byte for byte, what was asked, the round and an expiry), sealed with the key ring and bound
//! to the caller. Nothing is kept on the server side, so any replica can continue the call;
//! nobody but the caller can open it, and nothing in it can be changed, so what the upstream
//! sent is never trusted back from the front end.
//!
//! Answers are checked before anything is sent: one per request, no other keys, `content`
//! only on a form accept, and a form's content against the requested schema (the flat
//! primitive types the specification allows for forms).
//!
//! Invariants:
//! - A continuation opens only for the user it was issued to (the user id is the sealing
//!   context), and only before it expires.
//! - A call is continued at most [`MAX_ROUNDS`] times.
//! - Only elicitation is ever answered: Switchboard declares nothing else, so a server asking
//!   for sampling or roots breaks the protocol and the call fails.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::crypto::{KeyRing, SealContext};
use crate::domain::Context;
use crate::domain::{Error, Result, bad_input};
use crate::mcp::{InputRequest, InputRequired, Resume};

/// How long a continuation can be used.
pub const CONTINUATION_TTL: Duration = Duration::from_secs(600);

/// Most times one call may come back for input.
pub const MAX_ROUNDS: u32 = 10;

/// Largest continuation, as sealed text.
pub const MAX_CONTINUATION_BYTES: usize = 512 * 1024;

const SEAL_TABLE: &str = "mcp_tool_calls";
const SEAL_COLUMN: &str = "continuation";

/// How the caller answers one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Gave the input (a form's content, or consent to open a URL).
    Accept,
    /// Refused to give it; the call may go on without.
    Decline,
    /// Dismissed the request without a choice.
    Cancel,
}

/// The caller's answer to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The request's key.
    pub key: String,
    pub action: Action,
    /// A form's content, on accept.
    pub content: Option<Value>,
}

/// What the server asks, as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Ask {
    /// Fill in a form.
    Form {
        key: String,
        message: String,
        /// The requested schema, as sent.
        schema: Value,
    },
    /// Open a URL (the server learns the outcome when the call is continued).
    Url {
        key: String,
        message: String,
        url: String,
    },
}

impl Ask {
    /// The key its answer goes under.
    pub fn key(&self) -> &str {
        match self {
            Ask::Form { key, .. } | Ask::Url { key, .. } => key,
        }
    }
}

/// A call waiting for input: what to ask and how to continue.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub asks: Vec<Ask>,
    /// Sealed; handed back with the answers.
    pub continuation: String,
    pub expires_at: DateTime<Utc>,
}

/// What a continuation holds.
#[derive(Serialize, Deserialize)]
struct Sealed {
    server: Uuid,
    tool: String,
    arguments: Map<String, Value>,
    /// Exactly as the server sent it.
    state: Option<String>,
    asks: Vec<SealedAsk>,
    /// How many times the call has come back for input.
    round: u32,
    expires: i64,
}

#[derive(Serialize, Deserialize)]
struct SealedAsk {
    key: String,
    /// The requested schema of a form; `None` for a URL.
    schema: Option<Value>,
}

/// A continuation opened: the call to retry.
#[derive(Debug)]
pub struct Continued {
    pub server_id: Uuid,
    pub tool: String,
    pub arguments: Map<String, Value>,
    pub resume: Resume,
    pub round: u32,
}

fn seal_context(user_id: &Uuid) -> String {
    user_id.to_string()
}

/// Turn a server's `input_required` answer into what the API returns, sealing the
/// continuation for `user_id`. `round` counts the call's earlier rounds.
pub fn pending(
    ctx: &Context,
    user_id: Uuid,
    server_id: Uuid,
    tool: &str,
    arguments: &Map<String, Value>,
    required: InputRequired,
    round: u32,
) -> Result<Pending> {
    let call = Call {
        user_id,
        server_id,
        tool,
        arguments,
    };
    pending_at(&ctx.keys, Utc::now(), call, required, round)
}

/// The call a continuation continues.
struct Call<'a> {
    user_id: Uuid,
    server_id: Uuid,
    tool: &'a str,
    arguments: &'a Map<String, Value>,
}

fn pending_at(
    keys: &KeyRing,
    now: DateTime<Utc>,
    call: Call<'_>,
    required: InputRequired,
    round: u32,
) -> Result<Pending> {
    let Call {
        user_id,
        server_id,
        tool,
        arguments,
    } = call;
    let round = round.saturating_add(1);
    if round > MAX_ROUNDS {
        return Err(Error::Upstream(format!(
            "the server asked for input more than {MAX_ROUNDS} times in one call"
        )));
    }
    let asks = required
        .requests
        .iter()
        .map(ask)
        .collect::<Result<Vec<_>>>()?;
    let expires_at =
        now + chrono::Duration::from_std(CONTINUATION_TTL).unwrap_or(chrono::Duration::zero());
    let sealed = Sealed {
        server: server_id,
        tool: tool.to_owned(),
        arguments: arguments.clone(),
        state: required.request_state,
        asks: asks
            .iter()
            .map(|ask| SealedAsk {
                key: ask.key().to_owned(),
                schema: match ask {
                    Ask::Form { schema, .. } => Some(schema.clone()),
                    Ask::Url { .. } => None,
                },
            })
            .collect(),
        round,
        expires: expires_at.timestamp(),
    };
    #[allow(
        clippy::expect_used,
        reason = "strings, numbers, ids and JSON values always serialize"
    )]
    let plain = serde_json::to_vec(&sealed).expect("a continuation serializes");
    let row = seal_context(&user_id);
    let continuation = keys.seal(&plain, SealContext::new(SEAL_TABLE, SEAL_COLUMN, &row));
    if continuation.len() > MAX_CONTINUATION_BYTES {
        return Err(Error::Upstream(format!(
            "the call's arguments and the server's request are too large to continue (over \
             {MAX_CONTINUATION_BYTES} bytes)"
        )));
    }
    Ok(Pending {
        asks,
        continuation,
        expires_at,
    })
}

/// What one input request asks, or why it cannot be asked.
fn ask(request: &InputRequest) -> Result<Ask> {
    if request.method != "elicitation/create" {
        return Err(Error::Upstream(format!(
            "the server asked for input Switchboard does not offer ({})",
            request.method.chars().take(40).collect::<String>()
        )));
    }
    let params = &request.params;
    let message = params
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match params.get("mode").and_then(Value::as_str) {
        None | Some("form") => {
            let schema = params
                .get("requestedSchema")
                .cloned()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    Error::Upstream("the server asked for a form without a schema".into())
                })?;
            Ok(Ask::Form {
                key: request.key.clone(),
                message,
                schema,
            })
        }
        Some("url") => {
            let url = params
                .get("url")
                .and_then(Value::as_str)
                .and_then(|url| url::Url::parse(url).ok())
                .filter(|url| matches!(url.scheme(), "https" | "http"))
                .ok_or_else(|| {
                    Error::Upstream(
                        "the server asked to open something that is not a web URL".into(),
                    )
                })?;
            Ok(Ask::Url {
                key: request.key.clone(),
                message,
                url: url.to_string(),
            })
        }
        Some(_) => Err(Error::Upstream(
            "the server asked for input in a mode Switchboard does not offer".into(),
        )),
    }
}

/// Open `continuation` for `user_id` and check `answers` against what was asked.
pub fn resume(
    ctx: &Context,
    user_id: Uuid,
    continuation: &str,
    answers: Vec<Answer>,
) -> Result<Continued> {
    resume_at(&ctx.keys, Utc::now(), user_id, continuation, answers)
}

fn resume_at(
    keys: &KeyRing,
    now: DateTime<Utc>,
    user_id: Uuid,
    continuation: &str,
    answers: Vec<Answer>,
) -> Result<Continued> {
    let refused = || {
        bad_input(
            "continuation",
            "is not a continuation of yours, or has expired",
        )
    };
    if continuation.len() > MAX_CONTINUATION_BYTES {
        return Err(refused());
    }
    let row = seal_context(&user_id);
    let plain = keys
        .open(
            continuation,
            SealContext::new(SEAL_TABLE, SEAL_COLUMN, &row),
        )
        .map_err(|_| refused())?;
    let sealed: Sealed = serde_json::from_slice(&plain).map_err(|_| refused())?;
    if now.timestamp() >= sealed.expires {
        return Err(refused());
    }
    let mut responses = Map::new();
    for answer in answers {
        let Some(asked) = sealed.asks.iter().find(|ask| ask.key == answer.key) else {
            return Err(bad_input(
                "responses",
                format!(
                    "{:?} is not a key of this call's input requests",
                    short(&answer.key)
                ),
            ));
        };
        if responses.contains_key(&answer.key) {
            return Err(bad_input(
                "responses",
                format!("{:?} is answered twice", short(&answer.key)),
            ));
        }
        let mut reply = Map::new();
        reply.insert(
            "action".into(),
            serde_json::to_value(answer.action).unwrap_or(Value::Null),
        );
        match (answer.action, &asked.schema, answer.content) {
            (Action::Accept, Some(schema), Some(content)) => {
                check_form(schema, &content).map_err(|message| {
                    bad_input(format!("responses.{}.content", short(&answer.key)), message)
                })?;
                reply.insert("content".into(), content);
            }
            (Action::Accept, Some(_), None) => {
                return Err(bad_input(
                    format!("responses.{}.content", short(&answer.key)),
                    "is required to accept a form",
                ));
            }
            (_, _, Some(_)) => {
                return Err(bad_input(
                    format!("responses.{}.content", short(&answer.key)),
                    "is only given when accepting a form",
                ));
            }
            _ => {}
        }
        responses.insert(answer.key, Value::Object(reply));
    }
    if let Some(missing) = sealed
        .asks
        .iter()
        .find(|ask| !responses.contains_key(&ask.key))
    {
        return Err(bad_input(
            "responses",
            format!("{:?} has no answer", short(&missing.key)),
        ));
    }
    Ok(Continued {
        server_id: sealed.server,
        tool: sealed.tool,
        arguments: sealed.arguments,
        resume: Resume {
            responses,
            request_state: sealed.state,
        },
        round: sealed.round,
    })
}

/// A server-chosen key, shortened for a message.
fn short(key: &str) -> String {
    key.chars().take(64).collect()
}

/// Check a form's content against its requested schema: an object of the primitive
/// properties the schema names (strings, numbers, integers, booleans, single and multiple
/// choice), with every required one present. The message names the property, never its value.
pub fn check_form(schema: &Value, content: &Value) -> std::result::Result<(), String> {
    let Some(content) = content.as_object() else {
        return Err("must be a JSON object".into());
    };
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, value) in content {
        let Some(property) = properties.get(name) else {
            return Err(format!("{:?} is not a field of this form", short(name)));
        };
        check_field(property, value).map_err(|message| format!("{}: {message}", short(name)))?;
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !content.contains_key(name) {
                return Err(format!("{} is required", short(name)));
            }
        }
    }
    Ok(())
}

fn check_field(property: &Value, value: &Value) -> std::result::Result<(), String> {
    let number = |key: &str| property.get(key).and_then(Value::as_f64);
    let count = |key: &str| property.get(key).and_then(Value::as_u64);
    match property.get("type").and_then(Value::as_str) {
        Some("string") => {
            let text = value.as_str().ok_or("must be a string")?;
            let length = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
            if count("minLength").is_some_and(|min| length < min) {
                return Err("is too short".into());
            }
            if count("maxLength").is_some_and(|max| length > max) {
                return Err("is too long".into());
            }
            if let Some(choices) = choices(property)
                && !choices.contains(&text)
            {
                return Err("is not one of the choices".into());
            }
            check_format(property.get("format").and_then(Value::as_str), text)
        }
        Some(kind @ ("number" | "integer")) => {
            let n = value.as_f64().ok_or("must be a number")?;
            if kind == "integer" && !(value.is_i64() || value.is_u64()) {
                return Err("must be an integer".into());
            }
            if number("minimum").is_some_and(|min| n < min) {
                return Err("is below the minimum".into());
            }
            if number("maximum").is_some_and(|max| n > max) {
                return Err("is above the maximum".into());
            }
            Ok(())
        }
        Some("boolean") => value
            .as_bool()
            .map(drop)
            .ok_or("must be true or false".into()),
        Some("array") => {
            let items = value.as_array().ok_or("must be a list")?;
            let length = u64::try_from(items.len()).unwrap_or(u64::MAX);
            if count("minItems").is_some_and(|min| length < min) {
                return Err("has too few choices".into());
            }
            if count("maxItems").is_some_and(|max| length > max) {
                return Err("has too many choices".into());
            }
            let allowed = property.get("items").and_then(choices);
            for item in items {
                let text = item.as_str().ok_or("must be a list of strings")?;
                if allowed
                    .as_ref()
                    .is_some_and(|allowed| !allowed.contains(&text))
                {
                    return Err("holds something that is not one of the choices".into());
                }
            }
            Ok(())
        }
        _ => Err("is of a type a form cannot hold".into()),
    }
}

/// The allowed values of a choice: `enum`, or `oneOf`/`anyOf` of `{const, title}`.
fn choices(schema: &Value) -> Option<Vec<&str>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().filter_map(Value::as_str).collect());
    }
    ["oneOf", "anyOf"].iter().find_map(|keyword| {
        schema
            .get(*keyword)
            .and_then(Value::as_array)
            .map(|options| {
                options
                    .iter()
                    .filter_map(|option| option.get("const").and_then(Value::as_str))
                    .collect()
            })
    })
}

fn check_format(format: Option<&str>, text: &str) -> std::result::Result<(), String> {
    let ok = match format {
        Some("email") => text
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.')),
        Some("uri") => url::Url::parse(text).is_ok(),
        Some("date") => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        Some("date-time") => DateTime::parse_from_rfc3339(text).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("is not a valid {}", format.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::{Map, Value, json};
    use uuid::Uuid;

    use super::*;
    use crate::crypto::KeyRing;
    use crate::mcp::{InputRequest, InputRequired};

    fn asked() -> InputRequired {
        InputRequired {
            requests: vec![InputRequest {
                key: "confirm".into(),
                method: "elicitation/create".into(),
                params: json!({
                    "message": "Sure?",
                    "requestedSchema": {
                        "type": "object",
                        "properties": { "ok": { "type": "boolean" } },
                        "required": ["ok"]
                    }
                }),
            }],
            request_state: Some(" state, with its spaces ".into()),
        }
    }

    fn seal(keys: &KeyRing, user: Uuid, now: chrono::DateTime<Utc>) -> Pending {
        let arguments: Map<String, Value> = [("a".to_owned(), json!(1))].into_iter().collect();
        let call = Call {
            user_id: user,
            server_id: Uuid::nil(),
            tool: "confirm",
            arguments: &arguments,
        };
        pending_at(keys, now, call, asked(), 0).expect("sealed")
    }

    fn yes() -> Vec<Answer> {
        vec![Answer {
            key: "confirm".into(),
            action: Action::Accept,
            content: Some(json!({ "ok": true })),
        }]
    }

    #[test]
    fn a_continuation_carries_the_call_and_the_state_exactly() {
        let keys = KeyRing::generate();
        let user = Uuid::new_v4();
        let now = Utc::now();
        let pending = seal(&keys, user, now);
        assert_eq!(pending.asks.len(), 1);
        assert!(
            !pending.continuation.contains("state"),
            "sealed, not readable"
        );
        let continued = resume_at(&keys, now, user, &pending.continuation, yes()).expect("opens");
        assert_eq!(continued.tool, "confirm");
        assert_eq!(continued.arguments["a"], 1);
        assert_eq!(continued.round, 1);
        assert_eq!(
            continued.resume.request_state.as_deref(),
            Some(" state, with its spaces ")
        );
        assert_eq!(
            continued.resume.responses["confirm"],
            json!({ "action": "accept", "content": { "ok": true } })
        );
    }

    #[test]
    fn a_continuation_is_refused_to_others_after_expiry_and_when_changed() {
        let keys = KeyRing::generate();
        let user = Uuid::new_v4();
        let now = Utc::now();
        let pending = seal(&keys, user, now);
        let refused = |result: Result<Continued>| matches!(result, Err(Error::BadInput { field, .. }) if field == "continuation");
        assert!(refused(resume_at(
            &keys,
            now,
            Uuid::new_v4(),
            &pending.continuation,
            yes()
        )));
        let late = now + chrono::Duration::from_std(CONTINUATION_TTL).unwrap();
        assert!(refused(resume_at(
            &keys,
            late,
            user,
            &pending.continuation,
            yes()
        )));
        let mut changed = pending.continuation.clone().into_bytes();
        let last = changed.len() - 2;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        assert!(refused(resume_at(&keys, now, user, &changed, yes())));
        assert!(refused(resume_at(
            &KeyRing::generate(),
            now,
            user,
            &pending.continuation,
            yes()
        )));
    }

    #[test]
    fn answers_must_match_what_was_asked() {
        let keys = KeyRing::generate();
        let user = Uuid::new_v4();
        let now = Utc::now();
        let pending = seal(&keys, user, now);
        let field_of = |answers: Vec<Answer>| match resume_at(
            &keys,
            now,
            user,
            &pending.continuation,
            answers,
        ) {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("expected bad input, got {other:?}"),
        };
        let answer = |action, content| Answer {
            key: "confirm".into(),
            action,
            content,
        };
        assert_eq!(field_of(vec![]), "responses");
        assert_eq!(
            field_of(vec![answer(Action::Accept, None)]),
            "responses.confirm.content"
        );
        assert_eq!(
            field_of(vec![answer(Action::Accept, Some(json!({ "ok": "yes" })))]),
            "responses.confirm.content"
        );
        assert_eq!(
            field_of(vec![answer(Action::Decline, Some(json!({ "ok": true })))]),
            "responses.confirm.content"
        );
        let mut twice = yes();
        twice.extend(yes());
        assert_eq!(field_of(twice), "responses");
        let mut other = yes();
        other.push(Answer {
            key: "other".into(),
            action: Action::Cancel,
            content: None,
        });
        assert_eq!(field_of(other), "responses");
        let declined = resume_at(
            &keys,
            now,
            user,
            &pending.continuation,
            vec![answer(Action::Decline, None)],
        )
        .expect("a decline needs no content");
        assert_eq!(
            declined.resume.responses["confirm"],
            json!({ "action": "decline" })
        );
    }

    #[test]
    fn rounds_are_capped_and_only_elicitation_is_offered() {
        let keys = KeyRing::generate();
        let arguments = Map::new();
        let call = || Call {
            user_id: Uuid::nil(),
            server_id: Uuid::nil(),
            tool: "t",
            arguments: &arguments,
        };
        assert!(matches!(
            pending_at(&keys, Utc::now(), call(), asked(), MAX_ROUNDS),
            Err(Error::Upstream(_))
        ));
        let mut sampling = asked();
        sampling.requests[0].method = "sampling/createMessage".into();
        assert!(matches!(
            pending_at(&keys, Utc::now(), call(), sampling, 0),
            Err(Error::Upstream(_))
        ));
        let mut url = asked();
        url.requests[0].params =
            json!({ "mode": "url", "message": "m", "url": "javascript:alert(1)" });
        assert!(matches!(
            pending_at(&keys, Utc::now(), call(), url, 0),
            Err(Error::Upstream(_))
        ));
    }

    fn schema() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "minLength": 2, "maxLength": 5 },
                "age": { "type": "integer", "minimum": 0, "maximum": 150 },
                "ok": { "type": "boolean" },
                "color": { "type": "string", "enum": ["red", "blue"] },
                "size": { "type": "string", "oneOf": [{ "const": "s", "title": "Small" }] },
                "tags": { "type": "array", "items": { "enum": ["a", "b"] }, "maxItems": 2 },
                "mail": { "type": "string", "format": "email" },
                "day": { "type": "string", "format": "date" }
            },
            "required": ["name"]
        })
    }

    #[test]
    fn accepts_what_the_form_allows() {
        let content = json!({
            "name": "Ada", "age": 36, "ok": true, "color": "red", "size": "s",
            "tags": ["a", "b"], "mail": "ada@example.com", "day": "1815-12-10"
        });
        assert_eq!(check_form(&schema(), &content), Ok(()));
    }

    #[test]
    fn refuses_what_it_does_not() {
        for (content, expected) in [
            (json!([]), "must be a JSON object"),
            (json!({}), "name is required"),
            (json!({ "name": "A" }), "name: is too short"),
            (json!({ "name": "Adaline" }), "name: is too long"),
            (json!({ "name": 3 }), "name: must be a string"),
            (
                json!({ "name": "Ada", "age": 1.5 }),
                "age: must be an integer",
            ),
            (
                json!({ "name": "Ada", "age": 151 }),
                "age: is above the maximum",
            ),
            (
                json!({ "name": "Ada", "ok": "yes" }),
                "ok: must be true or false",
            ),
            (
                json!({ "name": "Ada", "color": "green" }),
                "color: is not one of the choices",
            ),
            (
                json!({ "name": "Ada", "size": "m" }),
                "size: is not one of the choices",
            ),
            (
                json!({ "name": "Ada", "tags": ["a", "b", "a"] }),
                "tags: has too many choices",
            ),
            (
                json!({ "name": "Ada", "tags": ["c"] }),
                "tags: holds something that is not one of the choices",
            ),
            (
                json!({ "name": "Ada", "mail": "nobody" }),
                "mail: is not a valid email",
            ),
            (
                json!({ "name": "Ada", "day": "tomorrow" }),
                "day: is not a valid date",
            ),
            (
                json!({ "name": "Ada", "extra": 1 }),
                "\"extra\" is not a field of this form",
            ),
        ] {
            assert_eq!(
                check_form(&schema(), &content),
                Err(expected.to_owned()),
                "{content}"
            );
        }
    }
}
