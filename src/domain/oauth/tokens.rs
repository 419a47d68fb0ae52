//! Tokens: requests to the token endpoint, sealed storage, and refresh.
//!
//! Refresh invariants:
//! - Exactly one refresh per grant at a time: an in-process single-flight lock per grant,
//!   plus a lease on the grant row (owner and expiry, taken with a conditional update) so
//!   replicas sharing the database take turns. No database connection is held while the token
//!   endpoint answers: a slow authorization server cannot starve the pool. A caller that finds
//!   the lease taken waits for the grant's generation to move and uses the new token.
//! - Saves are compare-and-swap on `token_generation`, and release the lease.
//! - An old refresh token is only ever sent to the authorization server that issued it: the
//!   grant keeps that server's endpoints, and a new flow replaces them only when it succeeds.
//! - Numbers from the token endpoint are clamped (`expires_in` to [`MAX_EXPIRES_IN`]); nothing
//!   an authorization server sends can overflow a timestamp.
//! - A response without a refresh token keeps the old one.
//! - `invalid_grant` clears the tokens and asks for authorization again, without minting a
//!   new flow. `invalid_client` also drops the registration. Network errors and 5xx keep the
//!   tokens and mark the grant `REFRESH_FAILED`.
//! - Tokens that no longer open (lost key) count as absent: authorization is asked again,
//!   never a 500.
//! - A client-credentials server's grant is renewed the same way, under the same lease, with
//!   a `client_credentials` token request instead of a refresh token (there is none): when the
//!   token is due, when there is none yet, and after a 401.

use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::discovery::{self, DiscoverOptions, Discovery};
use super::probe;
use super::registration::{self, AuthMethod, Client, client_of_grant};
use super::{AuthorizationServer, Holder, OauthError, assertion};
use crate::crypto::{Secret, random_token};
use crate::db::DbUuid;
use crate::db::models::{McpServerRow, OauthGrantRow, RegistrationRow};
use crate::db::sealed;
use crate::db::types::{AuthType, CredentialMode};
use crate::db::{self, DbTime};
use crate::domain::Context;
use crate::domain::lifecycle::Event;
use crate::domain::oauth::RegistrationKind;
use crate::domain::retry;
use crate::domain::status::{self, StatusEvent};
use crate::net;
use crate::transaction;

const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Refresh this long before expiry…
const REFRESH_SKEW: TimeDelta = TimeDelta::seconds(60);
/// …plus up to this much random extra, so grants that expire together do not refresh together.
const REFRESH_JITTER_MS: i64 = 30_000;
/// Longest access-token lifetime taken at its word; a longer `expires_in` is cut to this.
pub const MAX_EXPIRES_IN: i64 = 366 * 24 * 3600;
/// How long a refresh lease lasts: well beyond a token request's timeout, so a lease lapses
/// only when its holder died.
const LEASE: TimeDelta = TimeDelta::seconds(60);
/// How often a caller waiting for another process's refresh looks at the grant again.
const LEASE_POLL: Duration = Duration::from_millis(100);
/// How long a caller waits for another process's refresh before giving up (transiently).
const LEASE_WAIT: Duration = Duration::from_secs(70);

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
    ctx: &Context,
    endpoint: &str,
    client: &Client,
    mut form: Vec<(&'static str, String)>,
    timeout: Duration,
) -> Result<reqwest::Response, OauthError> {
    let endpoint = url::Url::parse(endpoint).map_err(|_| OauthError::BadEndpoint("token"))?;
    let mut request = ctx
        .http
        .request(reqwest::Method::POST, endpoint)
        .timeout(timeout)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    match (client.auth_method, &client.client_secret) {
        (AuthMethod::PrivateKeyJwt, _) => {
            // RFC 7523 §2.2: the assertion identifies the client; no client_id is sent.
            let signed = client.assertion.as_ref().ok_or(OauthError::InvalidClient)?;
            form.push((
                "client_assertion_type",
                assertion::ASSERTION_TYPE.to_owned(),
            ));
            form.push(("client_assertion", signed.expose().to_owned()));
        }
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
    Ok(ctx.http.send(request.body(body)).await?)
}

/// Send a token request (code exchange or refresh) with the client's authentication.
pub async fn token_request(
    ctx: &Context,
    server: &AuthorizationServer,
    client: &Client,
    form: Vec<(&'static str, String)>,
) -> Result<TokenResponse, OauthError> {
    // Traces only: the grant type and the endpoint's host, never the form's other fields.
    let grant_type = form
        .iter()
        .find(|(name, _)| *name == "grant_type")
        .map(|(_, value)| value.clone());
    let host = url::Url::parse(&server.token_endpoint)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned));
    let span = tracing::info_span!(
        target: crate::telemetry::SPANS,
        "oauth.token_request",
        otel.name = "POST",
        otel.kind = "client",
        http.request.method = "POST",
        server.address = host.as_deref(),
        oauth.grant_type = grant_type.as_deref(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let sent = async {
        let response = post_form(ctx, &server.token_endpoint, client, form, TOKEN_TIMEOUT).await?;
        let status = response.status().as_u16();
        tracing::Span::current().record("http.response.status_code", i64::from(status));
        let bytes = net::read_body_capped(response, net::OAUTH_JSON_LIMIT).await?;
        read_token_response(status, &bytes)
    };
    let result = tracing::Instrument::instrument(sent, span.clone()).await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// Read a token endpoint's answer (status and body, already capped in size). Anything that is
/// not a success with a non-empty string `access_token` is an error; `expires_in` is taken as
/// an integer or a numeric string, ignored when not positive, and cut to [`MAX_EXPIRES_IN`].
pub fn read_token_response(status: u16, bytes: &[u8]) -> Result<TokenResponse, OauthError> {
    let fields = parse_fields(bytes);
    if !(200..300).contains(&status) {
        let error = fields
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        return Err(match (status, error) {
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
        .filter(|s| *s > 0)
        .map(|s| s.min(MAX_EXPIRES_IN));
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
pub fn seal_tokens(ctx: &Context, grant_id: Uuid, tokens: &StoredTokens) -> String {
    let json = serde_json::to_string(tokens).unwrap_or_default();
    ctx.keys
        .seal_str(&json, sealed::GRANT_TOKENS.context(&grant_id.to_string()))
}

/// Open a grant's tokens; `None` when absent or unreadable.
pub fn open_tokens(ctx: &Context, grant: &OauthGrantRow) -> Option<StoredTokens> {
    let sealed = grant.tokens_sealed.as_deref()?;
    let row_id = grant.id.0.to_string();
    let json = ctx
        .keys
        .open_str(sealed, sealed::GRANT_TOKENS.context(&row_id))
        .ok()?;
    serde_json::from_str(json.expose()).ok()
}

/// Store a token response on a grant: absolute expiry, granted scopes, the old refresh token
/// kept when none came back, and the generation bumped.
pub fn apply_token_response(
    ctx: &Context,
    grant: &mut OauthGrantRow,
    response: &TokenResponse,
    requested_scopes: Option<&str>,
) {
    let now = db::now();
    let previous_refresh = open_tokens(ctx, grant).and_then(|t| t.refresh_token);
    let tokens = StoredTokens {
        access_token: response.access_token.expose().to_owned(),
        refresh_token: response
            .refresh_token
            .as_ref()
            .map(|token| token.expose().to_owned())
            .or(previous_refresh),
    };
    grant.tokens_sealed = Some(seal_tokens(ctx, grant.id.0, &tokens));
    grant.access_expires_at = response.expires_in.and_then(|s| expiry(now, s)).map(DbTime);
    grant.granted_scopes = response
        .scope
        .clone()
        .or_else(|| requested_scopes.map(str::to_owned))
        .or(grant.granted_scopes.take());
    grant.token_generation = grant.token_generation.saturating_add(1);
    grant.last_refreshed_at = Some(DbTime(now));
    grant.updated_at = DbTime(now);
}

/// The absolute expiry of a token that lives `seconds` from `now`; `None` (unknown) when the
/// number is out of range, never a panic.
fn expiry(now: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
    let lifetime = TimeDelta::try_seconds(seconds.clamp(0, MAX_EXPIRES_IN))?;
    now.checked_add_signed(lifetime)
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

/// Where [`access_token`] finds `holder`'s grant.
pub enum GrantFrom {
    /// Read it now.
    Storage,
    /// Already read with its server, in the same trip to the database (`None`: there is none).
    /// Only for a server that [`uses_stored_grant`]. Boxed: a call holds it across awaits.
    Read(Option<Box<OauthGrantRow>>),
}

/// Whether an access token for `server` comes from a holder's stored grant, which a caller may
/// read with the server ([`GrantFrom::Read`]); a machine client's token does not.
pub fn uses_stored_grant(server: &McpServerRow) -> bool {
    server.auth_type == AuthType::Oauth
        && server.credential_mode != CredentialMode::ClientCredentials
}

/// A usable access token of `holder`'s grant for a server, refreshed first when it is about to
/// expire. When the refresh fails for a transient reason and the current token has not expired
/// yet, the current token is used.
pub async fn access_token(
    ctx: &Context,
    server: &McpServerRow,
    holder: Holder,
    from: GrantFrom,
) -> Result<Access, OauthError> {
    if server.credential_mode == CredentialMode::ClientCredentials {
        return machine_access_token(ctx, server).await;
    }
    let grant = match from {
        // Only ever this server's grant of this holder: anything else is read again.
        GrantFrom::Read(grant)
            if grant.as_ref().is_none_or(|grant| {
                grant.server_id == server.id && grant.user_id.map(|user| user.0) == holder.user_id()
            }) =>
        {
            grant.map(|grant| *grant)
        }
        _ => read_grant(ctx, server.id.0, holder).await?,
    };
    let Some(grant) = grant else {
        return Err(OauthError::NotAuthorized);
    };
    let Some(tokens) = open_tokens(ctx, &grant) else {
        if grant.tokens_sealed.is_some() {
            // Sealed tokens that no longer open: forget them and ask again.
            forget_tokens(ctx, &grant, Event::TokensUnreadable).await;
        }
        return Err(OauthError::NotAuthorized);
    };
    let now = db::now();
    let expires_at = grant.access_expires_at.map(|t| t.0);
    if tokens.refresh_token.is_some() && due(expires_at, now) {
        match refresh(ctx, server, holder, Some(grant.token_generation)).await {
            Err(error) if error.is_transient() && expires_at.is_some_and(|at| at > now) => {
                tracing::debug!(mcp_server.id = %server.id.0, %error, "refresh failed; the current token is still valid");
            }
            other => return other,
        }
    }
    Ok(Access {
        token: Secret::new(tokens.access_token),
        generation: grant.token_generation,
    })
}

/// The machine client's token: the stored one while it is not due, else a new one.
async fn machine_access_token(ctx: &Context, server: &McpServerRow) -> Result<Access, OauthError> {
    let grant = machine_grant(ctx, server).await?;
    if let Some(tokens) = open_tokens(ctx, &grant)
        && !due(grant.access_expires_at.map(|t| t.0), db::now())
    {
        return Ok(Access {
            token: Secret::new(tokens.access_token),
            generation: grant.token_generation,
        });
    }
    // Callers that find the same generation share one renewal.
    refresh(ctx, server, Holder::Workspace, Some(grant.token_generation)).await
}

/// The machine client's grant row, made empty when there is none yet (by this process or a
/// concurrent one), so its renewal can be leased like any refresh.
async fn machine_grant(ctx: &Context, server: &McpServerRow) -> Result<OauthGrantRow, OauthError> {
    if let Some(grant) = read_grant(ctx, server.id.0, Holder::Workspace).await? {
        return Ok(grant);
    }
    let mut empty = OauthGrantRow::empty(server.id, None, DbTime(db::now()));
    empty.registration_kind = Some(RegistrationKind::ClientCredentials);
    let mut conn = ctx.db.conn().await.map_err(db_error)?;
    match db::oauth::insert_grant(&mut conn, &empty).await {
        Ok(()) | Err(db::DbError::UniqueViolation) => {}
        Err(error) => return Err(db_error(error)),
    }
    drop(conn);
    read_grant(ctx, server.id.0, Holder::Workspace)
        .await?
        .ok_or(OauthError::NotAuthorized)
}

/// A client-credentials token request, as sent.
struct MachineRequest {
    /// The authorization server asked.
    authorization_server: AuthorizationServer,
    /// The `resource` sent.
    resource: String,
    /// The `scope` sent, if any.
    scope: Option<String>,
    /// How the client authenticated.
    auth_method: &'static str,
}

/// How a grant is renewed.
enum Renewal {
    /// With its refresh token.
    RefreshToken(String),
    /// With a new client-credentials token request.
    ClientCredentials,
}

async fn read_grant(
    ctx: &Context,
    server_id: Uuid,
    holder: Holder,
) -> Result<Option<OauthGrantRow>, OauthError> {
    let mut conn = ctx.db.conn().await.map_err(db_error)?;
    db::oauth::find_grant(&mut conn, server_id, holder.user_id())
        .await
        .map_err(db_error)
}

async fn read_grant_by_id(
    ctx: &Context,
    grant_id: Uuid,
) -> Result<Option<OauthGrantRow>, OauthError> {
    let mut conn = ctx.db.conn().await.map_err(db_error)?;
    db::oauth::find_grant_by_id(&mut conn, grant_id)
        .await
        .map_err(db_error)
}

/// Refresh `holder`'s grant for a server. `seen` is the generation the caller saw (its token
/// was rejected or is about to expire): if the grant moved past it meanwhile, the newer token
/// is returned without another refresh. `None` asks for a refresh whatever happened before.
pub async fn refresh(
    ctx: &Context,
    server: &McpServerRow,
    holder: Holder,
    seen: Option<i64>,
) -> Result<Access, OauthError> {
    let span = tracing::info_span!(
        target: crate::telemetry::SPANS,
        "token_refresh",
        mcp_server.id = %server.id.0,
        otel.status_code = tracing::field::Empty,
    );
    let result =
        tracing::Instrument::instrument(refresh_grant(ctx, server, holder, seen), span.clone())
            .await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

async fn refresh_grant(
    ctx: &Context,
    server: &McpServerRow,
    holder: Holder,
    seen: Option<i64>,
) -> Result<Access, OauthError> {
    let machine = server.credential_mode == CredentialMode::ClientCredentials;
    let grant = match read_grant(ctx, server.id.0, holder).await? {
        Some(grant) => grant,
        None if machine => machine_grant(ctx, server).await?,
        None => return Err(OauthError::NotAuthorized),
    };
    let grant_id = grant.id.0;
    let lock = ctx.oauth.refresh_lock(grant_id);
    let _single_flight = lock.lock().await;
    let waiting_since = Instant::now();
    let mut seen = seen;
    loop {
        let Some(grant) = read_grant_by_id(ctx, grant_id).await? else {
            return Err(OauthError::NotAuthorized);
        };
        if let Some(access) = newer_than(ctx, &grant, seen) {
            return Ok(access);
        }
        let renewal = if machine {
            Renewal::ClientCredentials
        } else {
            match open_tokens(ctx, &grant).and_then(|t| t.refresh_token) {
                Some(token) => Renewal::RefreshToken(token),
                None => return Err(OauthError::NotAuthorized),
            }
        };
        let owner = random_token(16);
        let now = db::now();
        let taken = {
            let mut conn = ctx.db.conn().await.map_err(db_error)?;
            db::oauth::take_refresh_lease(
                &mut conn,
                grant_id,
                grant.token_generation,
                &owner,
                DbTime(now),
                DbTime(now + LEASE),
            )
            .await
            .map_err(db_error)?
        };
        if taken {
            return refresh_leased(ctx, server, grant, renewal, &owner).await;
        }
        // Another process is refreshing this grant (or just did): its token will do.
        if waiting_since.elapsed() >= LEASE_WAIT {
            return Err(OauthError::RefreshBusy);
        }
        seen = Some(seen.unwrap_or(grant.token_generation));
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// Someone refreshed since the caller saw generation `seen`: their token is the one to use. It
/// is the newest there is, even if it is itself close to expiry.
fn newer_than(ctx: &Context, grant: &OauthGrantRow, seen: Option<i64>) -> Option<Access> {
    if seen.is_none_or(|g| g == grant.token_generation) {
        return None;
    }
    let tokens = open_tokens(ctx, grant)?;
    Some(Access {
        token: Secret::new(tokens.access_token),
        generation: grant.token_generation,
    })
}

/// Refresh with the lease held: the token request runs with no database connection taken;
/// the outcome is saved (compare-and-swap, lease released) and the status recorded in one
/// short transaction afterwards.
async fn refresh_leased(
    ctx: &Context,
    server: &McpServerRow,
    mut grant: OauthGrantRow,
    renewal: Renewal,
    owner: &str,
) -> Result<Access, OauthError> {
    let server_id = server.id.0;
    let grant_id = grant.id.0;
    let holder = Holder::of(&grant);
    let expected = grant.token_generation;
    let registration = match &grant.issuer {
        Some(issuer) => {
            let mut conn = ctx.db.conn().await.map_err(db_error)?;
            db::oauth::find_registration(&mut conn, server_id, issuer)
                .await
                .map_err(db_error)?
        }
        None => None,
    };
    // What a client-credentials renewal asked for, kept on the grant when the token comes.
    let mut machine: Option<MachineRequest> = None;
    let requested = async {
        let refresh_token = match renewal {
            Renewal::RefreshToken(token) => token,
            Renewal::ClientCredentials => {
                let discovery = machine_discovery(ctx, server).await?;
                let client = registration::machine_client(ctx, server, &discovery.server)?;
                // Scopes: what a step-up asked for, else what the resource advertises.
                let scope = grant.requested_scopes.clone().or_else(|| {
                    discovery
                        .prm_scopes
                        .as_ref()
                        .filter(|s| !s.is_empty())
                        .map(|s| s.join(" "))
                });
                let mut form = vec![
                    ("grant_type", "client_credentials".to_owned()),
                    ("resource", discovery.resource.clone()),
                ];
                if let Some(scope) = &scope {
                    form.push(("scope", scope.clone()));
                }
                machine = Some(MachineRequest {
                    authorization_server: discovery.server.clone(),
                    resource: discovery.resource.clone(),
                    scope,
                    auth_method: client.auth_method.as_str(),
                });
                return token_request(ctx, &discovery.server, &client, form).await;
            }
        };
        let authorization_server: AuthorizationServer = grant
            .authorization_server
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or(OauthError::NotAuthorized)?;
        let client = client_of_grant(
            ctx,
            server,
            &grant,
            registration.as_ref(),
            authorization_server.token_endpoint_auth_methods.as_deref(),
        )?;
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token),
        ];
        if let Some(resource) = &grant.resource {
            form.push(("resource", resource.clone()));
        }
        token_request(ctx, &authorization_server, &client, form).await
    }
    .await;

    let (outcome, event): (Result<(), OauthError>, Event) = match requested {
        Ok(response) => {
            let scopes = match &machine {
                Some(asked) => {
                    grant.issuer = Some(asked.authorization_server.issuer.clone());
                    grant.authorization_server =
                        serde_json::to_string(&asked.authorization_server).ok();
                    grant.resource = Some(asked.resource.clone());
                    grant.registration_kind = Some(RegistrationKind::ClientCredentials);
                    grant.requested_scopes = asked.scope.clone();
                    grant.granted_scopes = None;
                    asked.scope.clone()
                }
                None => grant.granted_scopes.clone(),
            };
            apply_token_response(ctx, &mut grant, &response, scopes.as_deref());
            (Ok(()), Event::Refreshed)
        }
        Err(error @ (OauthError::InvalidGrant | OauthError::InvalidClient)) => {
            let client = matches!(error, OauthError::InvalidClient);
            grant.tokens_sealed = None;
            grant.access_expires_at = None;
            // A rejected client that is not pre-registered is registered afresh by the next
            // flow (its registration is deleted with the save below), after a new discovery.
            if client && grant.registration_kind != Some(RegistrationKind::PreRegistered) {
                ctx.oauth.forget_discovery(server_id);
            }
            grant.token_generation = grant.token_generation.saturating_add(1);
            grant.updated_at = DbTime(db::now());
            (Err(error), Event::RefreshRejected { client })
        }
        Err(error) => (Err(error), Event::RefreshFailed),
    };
    grant.refresh_lease_owner = None;
    grant.refresh_lease_until = None;

    // The tokens just issued exist nowhere else (the refresh token they replace may already be
    // dead at the authorization server), so the save outlasts a restarting database.
    let transient = grant.token_generation == expected;
    let saved = retry::persist("saving a token refresh", || async {
        let mut conn = ctx.db.conn().await?;
        transaction!(conn, {
            let wrote = if transient {
                // Nothing to save: give the lease back.
                db::oauth::release_refresh_lease(&mut conn, grant_id, owner).await?;
                false
            } else {
                db::oauth::save_grant_if_generation(&mut conn, &grant, expected).await?
            };
            // A machine client's first token binds it to its authorization server, and records
            // the registration it is.
            if wrote
                && outcome.is_ok()
                && let Some(asked) = &machine
            {
                let issuer = &asked.authorization_server.issuer;
                db::servers::bind_client_issuer(&mut conn, server_id, issuer).await?;
                if db::oauth::find_registration(&mut conn, server_id, issuer)
                    .await?
                    .is_none()
                {
                    let now = DbTime(db::now());
                    let row = RegistrationRow {
                        id: DbUuid(Uuid::now_v7()),
                        server_id: DbUuid(server_id),
                        issuer: issuer.clone(),
                        kind: RegistrationKind::ClientCredentials,
                        client_information_sealed: None,
                        token_endpoint_auth_method: Some(asked.auth_method.to_owned()),
                        created_at: now,
                        updated_at: now,
                    };
                    db::oauth::put_registration(&mut conn, &row).await?;
                }
            }
            // A rejected client is registered afresh by the next flow.
            if wrote
                && matches!(event, Event::RefreshRejected { client: true })
                && grant.registration_kind != Some(RegistrationKind::PreRegistered)
                && let Some(issuer) = &grant.issuer
            {
                db::oauth::delete_registration(&mut conn, server_id, issuer).await?;
            }
            let recorded = match (&outcome, wrote) {
                (_, true) => status::record_for(&mut conn, server_id, holder, event).await?,
                (Err(_), false) if transient => {
                    status::record_for(&mut conn, server_id, holder, event).await?
                }
                _ => None,
            };
            Ok::<_, db::DbError>((wrote, recorded))
        })
    })
    .await;
    let (wrote, recorded) = match saved {
        Ok(saved) => saved,
        Err(error) => {
            // The lease lapses by itself; a refreshed token that could not be saved within the
            // retry budget is lost, the old one stays.
            tracing::error!(%error, mcp_server.id = %server_id, "cannot save the outcome of a token refresh");
            return Err(db_error(error));
        }
    };
    if let Some(recorded) = recorded {
        ctx.events.publish(recorded);
    }
    match outcome {
        Ok(()) if wrote => {
            ctx.metrics.token_refresh("ok");
            tracing::info!(mcp_server.id = %server_id, "OAuth token refreshed");
            let tokens = open_tokens(ctx, &grant).ok_or(OauthError::NotAuthorized)?;
            Ok(Access {
                token: Secret::new(tokens.access_token),
                generation: grant.token_generation,
            })
        }
        Ok(()) => Err(OauthError::TokenEndpoint("a concurrent save won".into())),
        Err(error) if wrote => {
            ctx.metrics.token_refresh("rejected");
            tracing::warn!(mcp_server.id = %server_id, ?event, "OAuth refresh rejected; authorization is required");
            Err(error)
        }
        Err(error) => {
            ctx.metrics.token_refresh("failed");
            tracing::warn!(mcp_server.id = %server_id, %error, "OAuth refresh failed; tokens kept");
            Err(error)
        }
    }
}

/// Clear tokens that cannot be used any more (compare-and-swap on the generation) and ask for
/// authorization again.
async fn forget_tokens(ctx: &Context, stale: &OauthGrantRow, event: Event) {
    let server_id = stale.server_id.0;
    let generation = stale.token_generation;
    let result: Result<Option<StatusEvent>, db::DbError> = async {
        let mut conn = ctx.db.conn().await?;
        let Some(mut grant) = db::oauth::find_grant_by_id(&mut conn, stale.id.0).await? else {
            return Ok(None);
        };
        grant.tokens_sealed = None;
        grant.access_expires_at = None;
        grant.token_generation = grant.token_generation.saturating_add(1);
        grant.updated_at = DbTime(db::now());
        if !db::oauth::save_grant_if_generation(&mut conn, &grant, generation).await? {
            return Ok(None);
        }
        status::record_for(&mut conn, server_id, Holder::of(&grant), event).await
    }
    .await;
    match result {
        Ok(Some(event)) => ctx.events.publish(event),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot clear unusable tokens")
        }
    }
}

/// A client-credentials server's discovery (cached like a flow's): its challenge, protected
/// resource metadata and authorization server metadata, with nothing a user-facing flow needs.
async fn machine_discovery(
    ctx: &Context,
    server: &McpServerRow,
) -> Result<std::sync::Arc<Discovery>, OauthError> {
    if let Some(cached) = ctx.oauth.cached_discovery(server.id.0, &server.url) {
        return Ok(cached);
    }
    let url = url::Url::parse(&server.url)
        .map_err(|e| OauthError::Discovery(format!("server URL: {e}")))?;
    let challenge = probe::probe(&ctx.http, &url, server.transport)
        .await
        .challenge;
    let options = DiscoverOptions {
        lenient_pkce: server.oauth_lenient_pkce,
        machine: true,
    };
    let found = std::sync::Arc::new(
        discovery::discover(&ctx.http, &server.url, challenge.as_ref(), options).await?,
    );
    ctx.oauth
        .remember_discovery(server.id.0, &server.url, found.clone());
    Ok(found)
}

/// Refresh every grant whose access token expires within `horizon`. Returns how many were
/// refreshed. Refresh failures are logged and never delete a token unless the server rejected
/// it; only a storage failure fails the round.
pub async fn refresh_expiring(ctx: &Context, horizon: TimeDelta) -> Result<usize, db::DbError> {
    let grants = {
        let mut conn = ctx.db.conn().await?;
        let before = db::now()
            .checked_add_signed(horizon)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        db::oauth::grants_expiring(&mut conn, DbTime(before), 100).await?
    };
    let mut refreshed = 0;
    for grant in grants {
        let server = {
            let mut conn = ctx.db.conn().await?;
            db::servers::find(&mut conn, grant.server_id.0).await?
        };
        let Some(server) = server else { continue };
        // A machine client's token is renewed without a refresh token.
        if server.credential_mode != CredentialMode::ClientCredentials
            && open_tokens(ctx, &grant)
                .and_then(|t| t.refresh_token)
                .is_none()
        {
            continue;
        }
        match refresh(
            ctx,
            &server,
            Holder::of(&grant),
            Some(grant.token_generation),
        )
        .await
        {
            Ok(_) => refreshed += 1,
            Err(error) => {
                tracing::debug!(mcp_server.id = %grant.server_id.0, %error, "background refresh did not succeed")
            }
        }
    }
    Ok(refreshed)
}

fn db_error(error: db::DbError) -> OauthError {
    OauthError::Storage(error)
}
