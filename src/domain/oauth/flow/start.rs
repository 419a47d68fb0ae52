//! Starting a flow: the server is asked for its challenge, its authorization server is
//! discovered (cached per server and URL), a client is registered or reused, and a pending
//! flow is stored with its sealed verifier and authorization URL. A working grant needs no
//! flow at all.

use serde_json::json;
use uuid::Uuid;

use super::request::{Advertised, Request, authorization_url, choose_scopes};
use super::{FLOW_TTL, Started, redirect_uri, secure_server_url};
use crate::crypto::{pkce_s256, random_token, sha256_hex};
use crate::db::models::{FlowRow, McpServerRow};
use crate::db::sealed;
use crate::db::{self, DbTime, DbUuid};
use crate::domain::Context;
use crate::domain::access::Principal;
use crate::domain::lifecycle::Event;
use crate::domain::limits::Outbound;
use crate::domain::oauth::challenge::Challenge;
use crate::domain::oauth::discovery::{self, DiscoverOptions, Discovery};
use crate::domain::oauth::registration::{self, StoredClient, client_for_flow};
use crate::domain::oauth::tokens::{self, open_tokens};
use crate::domain::oauth::{Holder, OauthError, RegistrationKind, probe, scope_list, scope_union};
use crate::domain::servers;
use crate::domain::servers::{AuthType, CredentialMode};
use crate::domain::status::{self, AuthStatus};
use crate::domain::{Error, Result, audit, bad_input};
use crate::transaction;

/// Start a flow for a server: for its shared grant (editor role), or on a per-user server for
/// the caller's own grant (any member). `challenge` is the `WWW-Authenticate` challenge that
/// caused it, when the caller has one; otherwise the server is probed for it.
// Traced only when spans are exported (`crate::telemetry::SPANS`); no argument is recorded.
#[tracing::instrument(target = "switchboard::spans", name = "oauth.flow.start", skip_all, fields(mcp_server.id = %server_id))]
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
        outbound.require(server.workspace_id.0, servers::own_grant_role(&server))?;
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
        if server.credential_mode == CredentialMode::ClientCredentials {
            return Err(bad_input(
                "serverId",
                "this server is reached with its machine client's credentials: nobody authorizes it",
            ));
        }
        let holder = servers::holder(&server, principal.user_id);
        // Two members authorizing the one shared grant at once would race; members of a
        // per-user server each authorize their own.
        if holder == Holder::Workspace
            && db::oauth::live_flow_of_another_user(
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
        let grant = db::oauth::find_grant(&mut conn, server_id, holder.user_id()).await?;
        let previous = db::oauth::flow_of(&mut conn, server_id, principal.user_id).await?;
        (server, grant, previous)
    };
    let holder = servers::holder(&server, principal.user_id);
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
    let step_up = match holder {
        Holder::Workspace => server.auth_status == AuthStatus::InsufficientScope,
        // A user's own grant remembers the scopes a call asked for beyond those granted.
        Holder::User(_) => grant.as_ref().is_some_and(|g| {
            let granted = scope_list(g.granted_scopes.as_deref());
            scope_list(g.requested_scopes.as_deref())
                .iter()
                .any(|scope| !granted.contains(scope))
        }),
    };
    if !step_up
        && let Some(grant) = &grant
        && grant.issuer.as_deref() == Some(discovery.server.issuer.as_str())
        && open_tokens(ctx, grant).is_some_and(|t| t.refresh_token.is_some())
        && tokens::refresh(ctx, &server, holder, None).await.is_ok()
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
    let scopes = choose_scopes(
        &previous_scopes,
        &challenged,
        Advertised {
            resource_scopes: discovery.prm_scopes.as_deref(),
            server_scopes: discovery.scopes_supported.as_deref(),
        },
    );
    let scope = (!scopes.is_empty()).then(|| scopes.join(" "));

    let redirect_uri = redirect_uri(ctx);
    let kept = {
        let mut conn = ctx.db.conn().await?;
        db::oauth::find_registration(&mut conn, server_id, &discovery.server.issuer).await?
    };
    let reusable: Vec<StoredClient> = kept
        .as_ref()
        .and_then(|r| registration::open_registration(ctx, r))
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
    let code_challenge = pkce_s256(&verifier);
    let upstream_url = authorization_url(
        discovery
            .authorization_endpoint
            .as_ref()
            .ok_or(OauthError::BadEndpoint("authorization"))?,
        Request {
            client_id: &client.client_id,
            redirect_uri: &redirect_uri,
            code_challenge: &code_challenge,
            state: &state,
            resource: &discovery.resource,
            scope: scope.as_deref(),
        },
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
        let event = status::record_for(&mut conn, server_id, holder, Event::FlowStarted).await?;
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
        machine: false,
    };
    let found =
        std::sync::Arc::new(discovery::discover(&ctx.http, &server.url, challenge, options).await?);
    ctx.oauth
        .remember_discovery(server.id.0, &server.url, found.clone());
    Ok(found)
}
