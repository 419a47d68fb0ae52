//! Revocation (RFC 7009): best effort, refresh token first, then the access token, within
//! five seconds. Callers revoke only after the server was found inside the caller's
//! workspace; the revocation endpoint passes the same outbound checks as everything else.

use std::time::Duration;

use super::AuthorizationServer;
use super::RegistrationKind;
use super::registration::{self, client_of_grant};
use super::tokens::{open_tokens, post_form};
use crate::db;
use crate::db::models::{McpServerRow, OauthGrantRow};
use crate::domain::Context;
use crate::mcp::SessionKey;

/// The whole revocation may take this long.
pub const REVOCATION_BUDGET: Duration = Duration::from_secs(5);

/// Revoke a grant's tokens at its authorization server, if it offers revocation. Failures are
/// logged and otherwise ignored: the grant is removed locally either way. A session kept open
/// with these tokens is ended first.
pub async fn revoke_grant(ctx: &Context, server: &McpServerRow, grant: &OauthGrantRow) {
    ctx.sessions.forget_key(SessionKey {
        server: server.id.0,
        user: grant.user_id.map(|user| user.0),
    });
    if tokio::time::timeout(REVOCATION_BUDGET, revoke_inner(ctx, server, grant))
        .await
        .is_err()
    {
        tracing::warn!(mcp_server.id = %server.id.0, "token revocation timed out");
    }
}

async fn revoke_inner(ctx: &Context, server: &McpServerRow, grant: &OauthGrantRow) {
    let Some(tokens) = open_tokens(ctx, grant) else {
        return;
    };
    let registration = match &grant.issuer {
        Some(issuer) => match ctx.db.conn().await {
            Ok(mut conn) => db::oauth::find_registration(&mut conn, server.id.0, issuer)
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        },
        None => None,
    };
    let Some(authorization_server) = grant
        .authorization_server
        .as_deref()
        .and_then(|json| serde_json::from_str::<AuthorizationServer>(json).ok())
    else {
        return;
    };
    let Some(endpoint) = authorization_server
        .revocation_endpoint
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
    else {
        return;
    };
    // A machine client's token is revoked by the machine client (a fresh assertion).
    let client = if grant.registration_kind == Some(RegistrationKind::ClientCredentials) {
        registration::machine_client(ctx, server, &authorization_server)
    } else {
        client_of_grant(
            ctx,
            server,
            grant,
            registration.as_ref(),
            authorization_server.token_endpoint_auth_methods.as_deref(),
        )
    };
    let Ok(client) = client else {
        return;
    };
    let candidates = [
        (tokens.refresh_token, "refresh_token"),
        (Some(tokens.access_token), "access_token"),
    ];
    for (token, hint) in candidates {
        let Some(token) = token else { continue };
        let form = vec![("token", token), ("token_type_hint", hint.to_owned())];
        match post_form(ctx, endpoint.as_str(), &client, form, REVOCATION_BUDGET).await {
            Ok(response) if response.status().is_success() => {
                tracing::info!(mcp_server.id = %server.id.0, token_type = hint, "token revoked");
            }
            Ok(response) => {
                tracing::warn!(mcp_server.id = %server.id.0, status = response.status().as_u16(), token_type = hint, "revocation refused");
            }
            Err(error) => {
                tracing::warn!(mcp_server.id = %server.id.0, %error, token_type = hint, "revocation failed")
            }
        }
    }
}
