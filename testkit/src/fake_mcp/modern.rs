//! The 2026-07-28 protocol: per-request `_meta`, the headers mirroring the body, and the
//! requests a stateless server answers.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Caller, Era, INSIST, MODERN_PROTOCOL_VERSION, Mode, Shared, listen, mrtr};

pub(super) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub(super) const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub(super) const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub(super) const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The versions that negotiate with `initialize` and carry no `_meta`.
const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

const INVALID_PARAMS: i64 = -32602;
const HEADER_MISMATCH: i64 = -32020;
pub(super) const MISSING_CLIENT_CAPABILITY: i64 = -32021;
const UNSUPPORTED_VERSION: i64 = -32022;

/// A JSON-RPC error, answered with an HTTP status and the request's id.
pub(super) struct RpcError {
    status: StatusCode,
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    /// An error in a 200 response: the request was valid, its outcome is an error.
    pub(super) fn in_band(code: i64, message: impl Into<String>) -> RpcError {
        RpcError::new(StatusCode::OK, code, message)
    }

    pub(super) fn new(status: StatusCode, code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            status,
            code,
            message: message.into(),
            data: None,
        }
    }

    pub(super) fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    fn header_mismatch(message: impl Into<String>) -> RpcError {
        RpcError::new(
            StatusCode::BAD_REQUEST,
            HEADER_MISMATCH,
            format!("Header mismatch: {}", message.into()),
        )
    }

    fn unsupported_version(requested: Option<&Value>) -> RpcError {
        RpcError::new(
            StatusCode::BAD_REQUEST,
            UNSUPPORTED_VERSION,
            "Unsupported protocol version",
        )
        .with_data(json!({
            "supported": [MODERN_PROTOCOL_VERSION],
            "requested": requested.cloned().unwrap_or(Value::Null),
        }))
    }

    fn response(self, id: &Value) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = self.data {
            error["data"] = data;
        }
        let body = json!({ "jsonrpc": "2.0", "id": id, "error": error });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Whether a server of [`Era::Both`] answers `message` as a 2026 request: anything but
/// `initialize` that carries the 2026 `_meta` or a non-legacy `MCP-Protocol-Version`, and the
/// methods only 2026 has.
fn is_modern_request(headers: &HeaderMap, message: &Value) -> bool {
    let method = message.get("method").and_then(Value::as_str);
    if method == Some("initialize") {
        return false;
    }
    if matches!(method, Some("server/discover" | "subscriptions/listen")) {
        return true;
    }
    let meta_version = message
        .get("params")
        .and_then(|params| params.get("_meta"))
        .and_then(|meta| meta.get(META_PROTOCOL_VERSION));
    meta_version.is_some()
        || headers
            .get("mcp-protocol-version")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|version| !LEGACY_VERSIONS.contains(&version))
}

/// `_meta["io.modelcontextprotocol/serverInfo"]` as every modern result carries it.
pub(super) fn server_info_meta() -> Value {
    json!({ META_SERVER_INFO: { "name": "fake-mcp", "version": "1.0.0" } })
}

/// A `tools/call` result as the modern era sends it: with `resultType` and `_meta`.
pub(super) fn complete(mut result: Value) -> Value {
    result["resultType"] = json!("complete");
    result["_meta"] = server_info_meta();
    result
}

impl Shared {
    /// Handle one message posted to the Streamable HTTP endpoint, in the era it belongs to.
    pub(super) fn post_streamable(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &[u8],
        caller: Option<&Caller>,
    ) -> Response {
        let modern = match self.lock().era {
            Era::Legacy => false,
            Era::Modern => true,
            Era::Both => serde_json::from_slice::<Value>(body)
                .is_ok_and(|message| is_modern_request(headers, &message)),
        };
        if modern {
            self.post_modern(headers, body, caller)
        } else if let Some(id) = insisting_call(body)
            && self.tools(caller).iter().any(|tool| tool["name"] == INSIST)
            && (!self.config.sessions || self.check_session(headers).is_ok())
        {
            self.insist(id)
        } else if let Some(method) = requested_method(body)
            && (!self.config.sessions || self.check_session(headers).is_ok())
            && self.take_broken_stream(&method)
        {
            broken_stream()
        } else {
            self.post(headers, body, caller)
        }
    }

    fn post_modern(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &[u8],
        caller: Option<&Caller>,
    ) -> Response {
        let Ok(message) = serde_json::from_slice::<Value>(body) else {
            return RpcError::new(StatusCode::BAD_REQUEST, -32700, "Parse error")
                .response(&Value::Null);
        };
        // Clients send requests (and, in principle, notifications), never responses or batches.
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return RpcError::new(StatusCode::BAD_REQUEST, -32600, "Invalid Request")
                .response(&Value::Null);
        };
        if let Some(caller) = caller
            && let Err(refusal) = self.check_scopes(&caller.scopes, method)
        {
            return refusal.into_response();
        }
        let Some(id) = message.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        if method == "initialize" {
            return RpcError::unsupported_version(params.get("protocolVersion")).response(&id);
        }
        let capabilities = match self.check_request(headers, method, &params, caller) {
            Ok(capabilities) => capabilities,
            Err(error) => return error.response(&id),
        };
        if self.take_broken_stream(method) {
            return broken_stream();
        }
        let outcome = match method {
            "server/discover" => Ok(self.discover()),
            "tools/list" => self.list_tools_modern(&params, caller),
            "tools/call" => self.call_tool_modern(&params, caller, &capabilities),
            "subscriptions/listen" => return listen::open(self, id, &params, caller),
            _ => Err(RpcError::new(
                StatusCode::NOT_FOUND,
                -32601,
                "Method not found",
            )),
        };
        match outcome {
            Ok(result) => {
                axum::Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response()
            }
            Err(error) => error.response(&id),
        }
    }

    /// Check the request's `_meta` and the headers mirroring its body; the client's declared
    /// capabilities when they pass.
    fn check_request(
        &self,
        headers: &HeaderMap,
        method: &str,
        params: &Value,
        caller: Option<&Caller>,
    ) -> Result<Value, RpcError> {
        let meta = params.get("_meta");
        let Some(version) = meta.and_then(|meta| meta.get(META_PROTOCOL_VERSION)) else {
            return Err(missing_meta(META_PROTOCOL_VERSION));
        };
        match single_header(headers, "mcp-protocol-version")? {
            None => {
                return Err(RpcError::header_mismatch(
                    "MCP-Protocol-Version header is missing",
                ));
            }
            Some(sent) if version.as_str() != Some(sent) => {
                return Err(RpcError::header_mismatch(format!(
                    "MCP-Protocol-Version header value '{sent}' does not match body value {version}"
                )));
            }
            Some(_) => {}
        }
        if version.as_str() != Some(MODERN_PROTOCOL_VERSION) {
            return Err(RpcError::unsupported_version(Some(version)));
        }
        let Some(capabilities) = meta
            .and_then(|meta| meta.get(META_CLIENT_CAPABILITIES))
            .filter(|capabilities| capabilities.is_object())
        else {
            return Err(missing_meta(META_CLIENT_CAPABILITIES));
        };

        match single_header(headers, "mcp-method")? {
            None => return Err(RpcError::header_mismatch("Mcp-Method header is missing")),
            Some(sent) if sent != method => {
                return Err(RpcError::header_mismatch(format!(
                    "Mcp-Method header value '{sent}' does not match body value '{method}'"
                )));
            }
            Some(_) => {}
        }
        let name_field = match method {
            "tools/call" | "prompts/get" => Some("name"),
            "resources/read" => Some("uri"),
            _ => None,
        };
        if let Some(expected) = name_field.and_then(|field| params.get(field)?.as_str()) {
            let Some(sent) = single_header(headers, "mcp-name")? else {
                return Err(RpcError::header_mismatch("Mcp-Name header is missing"));
            };
            let decoded = decode_header_value(sent)
                .ok_or_else(|| RpcError::header_mismatch("Mcp-Name header is not valid base64"))?;
            if decoded != expected {
                return Err(RpcError::header_mismatch(format!(
                    "Mcp-Name header value '{decoded}' does not match body value '{expected}'"
                )));
            }
        }
        if method == "tools/call"
            && let Some(name) = params.get("name").and_then(Value::as_str)
            && let Some(tool) = self.tools(caller).iter().find(|tool| tool["name"] == name)
        {
            check_param_headers(headers, tool, params.get("arguments"))?;
        }
        Ok(capabilities.clone())
    }

    fn discover(&self) -> Value {
        json!({
            "resultType": "complete",
            "supportedVersions": [MODERN_PROTOCOL_VERSION],
            "capabilities": { "tools": { "listChanged": true } },
            "ttlMs": self.config.list_ttl_ms,
            "cacheScope": "private",
            "_meta": server_info_meta(),
        })
    }

    fn list_tools_modern(
        &self,
        params: &Value,
        caller: Option<&Caller>,
    ) -> Result<Value, RpcError> {
        let mut result = if self.lock().mode == Mode::RepeatingCursor {
            json!({ "tools": [], "nextCursor": "again" })
        } else {
            self.list_tools(params, caller)
                .map_err(|(code, message)| RpcError::in_band(code, message))?
        };
        result["resultType"] = json!("complete");
        result["ttlMs"] = json!(self.config.list_ttl_ms);
        result["cacheScope"] = json!("private");
        result["_meta"] = server_info_meta();
        Ok(result)
    }

    fn call_tool_modern(
        &self,
        params: &Value,
        caller: Option<&Caller>,
        capabilities: &Value,
    ) -> Result<Value, RpcError> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self.tools(caller).iter().any(|tool| tool["name"] == name) {
            return Err(RpcError::in_band(
                INVALID_PARAMS,
                format!("Unknown tool: {name}"),
            ));
        }
        if let Some(responses) = params.get("inputResponses") {
            self.lock()
                .input_responses
                .push((name.to_owned(), responses.clone()));
        }
        if let Some(outcome) = mrtr::call(self, name, params, caller, capabilities) {
            return outcome;
        }
        self.call_tool(params, caller)
            .map(complete)
            .map_err(|(code, message)| RpcError::in_band(code, message))
    }
}

fn missing_meta(key: &str) -> RpcError {
    RpcError::new(
        StatusCode::BAD_REQUEST,
        INVALID_PARAMS,
        format!("Invalid params: _meta[\"{key}\"] is required"),
    )
}

/// The one value of a header, if sent; a repeated header or one with characters a header
/// value may not hold is a mismatch.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, RpcError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RpcError::header_mismatch(format!(
            "{name} header is repeated"
        )));
    }
    let value = value
        .to_str()
        .map_err(|_| RpcError::header_mismatch(format!("{name} header has invalid characters")))?;
    Ok(Some(value))
}

/// A header value, decoded from `=?base64?…?=` when it has that form; `None` when the form
/// holds no valid base64 of UTF-8.
fn decode_header_value(value: &str) -> Option<String> {
    let Some(encoded) = value
        .strip_prefix(BASE64_PREFIX)
        .and_then(|rest| rest.strip_suffix(BASE64_SUFFIX))
    else {
        return Some(value.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// An RFC 9110 token, as an `x-mcp-header` name must be.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// Every `Mcp-Param-*` header a top-level `x-mcp-header` annotation of `tool` calls for is
/// sent exactly when its argument is present and not null, and matches it. Annotations that
/// are not valid header names are skipped: a conforming client never calls such a tool.
fn check_param_headers(
    headers: &HeaderMap,
    tool: &Value,
    arguments: Option<&Value>,
) -> Result<(), RpcError> {
    let Some(properties) = tool
        .get("inputSchema")
        .and_then(|schema| schema.get("properties"))
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    for (property, schema) in properties {
        let Some(name) = schema
            .get("x-mcp-header")
            .and_then(Value::as_str)
            .filter(|name| is_token(name))
        else {
            continue;
        };
        let header = format!("mcp-param-{}", name.to_ascii_lowercase());
        let sent = single_header(headers, &header)?;
        let value = arguments
            .and_then(|arguments| arguments.get(property))
            .filter(|value| value.is_string() || value.is_number() || value.is_boolean());
        match (sent, value) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(RpcError::header_mismatch(format!(
                    "Mcp-Param-{name} header sent without a value for '{property}'"
                )));
            }
            (None, Some(_)) => {
                return Err(RpcError::header_mismatch(format!(
                    "Mcp-Param-{name} header is missing for '{property}'"
                )));
            }
            (Some(sent), Some(value)) => {
                let decoded = decode_header_value(sent).ok_or_else(|| {
                    RpcError::header_mismatch(format!(
                        "Mcp-Param-{name} header is not valid base64"
                    ))
                })?;
                if !header_matches(&decoded, value) {
                    return Err(RpcError::header_mismatch(format!(
                        "Mcp-Param-{name} header value '{decoded}' does not match body value {value}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Strings compare as they are, booleans as `true`/`false`, numbers numerically.
fn header_matches(decoded: &str, value: &Value) -> bool {
    match value {
        Value::String(text) => decoded == text,
        Value::Bool(flag) => decoded == if *flag { "true" } else { "false" },
        Value::Number(number) => match (number.as_i64(), decoded.parse::<i64>()) {
            (Some(body), Ok(header)) => body == header,
            _ => number
                .as_f64()
                .zip(decoded.parse::<f64>().ok())
                .is_some_and(|(body, header)| body == header),
        },
        _ => false,
    }
}

/// The id of a `tools/call` of [`INSIST`], if `body` is one.
fn insisting_call(body: &[u8]) -> Option<Value> {
    let message = serde_json::from_slice::<Value>(body).ok()?;
    (message.get("method")? == "tools/call" && message.pointer("/params/name")? == INSIST)
        .then(|| message.get("id").cloned())
        .flatten()
}

/// The method of a request, if `body` is one.
fn requested_method(body: &[u8]) -> Option<String> {
    let message = serde_json::from_slice::<Value>(body).ok()?;
    message.get("id")?;
    Some(message.get("method")?.as_str()?.to_owned())
}

/// An event stream that starts answering a call and ends before its result, as a connection
/// lost midway does.
fn broken_stream() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        ": working\n\n",
    )
        .into_response()
}
