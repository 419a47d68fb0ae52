//! The authorization flow: start, begin (the popup's first stop), and completion by the
//! callback page or by `completeMcpOauth`.
//!
//! Invariants:
//! - Only the SHA-256 of `state` and of the browser binding are stored; the verifier and the
//!   authorization URL (which carries the state) are sealed.
//! - A flow lives ten minutes. While another user's flow on the same server is younger than
//!   that, starting one is a conflict.
//! - The begin link is single use and binds the flow to one browser with an HttpOnly cookie;
//!   `completeMcpOauth` binds it to the authenticated user who started it instead.
//! - Completion order: provider error (burn the state) → missing parameters → unknown or
//!   expired state → binding → server gone or insecure → RFC 9207 `iss` → burn the state →
//!   code exchange. The verifier is cleared with the state, whatever happens next.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::challenge::Challenge;
use super::discovery::{self, DiscoverOptions, Discovery};
use super::registration::{client_for_flow, client_of_grant};
use super::tokens::{self, apply_token_response, open_tokens};
use super::{AuthorizationServer, OauthError, probe, scope_list, scope_union};
use crate::app::App;
use crate::crypto::{SealContext, Secret, constant_time_eq, pkce_s256, random_token, sha256_hex};
use crate::db::models::{McpServerRow, OauthGrantRow};
use crate::db::{self, DbTime, DbUuid};
use crate::domain::access::{Principal, Role};
use crate::domain::limits::Outbound;
use crate::domain::mcp::catalogue;
use crate::domain::servers::AuthType;
use crate::domain::status::{self, AuthStatus};
use crate::domain::{Error, Result, audit, bad_input};
use crate::net;
use crate::transaction;

/// How long a started flow stays valid.
pub const FLOW_TTL: TimeDelta = TimeDelta::minutes(10);
/// Path of the callback page (the redirect URI is the public URL plus this).
pub const CALLBACK_PATH: &str = "/oauth/callback";

const GRANT_TABLE: &str = "mcp_server_oauth";
const VERIFIER_COLUMN: &str = "code_verifier_sealed";
const AUTHORIZATION_URL_COLUMN: &str = "authorization_url_sealed";

/// What `startMcpOauth` answers.
#[derive(Clone, Debug)]
pub enum Started {
    /// Open `authorization_url` (Switchboard's begin link) in a popup before `expires_at`.
    Redirect {
        /// The begin link to open.
        authorization_url: String,
        /// The authorization server's URL the begin link redirects to (for headless clients).
        upstream_url: Url,
        /// When the flow expires.
        expires_at: DateTime<Utc>,
    },
    /// A stored refresh token still works: nothing to do.
    AlreadyAuthorized,
}

/// The redirect URI of this deployment.
pub fn redirect_uri(app: &App) -> String {
    app.config.public_endpoint(CALLBACK_PATH).to_string()
}

/// Start a flow for a server (editor role). `challenge` is the `WWW-Authenticate` challenge
/// that caused it, when the caller has one; otherwise the server is probed for it.
pub async fn start(
    app: &App,
    principal: &Principal,
    outbound: Outbound<'_>,
    server_id: Uuid,
    challenge: Option<Challenge>,
) -> Result<Started> {
    let mut conn = app.db.conn().await?;
    let server = db::servers::find(&mut conn, server_id)
        .await?
        .ok_or(Error::NotFound)?;
    outbound.require(server.workspace_id.0, Role::Editor)?;
    if AuthType::parse(&server.auth_type) != AuthType::Oauth {
        return Err(bad_input("serverId", "this server does not use OAuth"));
    }
    let server_url = secure_server_url(app, &server)?;
    let grant = db::oauth::find_grant(&mut conn, server_id).await?;
    drop(conn);

    let now = db::now();
    if let Some(grant) = &grant
        && grant.state_hash.is_some()
        && grant.flow_user_id.map(|u| u.0) != Some(principal.user_id)
        && grant
            .state_created_at
            .is_some_and(|at| now - at.0 < FLOW_TTL)
    {
        return Err(Error::Conflict {
            message: "another user is authorizing this server; try again when their flow completes or expires".into(),
            existing_id: None,
        });
    }

    let step_up = AuthStatus::parse(&server.auth_status) == AuthStatus::InsufficientScope;
    if !step_up
        && let Some(grant) = &grant
        && open_tokens(app, grant).is_some_and(|t| t.refresh_token.is_some())
        && tokens::refresh(app, &server, None).await.is_ok()
    {
        return Ok(Started::AlreadyAuthorized);
    }

    let challenge = match challenge {
        Some(challenge) => Some(challenge),
        None => {
            probe::probe(
                &app.http,
                &server_url,
                crate::domain::servers::Transport::parse(&server.transport),
            )
            .await
            .challenge
        }
    };
    let discovery = discover_cached(app, &server, challenge.as_ref()).await?;

    // Scopes: the challenge's (plus what was asked before, on a step-up), else the resource's
    // advertised scopes, else none; `offline_access` only when the server lists it.
    let previous: Vec<String> = if step_up {
        let grant = grant.as_ref();
        scope_union([
            scope_list(grant.and_then(|g| g.requested_scopes.as_deref())).as_slice(),
            scope_list(grant.and_then(|g| g.granted_scopes.as_deref())).as_slice(),
        ])
    } else {
        Vec::new()
    };
    let challenged = scope_list(challenge.as_ref().and_then(|c| c.scope.as_deref()));
    let mut scopes = if previous.is_empty() && challenged.is_empty() {
        discovery.prm_scopes.clone().unwrap_or_default()
    } else {
        scope_union([previous.as_slice(), challenged.as_slice()])
    };
    if discovery
        .scopes_supported
        .as_ref()
        .is_some_and(|s| s.iter().any(|s| s == "offline_access"))
        && !scopes.iter().any(|s| s == "offline_access")
    {
        scopes.push("offline_access".into());
    }
    let scope = (!scopes.is_empty()).then(|| scopes.join(" "));

    let redirect_uri = redirect_uri(app);
    let (client, registration) = client_for_flow(
        app,
        &server,
        grant.as_ref(),
        &discovery,
        &redirect_uri,
        scope.as_deref(),
    )
    .await?;

    let verifier = random_token(48);
    let state = random_token(32);
    let flow_id = random_token(24);
    let mut upstream_url = discovery.authorization_endpoint.clone();
    {
        let mut query = upstream_url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("code_challenge", &pkce_s256(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state)
            .append_pair("resource", &discovery.resource);
        if let Some(scope) = &scope {
            query.append_pair("scope", scope);
        }
    }

    let row_id = server_id.to_string();
    let mut row = grant.unwrap_or_else(|| OauthGrantRow::empty(DbUuid(server_id), DbTime(now)));
    row.issuer = Some(discovery.server.issuer.clone());
    row.resource = Some(discovery.resource.clone());
    row.registration_kind = Some(client.kind.as_str().to_owned());
    if registration.is_some() {
        row.client_information_sealed = registration;
    }
    row.authorization_server = serde_json::to_string(&discovery.server).ok();
    row.state_hash = Some(sha256_hex(&state));
    row.state_created_at = Some(DbTime(now));
    row.code_verifier_sealed = Some(app.keys.seal_str(
        &verifier,
        SealContext::new(GRANT_TABLE, VERIFIER_COLUMN, &row_id),
    ));
    row.flow_user_id = Some(DbUuid(principal.user_id));
    row.browser_binding_hash = None;
    // Without any metadata document there is no declared issuer to hold `iss` against.
    row.expected_issuer = (!discovery.server.synthesized).then(|| discovery.server.issuer.clone());
    row.requested_scopes = scope.clone();
    row.redirect_uri = Some(redirect_uri.clone());
    row.flow_id_hash = Some(sha256_hex(&flow_id));
    row.authorization_url_sealed = Some(app.keys.seal_str(
        upstream_url.as_str(),
        SealContext::new(GRANT_TABLE, AUTHORIZATION_URL_COLUMN, &row_id),
    ));
    row.updated_at = DbTime(now);

    let mut conn = app.db.conn().await?;
    let event = transaction!(conn, {
        if !db::oauth::save_grant(&mut conn, &row).await? {
            db::oauth::insert_grant(&mut conn, &row).await?;
        }
        let event = status::record(&mut conn, server_id, |s| {
            s.auth_status = AuthStatus::Authorizing.as_str().to_owned();
            s.status_reason = Some("flow_started".into());
        })
        .await?;
        audit::record(
            &mut conn,
            server.workspace_id.0,
            principal.user_id,
            "mcp_server.oauth_start",
            Some(server_id),
            json!({ "issuer": discovery.server.issuer, "scope": scope }),
        )
        .await?;
        Ok::<_, Error>(event)
    })?;
    if let Some(event) = event {
        app.events.publish(event);
    }
    tracing::info!(mcp_server.id = %server_id, issuer = %discovery.server.issuer, "OAuth flow started");
    Ok(Started::Redirect {
        authorization_url: app
            .config
            .public_endpoint(&format!("/oauth/begin/{flow_id}"))
            .to_string(),
        upstream_url,
        expires_at: now + FLOW_TTL,
    })
}

async fn discover_cached(
    app: &App,
    server: &McpServerRow,
    challenge: Option<&Challenge>,
) -> Result<std::sync::Arc<Discovery>> {
    // A challenge pointing at specific metadata bypasses the cache: it may name new scopes.
    if challenge.is_none()
        && let Some(cached) = app.oauth.cached_discovery(server.id.0, &server.url)
    {
        return Ok(cached);
    }
    let options = DiscoverOptions {
        lenient_pkce: server.oauth_lenient_pkce,
    };
    let found =
        std::sync::Arc::new(discovery::discover(&app.http, &server.url, challenge, options).await?);
    app.oauth
        .remember_discovery(server.id.0, &server.url, found.clone());
    Ok(found)
}

/// OAuth needs an https server URL; plain http only on loopback when the operator allows
/// private networks (local development and tests).
fn secure_server_url(app: &App, server: &McpServerRow) -> Result<Url> {
    let url = Url::parse(&server.url).map_err(|_| bad_input("url", "is not a valid URL"))?;
    if url.scheme() == "https"
        || (url.scheme() == "http"
            && net::is_loopback_host(&url)
            && app.config.allow_private_networks)
    {
        Ok(url)
    } else {
        Err(Error::UnsafeUrl {
            field: "url".into(),
            message: "OAuth needs an https server URL".into(),
        })
    }
}

/// Why a flow could not begin or complete; `reason` is one of the callback page's codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowFailure {
    /// `provider_error`, `missing_params`, `invalid_state`, `binding_mismatch`, `server_gone`,
    /// `insecure_url`, `issuer_mismatch`, `token_exchange_failed` or `unknown`.
    pub reason: &'static str,
    /// The server, when known.
    pub server_id: Option<Uuid>,
}

impl FlowFailure {
    fn new(reason: &'static str, server_id: Option<Uuid>) -> Self {
        FlowFailure { reason, server_id }
    }
}

/// What the begin link does: set the binding cookie and redirect.
pub struct Begin {
    /// Where to send the browser.
    pub redirect_to: Url,
    /// Name of the binding cookie.
    pub cookie_name: String,
    /// Its value (random; only its hash is stored).
    pub cookie_value: Secret,
}

/// The binding cookie's name for a flow: per flow, so two popups do not overwrite each other.
pub fn binding_cookie_name(state_hash: &str) -> String {
    format!("sb_oauth_{}", &state_hash[..state_hash.len().min(16)])
}

/// Follow a begin link (single use, expires with the flow).
pub async fn begin(app: &App, flow_id: &str) -> std::result::Result<Begin, FlowFailure> {
    let unknown = |_| FlowFailure::new("unknown", None);
    let mut conn = app.db.conn().await.map_err(unknown)?;
    let flow_hash = sha256_hex(flow_id);
    let grant = db::oauth::find_grant_by_flow(&mut conn, &flow_hash)
        .await
        .map_err(unknown)?;
    let Some(grant) = grant else {
        return Err(FlowFailure::new("invalid_state", None));
    };
    let server_id = grant.server_id.0;
    let fresh = grant
        .state_created_at
        .is_some_and(|at| db::now() - at.0 < FLOW_TTL);
    let (Some(state_hash), Some(sealed_url), true) =
        (&grant.state_hash, &grant.authorization_url_sealed, fresh)
    else {
        return Err(FlowFailure::new("invalid_state", Some(server_id)));
    };
    let row_id = server_id.to_string();
    let upstream = app
        .keys
        .open_str(
            sealed_url,
            SealContext::new(GRANT_TABLE, AUTHORIZATION_URL_COLUMN, &row_id),
        )
        .ok()
        .and_then(|u| Url::parse(u.expose()).ok())
        .ok_or_else(|| FlowFailure::new("invalid_state", Some(server_id)))?;
    if !matches!(upstream.scheme(), "http" | "https") {
        return Err(FlowFailure::new("insecure_url", Some(server_id)));
    }
    let binding = Secret::new(random_token(32));
    if !db::oauth::bind_flow(
        &mut conn,
        server_id,
        &flow_hash,
        &sha256_hex(binding.expose()),
    )
    .await
    .map_err(unknown)?
    {
        // The link was already used: single use.
        return Err(FlowFailure::new("invalid_state", Some(server_id)));
    }
    Ok(Begin {
        redirect_to: upstream,
        cookie_name: binding_cookie_name(state_hash),
        cookie_value: binding,
    })
}

/// The parameters the authorization server sent back.
#[derive(Clone, Debug, Default)]
pub struct CallbackParams {
    /// Authorization code.
    pub code: Option<String>,
    /// State.
    pub state: Option<String>,
    /// RFC 9207 issuer.
    pub iss: Option<String>,
    /// Provider error code.
    pub error: Option<String>,
}

/// Who may complete a flow.
pub enum Binding<'a> {
    /// The callback page: the browser that followed the begin link, by its cookies.
    Browser(&'a (dyn Fn(&str) -> Option<String> + Send + Sync)),
    /// `completeMcpOauth`: the authenticated user who started the flow, still an editor of the
    /// server's workspace.
    User(&'a Principal),
}

/// Complete a flow. On success the server has a grant and its status says so.
pub async fn complete(
    app: &App,
    params: CallbackParams,
    binding: Binding<'_>,
) -> std::result::Result<McpServerRow, FlowFailure> {
    let unknown = |server_id| {
        move |error: db::DbError| {
            tracing::error!(%error, "storage failure while completing an OAuth flow");
            FlowFailure::new("unknown", server_id)
        }
    };
    let mut conn = app.db.conn().await.map_err(unknown(None))?;
    let state_hash = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(sha256_hex);
    let grant = match &state_hash {
        Some(hash) => db::oauth::find_grant_by_state(&mut conn, hash)
            .await
            .map_err(unknown(None))?,
        None => None,
    };
    let server_id = grant.as_ref().map(|g| g.server_id.0);

    if params.error.is_some() {
        if let (Some(grant), Some(hash)) = (&grant, &state_hash) {
            burn(app, &mut conn, grant.server_id.0, hash, "provider_error").await;
        }
        return Err(FlowFailure::new("provider_error", server_id));
    }
    let (Some(code), Some(state_hash)) =
        (params.code.as_deref().filter(|c| !c.is_empty()), state_hash)
    else {
        return Err(FlowFailure::new("missing_params", server_id));
    };
    let Some(grant) = grant else {
        return Err(FlowFailure::new("invalid_state", None));
    };
    let server_id = grant.server_id.0;
    if grant
        .state_created_at
        .is_none_or(|at| db::now() - at.0 >= FLOW_TTL)
    {
        burn(app, &mut conn, server_id, &state_hash, "flow_expired").await;
        return Err(FlowFailure::new("invalid_state", Some(server_id)));
    }
    let bound = match binding {
        Binding::Browser(cookie) => match (
            cookie(&binding_cookie_name(&state_hash)),
            &grant.browser_binding_hash,
        ) {
            (Some(value), Some(expected)) => {
                constant_time_eq(sha256_hex(&value).as_bytes(), expected.as_bytes())
            }
            _ => false,
        },
        Binding::User(principal) => grant.flow_user_id.map(|u| u.0) == Some(principal.user_id),
    };
    if !bound {
        return Err(FlowFailure::new("binding_mismatch", Some(server_id)));
    }
    let Some(server) = db::servers::find(&mut conn, server_id)
        .await
        .map_err(unknown(Some(server_id)))?
    else {
        return Err(FlowFailure::new("server_gone", Some(server_id)));
    };
    if let Binding::User(principal) = &binding
        && principal
            .require(server.workspace_id.0, Role::Editor)
            .is_err()
    {
        return Err(FlowFailure::new("binding_mismatch", Some(server_id)));
    }
    if secure_server_url(app, &server).is_err()
        || AuthType::parse(&server.auth_type) != AuthType::Oauth
    {
        burn(app, &mut conn, server_id, &state_hash, "insecure_url").await;
        return Err(FlowFailure::new("insecure_url", Some(server_id)));
    }
    let authorization_server: Option<AuthorizationServer> = grant
        .authorization_server
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    let Some(authorization_server) = authorization_server else {
        return Err(FlowFailure::new("unknown", Some(server_id)));
    };
    // RFC 9207: compare exactly; a server that promises `iss` must send it.
    let issuer_ok = match (&params.iss, authorization_server.iss_parameter_supported) {
        (Some(iss), _) => grant
            .expected_issuer
            .as_ref()
            .is_none_or(|expected| expected == iss),
        (None, true) => false,
        (None, false) => true,
    };
    if !issuer_ok {
        return Err(FlowFailure::new("issuer_mismatch", Some(server_id)));
    }

    // Burn the state before the exchange: the code is used at most once, whatever happens.
    let verifier = grant.code_verifier_sealed.as_deref().and_then(|sealed| {
        app.keys
            .open_str(
                sealed,
                SealContext::new(GRANT_TABLE, VERIFIER_COLUMN, &server_id.to_string()),
            )
            .ok()
    });
    if !db::oauth::burn_flow(&mut conn, server_id, &state_hash, DbTime(db::now()))
        .await
        .map_err(unknown(Some(server_id)))?
    {
        return Err(FlowFailure::new("invalid_state", Some(server_id)));
    }
    let Some(verifier) = verifier else {
        fail_status(app, &mut conn, server_id, "token_exchange_failed").await;
        return Err(FlowFailure::new("token_exchange_failed", Some(server_id)));
    };
    drop(conn);

    let exchanged = async {
        let client = client_of_grant(
            app,
            &server,
            &grant,
            authorization_server.token_endpoint_auth_methods.as_deref(),
        )?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            (
                "redirect_uri",
                grant
                    .redirect_uri
                    .clone()
                    .unwrap_or_else(|| redirect_uri(app)),
            ),
            ("code_verifier", verifier.expose().to_owned()),
        ];
        if let Some(resource) = &grant.resource {
            form.push(("resource", resource.clone()));
        }
        tokens::token_request(app, &authorization_server, &client, form).await
    }
    .await;
    let response = match exchanged {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(mcp_server.id = %server_id, %error, "OAuth code exchange failed");
            let mut conn = app.db.conn().await.map_err(unknown(Some(server_id)))?;
            fail_status(app, &mut conn, server_id, "token_exchange_failed").await;
            return Err(FlowFailure::new("token_exchange_failed", Some(server_id)));
        }
    };

    let saved = store_tokens(
        app,
        server_id,
        server.workspace_id.0,
        grant.flow_user_id,
        response,
    )
    .await;
    let (server, event) = saved.map_err(|error| {
        tracing::error!(%error, mcp_server.id = %server_id, "cannot store OAuth tokens");
        FlowFailure::new("unknown", Some(server_id))
    })?;
    if let Some(event) = event {
        app.events.publish(event);
    }
    tracing::info!(mcp_server.id = %server_id, "OAuth authorization completed");
    // List the tools with the new token; a failure is recorded in the status, the grant stays.
    if let Err(error) = catalogue::refresh(app, &server).await {
        tracing::warn!(mcp_server.id = %server_id, %error, "listing tools after authorization failed");
    }
    let mut conn = app.db.conn().await.map_err(unknown(Some(server_id)))?;
    Ok(db::servers::find(&mut conn, server_id)
        .await
        .ok()
        .flatten()
        .unwrap_or(server))
}

/// Store the tokens of a completed flow and mark the server authorized, in one transaction.
async fn store_tokens(
    app: &App,
    server_id: Uuid,
    workspace_id: Uuid,
    flow_user: Option<DbUuid>,
    response: tokens::TokenResponse,
) -> Result<(McpServerRow, Option<status::StatusEvent>)> {
    let mut conn = app.db.conn().await?;
    transaction!(conn, {
        let mut fresh = db::oauth::find_grant(&mut conn, server_id)
            .await?
            .ok_or(Error::NotFound)?;
        let requested = fresh.requested_scopes.clone();
        apply_token_response(app, &mut fresh, response, requested.as_deref());
        fresh.authorized_by = flow_user;
        fresh.flow_user_id = None;
        db::oauth::save_grant(&mut conn, &fresh).await?;
        let event = status::record(&mut conn, server_id, |row| {
            row.auth_status = AuthStatus::Authorized.as_str().to_owned();
            row.status_reason = Some("authorized".into());
        })
        .await?;
        if let Some(actor) = flow_user {
            audit::record(
                &mut conn,
                workspace_id,
                actor.0,
                "mcp_server.oauth_authorized",
                Some(server_id),
                json!({ "issuer": fresh.issuer }),
            )
            .await?;
        }
        let server = db::servers::find(&mut conn, server_id)
            .await?
            .ok_or(Error::NotFound)?;
        Ok::<_, Error>((server, event))
    })
}

/// Forget a pending flow after a failure and say why in the server's status.
async fn burn(
    app: &App,
    conn: &mut db::DbConn,
    server_id: Uuid,
    state_hash: &str,
    reason: &'static str,
) {
    match db::oauth::burn_flow(conn, server_id, state_hash, DbTime(db::now())).await {
        Ok(true) => fail_status(app, conn, server_id, reason).await,
        Ok(false) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot burn an OAuth flow")
        }
    }
}

async fn fail_status(app: &App, conn: &mut db::DbConn, server_id: Uuid, reason: &'static str) {
    let has_tokens = db::oauth::find_grant(conn, server_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|g| g.tokens_sealed.is_some());
    let recorded = status::record(conn, server_id, |row| {
        // A failed new flow does not undo a grant that still works.
        if has_tokens {
            row.auth_status = AuthStatus::Authorized.as_str().to_owned();
        } else {
            row.auth_status = AuthStatus::AuthorizationRequired.as_str().to_owned();
        }
        row.status_reason = Some(reason.to_owned());
    })
    .await;
    match recorded {
        Ok(Some(event)) => app.events.publish(event),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot record an OAuth failure")
        }
    }
}

/// Revoke and remove a server's grant (editor role); the server then needs authorization.
pub async fn disconnect(
    app: &App,
    principal: &Principal,
    outbound: Outbound<'_>,
    server_id: Uuid,
) -> Result<McpServerRow> {
    let mut conn = app.db.conn().await?;
    let server = db::servers::find(&mut conn, server_id)
        .await?
        .ok_or(Error::NotFound)?;
    outbound.require(server.workspace_id.0, Role::Editor)?;
    if let Some(grant) = db::oauth::find_grant(&mut conn, server_id).await? {
        super::revoke::revoke_grant(app, &server, &grant).await;
    }
    let (server, event) = transaction!(conn, {
        db::oauth::delete_grant(&mut conn, server_id).await?;
        let event = status::record(&mut conn, server_id, |row| {
            status::mark_needs_authorization(row, "disconnected")
        })
        .await?;
        audit::record(
            &mut conn,
            server.workspace_id.0,
            principal.user_id,
            "mcp_server.oauth_disconnect",
            Some(server_id),
            json!({}),
        )
        .await?;
        let server = db::servers::find(&mut conn, server_id)
            .await?
            .ok_or(Error::NotFound)?;
        Ok::<_, Error>((server, event))
    })?;
    if let Some(event) = event {
        app.events.publish(event);
    }
    app.oauth.forget_discovery(server_id);
    Ok(server)
}

impl From<OauthError> for Error {
    fn from(error: OauthError) -> Self {
        Error::Oauth(error)
    }
}
