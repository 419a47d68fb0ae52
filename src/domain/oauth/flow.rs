//! The authorization flow: start, begin (the popup's first stop), and completion by the
//! callback page or by `completeMcpOauth`.
//!
//! Invariants:
//! - A pending flow is a row of its own (`mcp_oauth_flows`), one per server and user: its
//!   discovered metadata, registration and requested scopes replace the grant's only when its
//!   code exchange succeeds. Starting, abandoning or failing a flow never touches the grant, so
//!   an old refresh token only ever goes to the authorization server that issued it.
//! - Only the SHA-256 of `state`, of the begin link and of the browser binding are stored; the
//!   verifier and the authorization URL (which carries the state) are sealed.
//! - A flow lives ten minutes. While another user's flow on the same server is live, starting
//!   one is a conflict. Expired flows are swept, and a status they left at `AUTHORIZING` falls
//!   back to what the grant says.
//! - The begin link is single use and binds the flow to one browser with an HttpOnly cookie;
//!   `completeMcpOauth` binds it to the authenticated user who started it instead.
//! - Completion order: provider error (burn the flow) → missing parameters → unknown or
//!   expired state → binding → server gone or insecure → RFC 9207 `iss` → burn the flow →
//!   code exchange. A flow whose client id is a metadata document requires `iss`.
//! - Every failed completion is logged once with its reason, never with a secret.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::challenge::Challenge;
use super::discovery::{self, DiscoverOptions, Discovery};
use super::registration::{self, StoredClient, client_for_flow, client_of_flow};
use super::tokens::{self, apply_token_response, open_tokens};
use super::{AuthorizationServer, OauthError, RegistrationKind, probe, scope_list, scope_union};
use crate::crypto::{Secret, constant_time_eq, pkce_s256, random_token, sha256_hex};
use crate::db::models::{FlowRow, McpServerRow, OauthGrantRow};
use crate::db::sealed;
use crate::db::{self, DbTime, DbUuid};
use crate::domain::Context;
use crate::domain::access::{Principal, Role};
use crate::domain::lifecycle::Event;
use crate::domain::limits::Outbound;
use crate::domain::mcp::catalogue;
use crate::domain::servers;
use crate::domain::servers::AuthType;
use crate::domain::status::{self, AuthStatus, StatusReason};
use crate::domain::{Error, Result, audit, bad_input, retry};
use crate::net;
use crate::transaction;

/// How long a started flow stays valid.
pub const FLOW_TTL: TimeDelta = TimeDelta::minutes(10);
/// Path of the callback page (the redirect URI is the public URL plus this).
pub const CALLBACK_PATH: &str = "/oauth/callback";

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
pub fn redirect_uri(ctx: &Context) -> String {
    ctx.settings.public_endpoint(CALLBACK_PATH).to_string()
}

/// Start a flow for a server (editor role). `challenge` is the `WWW-Authenticate` challenge
/// that caused it, when the caller has one; otherwise the server is probed for it.
pub async fn start(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    server_id: Uuid,
    challenge: Option<Challenge>,
) -> Result<Started> {
    let (server, grant, previous) = {
        let mut conn = ctx.db.conn().await?;
        let server = db::servers::find(&mut conn, server_id)
            .await?
            .ok_or(Error::NotFound)?;
        outbound.require(server.workspace_id.0, Role::Editor)?;
        servers::ensure_enabled(&server)?;
        // A server whose auth type is not known yet is asked first.
        let server = if server.auth_type == AuthType::Undetected {
            drop(conn);
            servers::detect_row(ctx, &server).await?;
            conn = ctx.db.conn().await?;
            db::servers::find(&mut conn, server_id)
                .await?
                .ok_or(Error::NotFound)?
        } else {
            server
        };
        if server.auth_type != AuthType::Oauth {
            return Err(bad_input("serverId", "this server does not use OAuth"));
        }
        if db::oauth::live_flow_of_another_user(
            &mut conn,
            server_id,
            principal.user_id,
            DbTime(db::now()),
        )
        .await?
        .is_some()
        {
            return Err(Error::Conflict {
                message: "another user is authorizing this server; try again when their flow completes or expires".into(),
                existing_id: None,
            });
        }
        let grant = db::oauth::find_grant(&mut conn, server_id).await?;
        let previous = db::oauth::flow_of(&mut conn, server_id, principal.user_id).await?;
        (server, grant, previous)
    };
    let server_url = secure_server_url(ctx, &server)?;

    let challenge = match challenge {
        Some(challenge) => Some(challenge),
        None => {
            probe::probe(&ctx.http, &server_url, server.transport)
                .await
                .challenge
        }
    };
    let discovery = discover_cached(ctx, &server, challenge.as_ref()).await?;

    // A grant from the authorization server the resource names now, whose refresh token still
    // works, needs no new flow, unless more scopes are needed. A grant from another server
    // does not count: the resource moved.
    let step_up = server.auth_status == AuthStatus::InsufficientScope;
    if !step_up
        && let Some(grant) = &grant
        && grant.issuer.as_deref() == Some(discovery.server.issuer.as_str())
        && open_tokens(ctx, grant).is_some_and(|t| t.refresh_token.is_some())
        && tokens::refresh(ctx, &server, None).await.is_ok()
    {
        return Ok(Started::AlreadyAuthorized);
    }

    // Scopes: the challenge's (plus what was asked before, on a step-up), else the resource's
    // advertised scopes, else none; `offline_access` only when the server lists it.
    let previous_scopes: Vec<String> = if step_up {
        let grant = grant.as_ref();
        scope_union([
            scope_list(grant.and_then(|g| g.requested_scopes.as_deref())).as_slice(),
            scope_list(grant.and_then(|g| g.granted_scopes.as_deref())).as_slice(),
        ])
    } else {
        Vec::new()
    };
    let challenged = scope_list(challenge.as_ref().and_then(|c| c.scope.as_deref()));
    let scopes = choose_scopes(&previous_scopes, &challenged, &discovery);
    let scope = (!scopes.is_empty()).then(|| scopes.join(" "));

    let redirect_uri = redirect_uri(ctx);
    let reusable: Vec<StoredClient> = grant
        .as_ref()
        .and_then(|g| registration::open_on_grant(ctx, g))
        .into_iter()
        .chain(
            previous
                .as_ref()
                .and_then(|f| registration::open_on_flow(ctx, f)),
        )
        .collect();
    let (client, stored) = client_for_flow(
        ctx,
        &server,
        &reusable,
        &discovery,
        &redirect_uri,
        scope.as_deref(),
    )
    .await?;

    let verifier = random_token(48);
    let state = random_token(32);
    let begin_id = random_token(24);
    let upstream_url = authorization_url(
        &discovery,
        &client.client_id,
        &redirect_uri,
        &pkce_s256(&verifier),
        &state,
        scope.as_deref(),
    );

    let now = db::now();
    let flow_id = Uuid::now_v7();
    let row_id = flow_id.to_string();
    let flow = FlowRow {
        id: DbUuid(flow_id),
        server_id: DbUuid(server_id),
        user_id: DbUuid(principal.user_id),
        state_hash: sha256_hex(&state),
        begin_hash: sha256_hex(&begin_id),
        browser_binding_hash: None,
        code_verifier_sealed: ctx
            .keys
            .seal_str(&verifier, sealed::FLOW_VERIFIER.context(&row_id)),
        authorization_url_sealed: ctx.keys.seal_str(
            upstream_url.as_str(),
            sealed::FLOW_AUTHORIZATION_URL.context(&row_id),
        ),
        redirect_uri: redirect_uri.clone(),
        resource: discovery.resource.clone(),
        // Without any metadata document there is no declared issuer to hold `iss` against.
        expected_issuer: (!discovery.server.synthesized).then(|| discovery.server.issuer.clone()),
        requested_scopes: scope.clone(),
        authorization_server: serde_json::to_string(&discovery.server)
            .map_err(|e| OauthError::Discovery(e.to_string()))?,
        registration_kind: client.kind,
        client_information_sealed: stored
            .as_ref()
            .map(|stored| registration::seal_on_flow(ctx, flow_id, stored))
            .transpose()?,
        created_at: DbTime(now),
        expires_at: DbTime(now + FLOW_TTL),
    };

    let mut conn = ctx.db.conn().await?;
    let event = transaction!(conn, {
        db::oauth::delete_flow_of(&mut conn, server_id, principal.user_id).await?;
        db::oauth::insert_flow(&mut conn, &flow).await?;
        if client.kind == RegistrationKind::PreRegistered {
            db::servers::bind_client_issuer(&mut conn, server_id, &discovery.server.issuer).await?;
        }
        let event = status::record(&mut conn, server_id, Event::FlowStarted).await?;
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
        ctx.events.publish(event);
    }
    tracing::info!(mcp_server.id = %server_id, issuer = %discovery.server.issuer, "OAuth flow started");
    Ok(Started::Redirect {
        authorization_url: ctx
            .settings
            .public_endpoint(&format!("/oauth/begin/{begin_id}"))
            .to_string(),
        upstream_url,
        expires_at: now + FLOW_TTL,
    })
}

/// The scopes a flow asks for: what was asked before and what the challenge names, else the
/// resource's advertised scopes; `offline_access` added only when the authorization server
/// lists it.
fn choose_scopes(previous: &[String], challenged: &[String], discovery: &Discovery) -> Vec<String> {
    let mut scopes = if previous.is_empty() && challenged.is_empty() {
        discovery.prm_scopes.clone().unwrap_or_default()
    } else {
        scope_union([previous, challenged])
    };
    if discovery
        .scopes_supported
        .as_ref()
        .is_some_and(|s| s.iter().any(|s| s == "offline_access"))
        && !scopes.iter().any(|s| s == "offline_access")
    {
        scopes.push("offline_access".into());
    }
    scopes
}

/// The authorization server's URL for a flow: the code flow with PKCE S256, the state, the
/// resource exactly as published, and the scopes when there are any.
fn authorization_url(
    discovery: &Discovery,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    state: &str,
    scope: Option<&str>,
) -> Url {
    let mut url = discovery.authorization_endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", state)
            .append_pair("resource", &discovery.resource);
        if let Some(scope) = scope {
            query.append_pair("scope", scope);
        }
    }
    url
}

async fn discover_cached(
    ctx: &Context,
    server: &McpServerRow,
    challenge: Option<&Challenge>,
) -> Result<std::sync::Arc<Discovery>> {
    // A challenge pointing at specific metadata bypasses the cache: it may name new scopes.
    if challenge.is_none()
        && let Some(cached) = ctx.oauth.cached_discovery(server.id.0, &server.url)
    {
        return Ok(cached);
    }
    let options = DiscoverOptions {
        lenient_pkce: server.oauth_lenient_pkce,
    };
    let found =
        std::sync::Arc::new(discovery::discover(&ctx.http, &server.url, challenge, options).await?);
    ctx.oauth
        .remember_discovery(server.id.0, &server.url, found.clone());
    Ok(found)
}

/// OAuth needs an https server URL; plain http only on loopback when the operator allows
/// private networks (local development and tests).
fn secure_server_url(ctx: &Context, server: &McpServerRow) -> Result<Url> {
    let url = Url::parse(&server.url).map_err(|_| bad_input("url", "is not a valid URL"))?;
    if url.scheme() == "https"
        || (url.scheme() == "http"
            && net::is_loopback_host(&url)
            && ctx.settings.allow_private_networks)
    {
        Ok(url)
    } else {
        Err(Error::UnsafeUrl {
            field: "url".into(),
            message: "OAuth needs an https server URL".into(),
        })
    }
}

/// Why a flow could not begin or complete: the callback page's codes, with what the page says
/// for each (the API's `McpOauthFailureReason` carries the same words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFailureReason {
    /// The authorization server did not grant access.
    ProviderError,
    /// The authorization response was incomplete.
    MissingParams,
    /// The link is unknown, already used, or expired.
    InvalidState,
    /// The flow was started in another browser or session.
    BindingMismatch,
    /// The server was deleted while it was being authorized.
    ServerGone,
    /// The server or the authorization server is not at a secure address.
    InsecureUrl,
    /// The response did not come from the expected authorization server.
    IssuerMismatch,
    /// The authorization server did not issue tokens for the code.
    TokenExchangeFailed,
    /// Something unexpected failed on our side.
    Unknown,
}

impl FlowFailureReason {
    /// Every reason.
    pub const ALL: [FlowFailureReason; 9] = [
        FlowFailureReason::ProviderError,
        FlowFailureReason::MissingParams,
        FlowFailureReason::InvalidState,
        FlowFailureReason::BindingMismatch,
        FlowFailureReason::ServerGone,
        FlowFailureReason::InsecureUrl,
        FlowFailureReason::IssuerMismatch,
        FlowFailureReason::TokenExchangeFailed,
        FlowFailureReason::Unknown,
    ];

    /// The code the callback page and its message to the opener carry.
    pub const fn code(self) -> &'static str {
        match self {
            FlowFailureReason::ProviderError => "provider_error",
            FlowFailureReason::MissingParams => "missing_params",
            FlowFailureReason::InvalidState => "invalid_state",
            FlowFailureReason::BindingMismatch => "binding_mismatch",
            FlowFailureReason::ServerGone => "server_gone",
            FlowFailureReason::InsecureUrl => "insecure_url",
            FlowFailureReason::IssuerMismatch => "issuer_mismatch",
            FlowFailureReason::TokenExchangeFailed => "token_exchange_failed",
            FlowFailureReason::Unknown => "unknown",
        }
    }

    /// What it means, for a person.
    pub const fn explain(self) -> &'static str {
        match self {
            FlowFailureReason::ProviderError => "The authorization server did not grant access.",
            FlowFailureReason::MissingParams => "The authorization response was incomplete.",
            FlowFailureReason::InvalidState => {
                "This authorization link is unknown, already used, or expired. Start again."
            }
            FlowFailureReason::BindingMismatch => {
                "This authorization was started in another browser or session."
            }
            FlowFailureReason::ServerGone => {
                "The server was deleted while it was being authorized."
            }
            FlowFailureReason::InsecureUrl => {
                "The server or the authorization server is not at a secure address."
            }
            FlowFailureReason::IssuerMismatch => {
                "The response did not come from the expected authorization server."
            }
            FlowFailureReason::TokenExchangeFailed => {
                "The authorization server did not issue tokens."
            }
            FlowFailureReason::Unknown => "Something went wrong. Start again.",
        }
    }
}

/// Why a flow could not begin or complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowFailure {
    /// Why.
    pub reason: FlowFailureReason,
    /// The server, when known.
    pub server_id: Option<Uuid>,
}

impl FlowFailure {
    fn new(reason: FlowFailureReason, server_id: Option<Uuid>) -> Self {
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
pub async fn begin(ctx: &Context, begin_id: &str) -> std::result::Result<Begin, FlowFailure> {
    let unknown = |error: db::DbError| {
        tracing::error!(%error, "storage failure while beginning an OAuth flow");
        FlowFailure::new(FlowFailureReason::Unknown, None)
    };
    let mut conn = ctx.db.conn().await.map_err(unknown)?;
    let flow = db::oauth::find_flow_by_begin(&mut conn, &sha256_hex(begin_id))
        .await
        .map_err(unknown)?;
    let Some(flow) = flow else {
        return Err(failed(
            FlowFailureReason::InvalidState,
            None,
            "unknown begin link",
        ));
    };
    let server_id = flow.server_id.0;
    if flow.expires_at.0 <= db::now() {
        return Err(failed(
            FlowFailureReason::InvalidState,
            Some(server_id),
            "expired flow",
        ));
    }
    let row_id = flow.id.0.to_string();
    let upstream = ctx
        .keys
        .open_str(
            &flow.authorization_url_sealed,
            sealed::FLOW_AUTHORIZATION_URL.context(&row_id),
        )
        .ok()
        .and_then(|u| Url::parse(u.expose()).ok())
        .ok_or_else(|| {
            failed(
                FlowFailureReason::InvalidState,
                Some(server_id),
                "unreadable flow",
            )
        })?;
    if !matches!(upstream.scheme(), "http" | "https") {
        return Err(failed(
            FlowFailureReason::InsecureUrl,
            Some(server_id),
            "authorization URL",
        ));
    }
    let binding = Secret::new(random_token(32));
    if !db::oauth::bind_flow(&mut conn, flow.id.0, &sha256_hex(binding.expose()))
        .await
        .map_err(unknown)?
    {
        return Err(failed(
            FlowFailureReason::InvalidState,
            Some(server_id),
            "begin link used twice",
        ));
    }
    Ok(Begin {
        redirect_to: upstream,
        cookie_name: binding_cookie_name(&flow.state_hash),
        cookie_value: binding,
    })
}

/// A failure, logged once for the operator with its reason (never a secret).
fn failed(reason: FlowFailureReason, server_id: Option<Uuid>, detail: &'static str) -> FlowFailure {
    let code = reason.code();
    match server_id {
        Some(id) => {
            tracing::warn!(mcp_server.id = %id, reason = code, detail, "an OAuth flow failed")
        }
        None => tracing::warn!(reason = code, detail, "an OAuth flow failed"),
    }
    FlowFailure::new(reason, server_id)
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
    ctx: &Context,
    params: CallbackParams,
    binding: Binding<'_>,
) -> std::result::Result<McpServerRow, FlowFailure> {
    let unknown = |server_id| {
        move |error: db::DbError| {
            tracing::error!(%error, "storage failure while completing an OAuth flow");
            FlowFailure::new(FlowFailureReason::Unknown, server_id)
        }
    };
    let mut conn = ctx.db.conn().await.map_err(unknown(None))?;
    let state_hash = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(sha256_hex);
    let flow = match &state_hash {
        Some(hash) => db::oauth::find_flow_by_state(&mut conn, hash)
            .await
            .map_err(unknown(None))?,
        None => None,
    };
    let server_id = flow.as_ref().map(|f| f.server_id.0);

    if params.error.is_some() {
        if let Some(flow) = &flow {
            burn(
                ctx,
                &mut conn,
                flow,
                Event::FlowFailed(StatusReason::ProviderError),
            )
            .await;
        }
        return Err(failed(
            FlowFailureReason::ProviderError,
            server_id,
            "the authorization server refused",
        ));
    }
    let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
        return Err(failed(
            FlowFailureReason::MissingParams,
            server_id,
            "no code",
        ));
    };
    let Some(flow) = flow else {
        let detail = if state_hash.is_some() {
            "unknown state"
        } else {
            "no state"
        };
        return Err(failed(
            if state_hash.is_some() {
                FlowFailureReason::InvalidState
            } else {
                FlowFailureReason::MissingParams
            },
            None,
            detail,
        ));
    };
    let server_id = flow.server_id.0;
    if flow.expires_at.0 <= db::now() {
        burn(ctx, &mut conn, &flow, Event::FlowExpired).await;
        return Err(failed(
            FlowFailureReason::InvalidState,
            Some(server_id),
            "expired flow",
        ));
    }
    let bound = match binding {
        Binding::Browser(cookie) => match (
            cookie(&binding_cookie_name(&flow.state_hash)),
            &flow.browser_binding_hash,
        ) {
            (Some(value), Some(expected)) => {
                constant_time_eq(sha256_hex(&value).as_bytes(), expected.as_bytes())
            }
            _ => false,
        },
        Binding::User(principal) => flow.user_id.0 == principal.user_id,
    };
    if !bound {
        return Err(failed(
            FlowFailureReason::BindingMismatch,
            Some(server_id),
            "another browser or user",
        ));
    }
    let Some(server) = db::servers::find(&mut conn, server_id)
        .await
        .map_err(unknown(Some(server_id)))?
    else {
        return Err(failed(
            FlowFailureReason::ServerGone,
            Some(server_id),
            "deleted",
        ));
    };
    if let Binding::User(principal) = &binding
        && principal
            .require(server.workspace_id.0, Role::Editor)
            .is_err()
    {
        return Err(failed(
            FlowFailureReason::BindingMismatch,
            Some(server_id),
            "no longer an editor",
        ));
    }
    if secure_server_url(ctx, &server).is_err() || server.auth_type != AuthType::Oauth {
        burn(
            ctx,
            &mut conn,
            &flow,
            Event::FlowFailed(StatusReason::InsecureUrl),
        )
        .await;
        return Err(failed(
            FlowFailureReason::InsecureUrl,
            Some(server_id),
            "server URL or auth type",
        ));
    }
    let Ok(authorization_server) =
        serde_json::from_str::<AuthorizationServer>(&flow.authorization_server)
    else {
        return Err(failed(
            FlowFailureReason::Unknown,
            Some(server_id),
            "unreadable flow",
        ));
    };
    let metadata_document = flow.registration_kind == RegistrationKind::MetadataDocument;
    if !issuer_matches(
        params.iss.as_deref(),
        flow.expected_issuer.as_deref(),
        authorization_server.iss_parameter_supported || metadata_document,
    ) {
        return Err(failed(
            FlowFailureReason::IssuerMismatch,
            Some(server_id),
            "RFC 9207 iss",
        ));
    }

    // Burn the flow before the exchange: the code is used at most once, whatever happens.
    let verifier = ctx
        .keys
        .open_str(
            &flow.code_verifier_sealed,
            sealed::FLOW_VERIFIER.context(&flow.id.0.to_string()),
        )
        .ok();
    if !db::oauth::burn_flow(&mut conn, flow.id.0)
        .await
        .map_err(unknown(Some(server_id)))?
    {
        return Err(failed(
            FlowFailureReason::InvalidState,
            Some(server_id),
            "flow completed twice",
        ));
    }
    let Some(verifier) = verifier else {
        fail_status(
            ctx,
            &mut conn,
            server_id,
            Event::FlowFailed(StatusReason::TokenExchangeFailed),
        )
        .await;
        return Err(failed(
            FlowFailureReason::TokenExchangeFailed,
            Some(server_id),
            "unreadable verifier",
        ));
    };
    drop(conn);

    let exchanged = async {
        let client = client_of_flow(
            ctx,
            &server,
            &flow,
            &authorization_server.issuer,
            authorization_server.token_endpoint_auth_methods.as_deref(),
        )?;
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", flow.redirect_uri.clone()),
            ("code_verifier", verifier.expose().to_owned()),
            ("resource", flow.resource.clone()),
        ];
        tokens::token_request(ctx, &authorization_server, &client, form).await
    }
    .await;
    let response = match exchanged {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(mcp_server.id = %server_id, %error, "OAuth code exchange failed");
            let mut conn = ctx.db.conn().await.map_err(unknown(Some(server_id)))?;
            fail_status(
                ctx,
                &mut conn,
                server_id,
                Event::FlowFailed(StatusReason::TokenExchangeFailed),
            )
            .await;
            return Err(FlowFailure::new(
                FlowFailureReason::TokenExchangeFailed,
                Some(server_id),
            ));
        }
    };

    let saved = store_tokens(ctx, &server, &flow, &authorization_server, response).await;
    let (server, event) = saved.map_err(|error| {
        tracing::error!(%error, mcp_server.id = %server_id, "cannot store OAuth tokens");
        FlowFailure::new(FlowFailureReason::Unknown, Some(server_id))
    })?;
    if let Some(event) = event {
        ctx.events.publish(event);
    }
    tracing::info!(mcp_server.id = %server_id, "OAuth authorization completed");
    // List the tools with the new token; a failure is recorded in the status, the grant stays.
    if let Err(error) = catalogue::refresh(ctx, &server).await {
        tracing::warn!(mcp_server.id = %server_id, %error, "listing tools after authorization failed");
    }
    let mut conn = ctx.db.conn().await.map_err(unknown(Some(server_id)))?;
    Ok(db::servers::find(&mut conn, server_id)
        .await
        .ok()
        .flatten()
        .unwrap_or(server))
}

/// RFC 9207: compare exactly; a server that promises `iss` (or a flow whose client id is
/// valid everywhere) must send it. Without a declared issuer there is nothing to hold `iss`
/// against.
fn issuer_matches(iss: Option<&str>, expected: Option<&str>, required: bool) -> bool {
    match iss {
        Some(iss) => expected.is_none_or(|expected| expected == iss),
        None => !required,
    }
}

/// Make a completed flow the server's grant, and mark the server authorized, in one
/// transaction. The flow's authorization server, registration and scopes replace the grant's;
/// a refresh token is kept from the old grant only when the same issuer issued it.
async fn store_tokens(
    ctx: &Context,
    server: &McpServerRow,
    flow: &FlowRow,
    authorization_server: &AuthorizationServer,
    response: tokens::TokenResponse,
) -> Result<(McpServerRow, Option<status::StatusEvent>)> {
    let server_id = server.id.0;
    let registration = registration::open_on_flow(ctx, flow)
        .map(|stored| registration::seal_on_grant(ctx, server_id, &stored))
        .transpose()?;
    // The code was spent: the tokens exist nowhere else, so the save outlasts a restarting
    // database.
    let response = &response;
    let saved = retry::persist("saving an authorization", || async {
        let mut conn = ctx.db.conn().await?;
        transaction!(conn, {
            let now = DbTime(db::now());
            let existing = db::oauth::find_grant(&mut conn, server_id).await?;
            let exists = existing.is_some();
            let mut grant =
                existing.unwrap_or_else(|| OauthGrantRow::empty(DbUuid(server_id), now));
            if grant.issuer.as_deref() != Some(authorization_server.issuer.as_str()) {
                // Tokens of another authorization server are never kept next to this one's.
                grant.tokens_sealed = None;
            }
            grant.issuer = Some(authorization_server.issuer.clone());
            grant.resource = Some(flow.resource.clone());
            grant.registration_kind = Some(flow.registration_kind);
            grant.client_information_sealed = registration.clone();
            grant.authorization_server = Some(flow.authorization_server.clone());
            grant.requested_scopes = flow.requested_scopes.clone();
            grant.granted_scopes = None;
            apply_token_response(ctx, &mut grant, response, flow.requested_scopes.as_deref());
            grant.authorized_by = Some(flow.user_id);
            grant.refresh_lease_owner = None;
            grant.refresh_lease_until = None;
            if exists {
                db::oauth::save_grant(&mut conn, &grant).await?;
            } else {
                db::oauth::insert_grant(&mut conn, &grant).await?;
            }
            let event = status::record(&mut conn, server_id, Event::Authorized).await?;
            audit::record(
                &mut conn,
                server.workspace_id.0,
                flow.user_id.0,
                "mcp_server.oauth_authorized",
                Some(server_id),
                json!({ "issuer": grant.issuer }),
            )
            .await?;
            let server = db::servers::find(&mut conn, server_id).await?;
            Ok::<_, Error>((server, event))
        })
    })
    .await?;
    match saved {
        (Some(server), event) => Ok((server, event)),
        (None, _) => Err(Error::NotFound),
    }
}

/// Forget a pending flow after a failure and say why in the server's status.
async fn burn(ctx: &Context, conn: &mut db::DbConn, flow: &FlowRow, event: Event) {
    let server_id = flow.server_id.0;
    match db::oauth::burn_flow(conn, flow.id.0).await {
        Ok(true) => fail_status(ctx, conn, server_id, event).await,
        Ok(false) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot burn an OAuth flow")
        }
    }
}

/// The status after a flow ended without a new grant: what the grant says (a failed new flow
/// does not undo a grant that still works), with the reason.
async fn fail_status(ctx: &Context, conn: &mut db::DbConn, server_id: Uuid, event: Event) {
    match status::record(conn, server_id, event).await {
        Ok(Some(event)) => ctx.events.publish(event),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot record an OAuth failure")
        }
    }
}

/// Delete expired flows and give the servers they left `AUTHORIZING` (with no other flow
/// pending) back the status their grant deserves. Returns how many servers were affected.
pub async fn sweep_expired(ctx: &Context) -> std::result::Result<usize, db::DbError> {
    let now = DbTime(db::now());
    let mut conn = ctx.db.conn().await?;
    let servers = db::oauth::delete_expired_flows(&mut conn, now, 500).await?;
    let live = db::oauth::servers_with_live_flows(&mut conn, &servers, now).await?;
    for server_id in &servers {
        if live.contains(server_id) {
            continue;
        }
        fail_status(ctx, &mut conn, *server_id, Event::FlowExpired).await;
    }
    Ok(servers.len())
}

/// Revoke and remove a server's grant (editor role); the server then needs authorization.
/// Pending flows go too.
pub async fn disconnect(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    server_id: Uuid,
) -> Result<McpServerRow> {
    let (server, grant) = {
        let mut conn = ctx.db.conn().await?;
        let server = db::servers::find(&mut conn, server_id)
            .await?
            .ok_or(Error::NotFound)?;
        outbound.require(server.workspace_id.0, Role::Editor)?;
        let grant = db::oauth::find_grant(&mut conn, server_id).await?;
        (server, grant)
    };
    // No connection is held while the authorization server answers.
    if let Some(grant) = &grant {
        super::revoke::revoke_grant(ctx, &server, grant).await;
    }
    let mut conn = ctx.db.conn().await?;
    let (server, event) = transaction!(conn, {
        db::oauth::delete_grant(&mut conn, server_id).await?;
        db::oauth::delete_flows_of_server(&mut conn, server_id).await?;
        let event = status::record(&mut conn, server_id, Event::Disconnected).await?;
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
        ctx.events.publish(event);
    }
    ctx.oauth.forget_discovery(server_id);
    Ok(server)
}

impl From<OauthError> for Error {
    fn from(error: OauthError) -> Self {
        Error::Oauth(error)
    }
}
