//! Tokens: requests to the token endpoint, sealed storage, and refresh.
//!
//! Refresh invariants:
//! - Exactly one refresh per grant at a time: an in-process single-flight lock per server,
//!   plus, on PostgreSQL, a transaction-scoped advisory lock so replicas sharing the database
//!   take turns. The grant is re-read inside the locks; if someone else already refreshed it,
//!   their token is used.
//! - Saves are compare-and-swap on `token_generation`.
//! - A response without a refresh token keeps the old one.
//! - `invalid_grant` clears the tokens and asks for authorization again, without minting a
//!   new flow. `invalid_client` also drops the registration. Network errors and 5xx keep the
//!   tokens and mark the grant `REFRESH_FAILED`.
//! - Tokens that no longer open (lost key) count as absent: authorization is asked again,
//!   never a 500.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::registration::{AuthMethod, Client, client_of_grant};
use super::{AuthorizationServer, OauthError};
use crate::app::App;
use crate::crypto::{SealContext, Secret};
use crate::db::models::{McpServerRow, OauthGrantRow};
use crate::db::{self, DbConn, DbTime};
use crate::domain::status::{self, StatusEvent};
use crate::net;

const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);
const GRANT_TABLE: &str = "mcp_server_oauth";
const TOKENS_COLUMN: &str = "tokens_sealed";
/// Refresh this long before expiry…
const REFRESH_SKEW: TimeDelta = TimeDelta::seconds(60);
/// …plus up to this much random extra, so grants that expire together do not refresh together.
const REFRESH_JITTER_MS: i64 = 30_000;

/// The tokens as stored (sealed).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredTokens {
    /// Access token.
    pub access_token: String,
    /// Refresh token, if one was issued.
    pub refresh_token: Option<String>,
}

/// A successful token response.
pub struct TokenResponse {
    /// Access token.
    pub access_token: Secret,
    /// Refresh token, if returned.
    pub refresh_token: Option<Secret>,
    /// Lifetime in seconds, if given.
    pub expires_in: Option<i64>,
    /// Granted scopes, if given.
    pub scope: Option<String>,
}

/// POST a form to an authorization server endpoint, authenticated as `client` (Basic
/// header, secret in the body, or the client id alone for public clients).
pub(crate) async fn post_form(
    app: &App,
    endpoint: &str,
    client: &Client,
    mut form: Vec<(&'static str, String)>,
    timeout: Duration,
) -> Result<reqwest::Response, OauthError> {
    let endpoint = url::Url::parse(endpoint).map_err(|_| OauthError::BadEndpoint("token"))?;
    let mut request = app
        .http
        .request(reqwest::Method::POST, endpoint)
        .timeout(timeout)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    match (client.auth_method, &client.client_secret) {
        (AuthMethod::Basic, Some(secret)) => {
            request = request.header(
                AUTHORIZATION,
                basic_auth(&client.client_id, secret.expose()),
            );
        }
        (AuthMethod::Post, Some(secret)) => {
            form.push(("client_id", client.client_id.clone()));
            form.push(("client_secret", secret.expose().to_owned()));
        }
        _ => form.push(("client_id", client.client_id.clone())),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    Ok(app.http.send(request.body(body)).await?)
}

/// Send a token request (code exchange or refresh) with the client's authentication.
pub async fn token_request(
    app: &App,
    server: &AuthorizationServer,
    client: &Client,
    form: Vec<(&'static str, String)>,
) -> Result<TokenResponse, OauthError> {
    let response = post_form(app, &server.token_endpoint, client, form, TOKEN_TIMEOUT).await?;
    let status = response.status();
    let bytes = net::read_body_capped(response, net::OAUTH_JSON_LIMIT).await?;
    let fields = parse_fields(&bytes);
    if !status.is_success() {
        let error = fields
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        return Err(match (status.as_u16(), error) {
            (_, "invalid_grant") => OauthError::InvalidGrant,
            (_, "invalid_client" | "unauthorized_client") | (401, "") => OauthError::InvalidClient,
            (code, "") => OauthError::TokenEndpoint(code.to_string()),
            (code, error) => OauthError::TokenEndpoint(format!("{code} {}", safe_code(error))),
        });
    }
    let text = |key: &str| fields.get(key).and_then(|v| v.as_str().map(str::to_owned));
    let access_token = text("access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OauthError::TokenEndpoint("a response without an access token".into()))?;
    // Some servers send `expires_in` as a string; zero or negative means "unknown".
    let expires_in = fields
        .get("expires_in")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .filter(|s| *s > 0);
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        refresh_token: text("refresh_token")
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        expires_in,
        scope: text("scope"),
    })
}

/// Basic credentials per RFC 6749 §2.3.1: id and secret form-encoded first.
fn basic_auth(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// An OAuth error code is echoed only if it looks like one (no free text from the server).
fn safe_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// Token responses are JSON; some servers answer form-encoded unless told otherwise.
fn parse_fields(bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(bytes) {
        return map;
    }
    url::form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect()
}

/// Seal a token set for a grant.
pub fn seal_tokens(app: &App, server_id: Uuid, tokens: &StoredTokens) -> String {
    let json = serde_json::to_string(tokens).unwrap_or_default();
    app.keys.seal_str(
        &json,
        SealContext::new(GRANT_TABLE, TOKENS_COLUMN, &server_id.to_string()),
    )
}

/// Open a grant's tokens; `None` when absent or unreadable.
pub fn open_tokens(app: &App, grant: &OauthGrantRow) -> Option<StoredTokens> {
    let sealed = grant.tokens_sealed.as_deref()?;
    let row_id = grant.server_id.0.to_string();
    let json = app
        .keys
        .open_str(
            sealed,
            SealContext::new(GRANT_TABLE, TOKENS_COLUMN, &row_id),
        )
        .ok()?;
    serde_json::from_str(json.expose()).ok()
}

/// Store a token response on a grant: absolute expiry, granted scopes, the old refresh token
/// kept when none came back, and the generation bumped.
pub fn apply_token_response(
    app: &App,
    grant: &mut OauthGrantRow,
    response: TokenResponse,
    requested_scopes: Option<&str>,
) {
    let now = db::now();
    let previous_refresh = open_tokens(app, grant).and_then(|t| t.refresh_token);
    let tokens = StoredTokens {
        access_token: response.access_token.into_inner(),
        refresh_token: response
            .refresh_token
            .map(Secret::into_inner)
            .or(previous_refresh),
    };
    grant.tokens_sealed = Some(seal_tokens(app, grant.server_id.0, &tokens));
    grant.access_expires_at = response
        .expires_in
        .map(|s| DbTime(now + TimeDelta::seconds(s)));
    grant.granted_scopes = response
        .scope
        .or_else(|| requested_scopes.map(str::to_owned))
        .or(grant.granted_scopes.take());
    grant.token_generation += 1;
    grant.last_refreshed_at = Some(DbTime(now));
    grant.updated_at = DbTime(now);
}

/// Whether an access token expiring at `expires_at` should be refreshed now.
fn due(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let jitter = TimeDelta::milliseconds(rand::rng().random_range(0..=REFRESH_JITTER_MS));
    expires_at.is_some_and(|at| at - now <= REFRESH_SKEW + jitter)
}

/// The result of asking for a usable access token.
pub struct Access {
    /// The token.
    pub token: Secret,
    /// The grant generation it belongs to (pass it to [`refresh`] after a 401).
    pub generation: i64,
}

/// A usable access token for a server, refreshed first when it is about to expire.
pub async fn access_token(app: &App, server: &McpServerRow) -> Result<Access, OauthError> {
    let grant = {
        let mut conn = app.db.conn().await.map_err(db_error)?;
        db::oauth::find_grant(&mut conn, server.id.0)
            .await
            .map_err(db_error)?
    };
    let Some(grant) = grant else {
        return Err(OauthError::NotAuthorized);
    };
    let Some(tokens) = open_tokens(app, &grant) else {
        if grant.tokens_sealed.is_some() {
            // Sealed tokens that no longer open: forget them and ask again.
            forget_tokens(
                app,
                server.id.0,
                grant.token_generation,
                "tokens_unreadable",
            )
            .await;
        }
        return Err(OauthError::NotAuthorized);
    };
    if tokens.refresh_token.is_some() && due(grant.access_expires_at.map(|t| t.0), db::now()) {
        return refresh(app, server, Some(grant.token_generation)).await;
    }
    Ok(Access {
        token: Secret::new(tokens.access_token),
        generation: grant.token_generation,
    })
}

/// Refresh a grant. `seen` is the generation the caller saw (its token was rejected or is
/// about to expire): if the grant moved past it meanwhile, the newer token is returned without
/// another refresh.
pub async fn refresh(
    app: &App,
    server: &McpServerRow,
    seen: Option<i64>,
) -> Result<Access, OauthError> {
    let server_id = server.id.0;
    let lock = app.oauth.refresh_lock(server_id);
    let _single_flight = lock.lock().await;
    let mut conn = app.db.conn().await.map_err(db_error)?;
    // Callers that queued behind a refresh usually find it done: a plain read tells, without
    // the transaction and lock a refresh of their own would take.
    if seen.is_some()
        && let Some(grant) = db::oauth::find_grant(&mut conn, server_id)
            .await
            .map_err(db_error)?
        && let Some(access) = newer_than(app, &grant, seen)
    {
        return Ok(access);
    }
    // PostgreSQL: hold a transaction with an advisory lock across the refresh, so replicas
    // take turns. SQLite serves one process: the single-flight lock above is enough, and a
    // write transaction held across an HTTP request would stall every other writer.
    let locked = conn.is_postgres();
    if locked {
        conn.begin().await.map_err(db_error)?;
    }
    let outcome = refresh_locked(app, &mut conn, server, seen).await;
    let event = match &outcome {
        Ok((_, event)) | Err((_, event)) => event.clone(),
    };
    if locked && let Err(error) = conn.commit().await {
        conn.rollback().await;
        return Err(db_error(error));
    }
    if let Some(event) = event {
        app.events.publish(event);
    }
    outcome
        .map(|(access, _)| access)
        .map_err(|(error, _)| error)
}

/// Someone refreshed since the caller saw generation `seen`: their token is the one to use. It
/// is the newest there is, even if it is itself close to expiry.
fn newer_than(app: &App, grant: &OauthGrantRow, seen: Option<i64>) -> Option<Access> {
    if seen.is_none_or(|g| g == grant.token_generation) {
        return None;
    }
    let tokens = open_tokens(app, grant)?;
    Some(Access {
        token: Secret::new(tokens.access_token),
        generation: grant.token_generation,
    })
}

type Outcome = (Access, Option<StatusEvent>);
type Failure = (OauthError, Option<StatusEvent>);

async fn refresh_locked(
    app: &App,
    conn: &mut DbConn,
    server: &McpServerRow,
    seen: Option<i64>,
) -> Result<Outcome, Failure> {
    let server_id = server.id.0;
    db::oauth::lock_grant(conn, server_id)
        .await
        .map_err(|e| (db_error(e), None))?;
    let grant = db::oauth::find_grant(conn, server_id)
        .await
        .map_err(|e| (db_error(e), None))?;
    let Some(mut grant) = grant else {
        return Err((OauthError::NotAuthorized, None));
    };
    let Some(tokens) = open_tokens(app, &grant) else {
        return Err((OauthError::NotAuthorized, None));
    };
    if let Some(access) = newer_than(app, &grant, seen) {
        return Ok((access, None));
    }
    let Some(refresh_token) = tokens.refresh_token.clone() else {
        return Err((OauthError::NotAuthorized, None));
    };
    let authorization_server: AuthorizationServer = grant
        .authorization_server
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or((OauthError::NotAuthorized, None))?;
    let client = client_of_grant(
        app,
        server,
        &grant,
        authorization_server.token_endpoint_auth_methods.as_deref(),
    )
    .map_err(|e| (e, None))?;
    let mut form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token),
    ];
    if let Some(resource) = &grant.resource {
        form.push(("resource", resource.clone()));
    }
    let expected = grant.token_generation;
    match token_request(app, &authorization_server, &client, form).await {
        Ok(response) => {
            let scopes = grant.granted_scopes.clone();
            apply_token_response(app, &mut grant, response, scopes.as_deref());
            if !db::oauth::save_grant_if_generation(conn, &grant, expected)
                .await
                .map_err(|e| (db_error(e), None))?
            {
                return Err((
                    OauthError::TokenEndpoint("a concurrent save won".into()),
                    None,
                ));
            }
            let event = status::record(conn, server_id, |row| {
                status::mark_authorized(row, "token_refreshed")
            })
            .await
            .map_err(|e| (db_error(e), None))?;
            app.metrics.token_refresh("ok");
            tracing::info!(mcp_server.id = %server_id, "OAuth token refreshed");
            let tokens = open_tokens(app, &grant).ok_or((OauthError::NotAuthorized, None))?;
            Ok((
                Access {
                    token: Secret::new(tokens.access_token),
                    generation: grant.token_generation,
                },
                event,
            ))
        }
        Err(error @ (OauthError::InvalidGrant | OauthError::InvalidClient)) => {
            let reason = if matches!(error, OauthError::InvalidGrant) {
                "refresh_rejected"
            } else {
                "client_rejected"
            };
            grant.tokens_sealed = None;
            grant.access_expires_at = None;
            if matches!(error, OauthError::InvalidClient)
                && grant.registration_kind.as_deref() != Some("pre_registered")
            {
                grant.client_information_sealed = None;
                app.oauth.forget_discovery(server_id);
            }
            grant.token_generation += 1;
            grant.updated_at = DbTime(db::now());
            db::oauth::save_grant_if_generation(conn, &grant, expected)
                .await
                .map_err(|e| (db_error(e), None))?;
            let event = status::record(conn, server_id, |row| {
                status::mark_needs_authorization(row, reason)
            })
            .await
            .map_err(|e| (db_error(e), None))?;
            app.metrics.token_refresh("rejected");
            tracing::warn!(mcp_server.id = %server_id, reason, "OAuth refresh rejected; authorization is required");
            Err((error, event))
        }
        Err(error) => {
            let event = status::record(conn, server_id, status::mark_refresh_failed)
                .await
                .map_err(|e| (db_error(e), None))?;
            app.metrics.token_refresh("failed");
            tracing::warn!(mcp_server.id = %server_id, %error, "OAuth refresh failed; tokens kept");
            Err((error, event))
        }
    }
}

/// Clear tokens that cannot be used any more (compare-and-swap on the generation) and ask for
/// authorization again.
async fn forget_tokens(app: &App, server_id: Uuid, generation: i64, reason: &str) {
    let result: Result<Option<StatusEvent>, db::DbError> = async {
        let mut conn = app.db.conn().await?;
        let Some(mut grant) = db::oauth::find_grant(&mut conn, server_id).await? else {
            return Ok(None);
        };
        grant.tokens_sealed = None;
        grant.access_expires_at = None;
        grant.token_generation += 1;
        grant.updated_at = DbTime(db::now());
        if !db::oauth::save_grant_if_generation(&mut conn, &grant, generation).await? {
            return Ok(None);
        }
        status::record(&mut conn, server_id, |row| {
            status::mark_needs_authorization(row, reason)
        })
        .await
    }
    .await;
    match result {
        Ok(Some(event)) => app.events.publish(event),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot clear unusable tokens")
        }
    }
}

/// Refresh every grant whose access token expires within `horizon`. Returns how many were
/// refreshed. Failures are logged; they never delete a token unless the server rejected it.
pub async fn refresh_expiring(app: &App, horizon: TimeDelta) -> usize {
    let due_grants = async {
        let mut conn = app.db.conn().await?;
        db::oauth::grants_expiring(&mut conn, DbTime(db::now() + horizon), 100).await
    }
    .await;
    let grants = match due_grants {
        Ok(grants) => grants,
        Err(error) => {
            tracing::error!(%error, "cannot list grants to refresh");
            return 0;
        }
    };
    let mut refreshed = 0;
    for grant in grants {
        if open_tokens(app, &grant)
            .and_then(|t| t.refresh_token)
            .is_none()
        {
            continue;
        }
        let server = async {
            let mut conn = app.db.conn().await?;
            db::servers::find(&mut conn, grant.server_id.0).await
        }
        .await;
        let Ok(Some(server)) = server else { continue };
        match refresh(app, &server, Some(grant.token_generation)).await {
            Ok(_) => refreshed += 1,
            Err(error) => {
                tracing::debug!(mcp_server.id = %grant.server_id.0, %error, "background refresh did not succeed")
            }
        }
    }
    refreshed
}

/// Run [`refresh_expiring`] every `interval` until the app is dropped.
pub fn spawn_refresh_sweep(
    app: crate::app::AppHandle,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            refresh_expiring(&app, TimeDelta::seconds(120)).await;
        }
    })
}

fn db_error(error: db::DbError) -> OauthError {
    OauthError::Storage(error)
}
