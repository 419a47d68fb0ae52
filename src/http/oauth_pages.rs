//! The browser side of the OAuth flow: the begin link, the callback page, and Switchboard's
//! Client ID Metadata Document.
//!
//! The callback page always answers with a small HTML page. Everything it shows is
//! HTML-escaped, values reach its script only as JSON with `<`, `>` and `&` escaped, the
//! script runs under a per-response nonce, and the result is posted to `window.opener` only
//! for the configured app origins and this server's own origin — never `*`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::HttpState;
use crate::app::App;
use crate::crypto::random_token;
use crate::domain::oauth::flow::{self, Binding, CallbackParams, FlowFailure};
use crate::domain::oauth::registration::metadata_document_url;

/// `GET /oauth/begin/{flow}`: bind the flow to this browser and go to the authorization server.
pub async fn begin(State(state): State<HttpState>, Path(flow_id): Path<String>) -> Response {
    match flow::begin(&state.app, &flow_id).await {
        Ok(begin) => {
            let secure = if state.app.settings.public_url_is_https() {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{}={}; HttpOnly; SameSite=Lax; Path={}; Max-Age=600{secure}",
                begin.cookie_name,
                begin.cookie_value.expose(),
                state
                    .app
                    .settings
                    .public_endpoint(flow::CALLBACK_PATH)
                    .path(),
            );
            let mut response = StatusCode::FOUND.into_response();
            let headers = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(begin.redirect_to.as_str()) {
                headers.insert(header::LOCATION, location);
            }
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                headers.insert(header::SET_COOKIE, cookie);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        Err(failure) => page(&state.app, StatusCode::BAD_REQUEST, Err(failure)),
    }
}

/// Query parameters of the callback.
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// `GET /oauth/callback`: complete the flow and tell the opener.
pub async fn callback(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let cookies = parse_cookies(&headers);
    let lookup = |name: &str| cookies.get(name).cloned();
    let params = CallbackParams {
        code: query.code,
        state: query.state,
        iss: query.iss,
        error: query.error,
    };
    let outcome = flow::complete(&state.app, params, Binding::Browser(&lookup)).await;
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    page(&state.app, status, outcome.map(|row| row.id.0))
}

/// `GET /oauth/client-metadata.json`: the Client ID Metadata Document, when this server's
/// public URL is https (the document's URL is the client id).
pub async fn client_metadata(State(state): State<HttpState>) -> Response {
    let app = &state.app;
    let own = app.settings.public_endpoint("/oauth/client-metadata.json");
    match metadata_document_url(app) {
        Some(url) if url == own => axum::Json(json!({
            "client_id": url.as_str(),
            "client_name": "Switchboard",
            "client_uri": app.config.public_url.as_str(),
            "redirect_uris": [flow::redirect_uri(app)],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web",
        }))
        .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn parse_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The callback page.
fn page(app: &App, status: StatusCode, outcome: Result<uuid::Uuid, FlowFailure>) -> Response {
    let (ok, reason, text, server_id) = match &outcome {
        Ok(id) => (
            true,
            "authorized",
            "The server is connected. You can close this window.",
            Some(*id),
        ),
        Err(failure) => (
            false,
            failure.reason.code(),
            failure.reason.explain(),
            failure.server_id,
        ),
    };
    let message = json!({
        "type": "mcp-oauth",
        "ok": ok,
        "serverId": server_id.map(|id| id.to_string()),
        "reason": reason,
        "message": text,
    });
    let mut origins: Vec<String> = app.config.app_origins.clone();
    let own = app.config.public_url.origin().ascii_serialization();
    if !origins.contains(&own) {
        origins.push(own);
    }
    let nonce = random_token(16);
    let title = if ok {
        "Connected"
    } else {
        "Authorization failed"
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Switchboard — {title}</title>\
         <style nonce=\"{nonce}\">body{{font:16px/1.5 system-ui,sans-serif;margin:3rem auto;max-width:32rem;padding:0 1rem;color:#1b1f24}}\
         h1{{font-size:1.4rem}}code{{background:#eef1f4;padding:0 .3em;border-radius:3px}}</style></head>\
         <body><main><h1>{title}</h1><p>{text}</p><p>Reason: <code>{reason}</code></p></main>\
         <script nonce=\"{nonce}\">(function(){{var message={message};var origins={origins};\
         if(window.opener){{origins.forEach(function(origin){{try{{window.opener.postMessage(message,origin);}}catch(e){{}}}});\
         setTimeout(function(){{window.close();}},1200);}}}})();</script></body></html>\n",
        title = escape_html(title),
        text = escape_html(text),
        reason = escape_html(reason),
        message = script_json(&message),
        origins = script_json(&json!(origins)),
    );
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// Escape text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// JSON safe to embed in a `<script>`: `<`, `>`, `&` and the JavaScript line separators are
/// escaped, so no value can close the script or open a comment.
pub fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_script() {
        let value = json!({ "reason": "</script><script>alert(1)</script><!--" });
        let embedded = script_json(&value);
        assert!(!embedded.contains('<') && !embedded.contains('>'));
        let back: serde_json::Value = serde_json::from_str(&embedded).unwrap();
        assert_eq!(back, value);
        assert_eq!(
            escape_html("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}
