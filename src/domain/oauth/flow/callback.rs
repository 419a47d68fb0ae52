//! The browser's side of a flow: the begin link (single use; binds the flow to the browser
//! with a cookie) and the completion, in the order the module invariants give.

use serde_json::json;
use url::Url;

use super::{
    FlowFailure, FlowFailureReason, burn, expired, fail_status, failed, secure_server_url,
};
use crate::crypto::{Secret, constant_time_eq, random_token, sha256_hex};
use crate::db::models::{FlowRow, McpServerRow, OauthGrantRow};
use crate::db::sealed;
use crate::db::{self, DbTime, DbUuid};
use crate::domain::Context;
use crate::domain::access::{Principal, Role};
use crate::domain::lifecycle::Event;
use crate::domain::mcp::catalogue;
use crate::domain::oauth::registration::{self, client_of_flow};
use crate::domain::oauth::tokens::{self, apply_token_response};
use crate::domain::oauth::{AuthorizationServer, RegistrationKind};
use crate::domain::servers::{self, AuthType};
use crate::domain::status::{self, StatusReason};
use crate::domain::{Error, Result, audit, retry};
use crate::transaction;

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
    if expired(&flow) {
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
// Traced only when spans are exported (`crate::telemetry::SPANS`); no argument is recorded.
#[tracing::instrument(target = "switchboard::spans", name = "oauth.flow.complete", skip_all)]
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
    if expired(&flow) {
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
            flow.user_id.0,
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
                flow.user_id.0,
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
    let holder = servers::holder(&server, flow.user_id.0);
    if let Err(error) = catalogue::refresh(ctx, &server, holder).await {
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
    // A flow on a per-user server makes the grant of the user who started it.
    let holder = servers::holder(server, flow.user_id.0);
    let now = DbTime(db::now());
    let registration = registration::open_on_flow(ctx, flow)
        .map(|stored| registration::registration_row(ctx, server_id, &stored, now))
        .transpose()?;
    // The code was spent: the tokens exist nowhere else, so the save outlasts a restarting
    // database.
    let response = &response;
    let saved = retry::persist("saving an authorization", || async {
        let mut conn = ctx.db.conn().await?;
        transaction!(conn, {
            let now = DbTime(db::now());
            if let Some(registration) = &registration {
                db::oauth::put_registration(&mut conn, registration).await?;
            }
            let existing = db::oauth::find_grant(&mut conn, server_id, holder.user_id()).await?;
            let exists = existing.is_some();
            let mut grant = existing.unwrap_or_else(|| {
                OauthGrantRow::empty(DbUuid(server_id), holder.user_id().map(DbUuid), now)
            });
            if grant.issuer.as_deref() != Some(authorization_server.issuer.as_str()) {
                // Tokens of another authorization server are never kept next to this one's.
                grant.tokens_sealed = None;
            }
            grant.issuer = Some(authorization_server.issuer.clone());
            grant.resource = Some(flow.resource.clone());
            grant.registration_kind = Some(flow.registration_kind);
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
            let event = status::record_for(&mut conn, server_id, holder, Event::Authorized).await?;
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
