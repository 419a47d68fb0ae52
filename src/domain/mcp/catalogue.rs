//! Reaching a registered server with its current credentials, and keeping its tool
//! catalogue: list every tool, store it, and record what the attempt says about the server's
//! status.
//!
//! A listing is capped by the tools-per-server and catalogue-bytes quotas: one over either is
//! refused as a whole, the previous catalogue stays, and the server's `statusReason` and
//! `lastError` say why. Of several tools listed under one name the first is kept; how many were
//! dropped is shown in `lastError`.

use std::time::Duration;

use uuid::Uuid;

use crate::db::models::{McpServerRow, ToolRow};
use crate::db::{self, DbTime, DbUuid};
use crate::domain::Context;
use crate::domain::lifecycle::{self, Event, Facts};
use crate::domain::limits::Quota;
use crate::domain::oauth::{Holder, OauthError, challenge, tokens};
use crate::domain::servers::{self, AuthType};
use crate::domain::status;
use crate::domain::{Error, Result};
use crate::mcp::{self, Listing, ListingCaps, McpError, McpSession, McpTarget};
use crate::transaction;

/// Open a session to a server with its static headers and, for OAuth servers, a usable access
/// token of `holder`'s grant (refreshed first when due). Returns the session and the grant
/// generation of the token used.
pub async fn connect(
    ctx: &Context,
    server: &McpServerRow,
    holder: Holder,
) -> Result<(McpSession, Option<i64>)> {
    let (target, generation) = target(ctx, server, holder, tokens::GrantFrom::Storage).await?;
    let session = mcp::open(&ctx.http, target)
        .await
        .map_err(|e| mcp_error(server, e))?;
    remember_protocol(ctx, server, &session).await;
    Ok((session, generation))
}

/// Store the protocol revision a session negotiated when it is not the one stored, so the
/// next session speaks that era first. Only a well-formed revision (a date) is kept; a failure
/// to write is logged and changes nothing else.
pub async fn remember_protocol(ctx: &Context, server: &McpServerRow, session: &McpSession) {
    let transport = session.transport();
    if transport != server.transport {
        // Registered for Streamable HTTP, found on HTTP+SSE only: asked there from now on.
        let written = async {
            let mut conn = ctx.db.conn().await?;
            db::servers::set_transport(&mut conn, server.id.0, transport).await
        }
        .await;
        match written {
            Ok(()) => tracing::info!(
                mcp_server.id = %server.id.0,
                transport = %transport,
                "the MCP server answers only on another transport; remembered"
            ),
            Err(error) => tracing::warn!(
                mcp_server.id = %server.id.0,
                %error,
                "the transport an MCP server answered on could not be stored"
            ),
        }
    }
    let version = session.protocol_version();
    if server.protocol_version.as_deref() == Some(version) || !is_revision(version) {
        return;
    }
    let written = async {
        let mut conn = ctx.db.conn().await?;
        db::servers::set_protocol_version(&mut conn, server.id.0, version).await
    }
    .await;
    match written {
        Ok(()) => tracing::info!(
            mcp_server.id = %server.id.0,
            protocol_version = version,
            "MCP protocol revision negotiated"
        ),
        Err(error) => tracing::warn!(
            mcp_server.id = %server.id.0,
            %error,
            "the negotiated MCP protocol revision could not be stored"
        ),
    }
}

/// `YYYY-MM-DD`, the form of every MCP protocol revision.
fn is_revision(version: &str) -> bool {
    let bytes = version.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// The target of a server with its current credentials: its static headers and, for OAuth
/// servers, the access token of `holder`'s grant (found as `grant` says).
pub async fn target(
    ctx: &Context,
    server: &McpServerRow,
    holder: Holder,
    grant: tokens::GrantFrom,
) -> Result<(McpTarget, Option<i64>)> {
    let url = url::Url::parse(&server.url)
        .map_err(|_| crate::domain::bad_input("url", "is not a valid URL"))?;
    // Headers that no longer open (lost key) are an internal failure, never sent half.
    let headers = servers::open_headers(ctx, server)?;
    let (bearer, generation) = if server.auth_type == AuthType::Oauth {
        // Boxed: the refresh it may run would otherwise weigh on every call's future.
        match Box::pin(tokens::access_token(ctx, server, holder, grant)).await {
            Ok(access) => (Some(access.token), Some(access.generation)),
            Err(
                OauthError::NotAuthorized | OauthError::InvalidGrant | OauthError::InvalidClient,
            ) => {
                return Err(Error::ReauthRequired {
                    server_id: server.id.0,
                });
            }
            Err(other) => return Err(Error::Oauth(other)),
        }
    } else {
        (None, None)
    };
    Ok((
        McpTarget {
            url,
            transport: server.transport,
            headers,
            bearer,
            timeout: Duration::from_millis(u64::try_from(server.timeout_ms).unwrap_or(30_000)),
            era: mcp::Era::of_version(server.protocol_version.as_deref()),
            machine_client: server.credential_mode == servers::CredentialMode::ClientCredentials,
        },
        generation,
    ))
}

/// The listing caps of this deployment's quotas.
pub fn listing_caps(ctx: &Context) -> ListingCaps {
    ListingCaps {
        max_tools: usize::try_from(ctx.limits.tools_per_server).unwrap_or(usize::MAX),
        max_bytes: ctx.limits.catalogue_bytes,
    }
}

/// Reconnect with `holder`'s credentials, list every tool, store the catalogue (one per
/// server, whoever listed it) and mark the server connected. Failures are recorded in the
/// server's status (an authorization failure of one user's grant in that user's view alone)
/// and returned; a listing over a quota stores nothing.
pub async fn refresh(ctx: &Context, server: &McpServerRow, holder: Holder) -> Result<usize> {
    refresh_as(ctx, server, holder, Event::Reached).await
}

/// [`refresh`], recording a success as `success` (e.g. [`Event::ToolsChanged`] when the server
/// said its tools changed).
pub async fn refresh_as(
    ctx: &Context,
    server: &McpServerRow,
    holder: Holder,
    success: Event,
) -> Result<usize> {
    let listed = async {
        let (session, _) = connect(ctx, server, holder).await?;
        let listing = session
            .list_tools(listing_caps(ctx))
            .await
            .map_err(|e| mcp_error(server, e));
        session.close().await;
        listing
    }
    .await;
    match listed {
        Ok(listing) => {
            if listing.duplicates > 0 {
                tracing::warn!(
                    mcp_server.id = %server.id.0,
                    duplicates = listing.duplicates,
                    "the MCP server listed tool names more than once; the first of each was kept"
                );
            }
            let count = listing.tools.len();
            store(ctx, server.id.0, holder, &listing, success)
                .await
                .map(|()| count)
        }
        Err(error) => {
            record_failure(ctx, server.id.0, holder, &error).await;
            Err(error)
        }
    }
}

/// Whether the server said its catalogue is still fresh (the `ttlMs` of its last listing).
pub fn catalogue_is_fresh(server: &McpServerRow) -> bool {
    server
        .tools_fresh_until
        .is_some_and(|until| until.0 > db::now())
}

/// Reach a server without listing its tools: open a session (discovery or `initialize`) and
/// close it, recording the outcome in its status like a listing would.
pub async fn reach(ctx: &Context, server: &McpServerRow, holder: Holder) -> Result<()> {
    match connect(ctx, server, holder).await {
        Ok((session, _)) => {
            session.close().await;
            mark_reached(ctx, server).await;
            Ok(())
        }
        Err(error) => {
            record_failure(ctx, server.id.0, holder, &error).await;
            Err(error)
        }
    }
}

/// A call or a connection went through: the server is reachable. Nothing is written when that
/// changes nothing, so a steady stream of calls costs no writes.
pub async fn mark_reached(ctx: &Context, server: &McpServerRow) {
    // An OAuth server reached at all was reached with stored tokens.
    let facts = Facts {
        auth_type: server.auth_type,
        has_tokens: server.auth_type == AuthType::Oauth,
    };
    let state = status::state_of(server);
    if lifecycle::next(state, facts, Event::Reached) == state && server.last_error.is_none() {
        return;
    }
    status::update(ctx, server.id.0, Event::Reached, |row| {
        row.last_error = None
    })
    .await;
}

/// Refresh a server whose auth type may not be known yet: ask it first, then list its tools
/// whatever the answer (a server that cannot be asked usually cannot be listed either, and the
/// listing's failure says why in `lastError`).
pub async fn check(ctx: &Context, server: &McpServerRow, holder: Holder) -> Result<usize> {
    if server.auth_type != AuthType::Undetected {
        return refresh(ctx, server, holder).await;
    }
    servers::detect_row(ctx, server).await?;
    let server = servers::load(ctx, server.id.0).await?;
    refresh(ctx, &server, holder).await
}

/// Whether two catalogues list the same tools, in name order, with the same definitions.
fn same_catalogue(a: &[ToolRow], b: &[ToolRow]) -> bool {
    let mut b: Vec<&ToolRow> = b.iter().collect();
    b.sort_by(|x, y| x.name.cmp(&y.name));
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.title == y.title
                && x.description == y.description
                && x.input_schema == y.input_schema
                && x.output_schema == y.output_schema
                && x.annotations == y.annotations
        })
}

/// What `lastError` says about a listing whose duplicate names were dropped.
fn duplicates_note(duplicates: usize) -> String {
    let (count, verb) = if duplicates == 1 {
        ("1 tool".to_owned(), "was")
    } else {
        (format!("{duplicates} tools"), "were")
    };
    format!(
        "the server listed {count} under a name it had already used; {verb} dropped and the \
         first tool of each name was kept"
    )
}

/// Store a listed catalogue and mark the server connected, in one transaction.
///
/// On a per-user server the catalogue is the server's, listed by one member; another member
/// whose listing differs gets a catalogue of their own (which they see instead), and one whose
/// listing is the same again goes back to the server's.
async fn store(
    ctx: &Context,
    server_id: Uuid,
    holder: Holder,
    listing: &Listing,
    success: Event,
) -> Result<()> {
    let now = DbTime(db::now());
    let rows: Vec<ToolRow> = listing
        .tools
        .iter()
        .map(|tool| ToolRow {
            server_id: DbUuid(server_id),
            name: tool.name.clone(),
            title: tool.title.clone(),
            description: tool.description.clone(),
            input_schema: tool.input_schema.to_string(),
            output_schema: tool.output_schema.as_ref().map(ToString::to_string),
            annotations: tool.annotations.as_ref().map(ToString::to_string),
            updated_at: now,
        })
        .collect();
    let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    let note = (listing.duplicates > 0).then(|| duplicates_note(listing.duplicates));
    let fresh_until = listing
        .fresh_for
        .and_then(|fresh| chrono::Duration::from_std(fresh).ok())
        .map(|fresh| DbTime(now.0 + fresh));
    let mut conn = ctx.db.conn().await?;
    let event = transaction!(conn, {
        let member = match holder {
            Holder::User(user) => Some(user),
            Holder::Workspace => None,
        };
        if let Some(user) = member
            && let Some(server) = db::servers::find(&mut conn, server_id).await?
            && server.tools_refreshed_at.is_some()
            && server.tools_listed_by.is_some_and(|by| by.0 != user)
        {
            let shared = db::servers::all_tools(&mut conn, server_id).await?;
            if same_catalogue(&shared, &rows) {
                db::servers::delete_user_tools(&mut conn, server_id, user).await?;
            } else {
                db::servers::replace_user_tools(&mut conn, server_id, user, &rows, now).await?;
            }
            // The server answered; its catalogue stays the one its lister saw.
            let event = status::record_with(&mut conn, server_id, Event::Reached, |row| {
                row.last_connected_at = Some(now);
            })
            .await?;
            return Ok(event);
        }
        if let Some(user) = member {
            db::servers::delete_user_tools(&mut conn, server_id, user).await?;
        }
        db::servers::replace_tools(&mut conn, server_id, &rows).await?;
        let event = status::record_with(&mut conn, server_id, success, |row| {
            row.last_error = note.clone();
            row.last_connected_at = Some(now);
            row.tool_count = count;
            row.tools_refreshed_at = Some(now);
            row.tools_listed_by = member.map(DbUuid);
            row.tools_fresh_until = fresh_until;
        })
        .await?;
        Ok::<_, Error>(event)
    })?;
    if let Some(event) = event {
        ctx.events.publish(event);
    }
    Ok(())
}

/// Record a failed contact in the server's status: an authorization problem asks for
/// authorization (or, for static headers, says they were rejected) and never counts as a
/// failure; a listing over a quota sets its reason and message (the server answered); other
/// failures count, and enough in a row mark the server `ERROR`. An authorization failure of
/// one user's own grant is that user's alone: it is published to them and leaves the
/// server's status as it is.
pub async fn record_failure(ctx: &Context, server_id: Uuid, holder: Holder, error: &Error) {
    let event = match error {
        Error::ReauthRequired { .. }
        | Error::Oauth(
            OauthError::InvalidGrant | OauthError::InvalidClient | OauthError::NotAuthorized,
        ) => Event::AuthorizationNeeded,
        Error::HeadersRejected { .. } => Event::HeadersRejected,
        Error::QuotaExceeded { quota, .. } => Event::QuotaExceeded(*quota),
        _ => Event::Unreachable,
    };
    let message = match event {
        Event::Unreachable | Event::QuotaExceeded(_) | Event::HeadersRejected => {
            Some(safe_text(error))
        }
        _ => None,
    };
    if holder != Holder::Workspace && event == Event::AuthorizationNeeded {
        return status::update_for(ctx, server_id, holder, event).await;
    }
    status::update(ctx, server_id, event, |row| {
        if message.is_some() {
            row.last_error = message;
        }
    })
    .await;
}

/// A message about a failure that is safe to store and show.
fn safe_text(error: &Error) -> String {
    match error {
        Error::Db(_) | Error::Crypto(_) => "internal error".to_owned(),
        other => other.to_string(),
    }
}

/// Map a session error for a server: a 401 means an OAuth server's grant must be renewed, and
/// that any other server rejected its static headers; a 403 `insufficient_scope` means more
/// scopes are needed.
pub fn mcp_error(server: &McpServerRow, error: McpError) -> Error {
    let server_id = server.id.0;
    match error {
        McpError::Unauthorized { .. } if server.auth_type == AuthType::Oauth => {
            Error::ReauthRequired { server_id }
        }
        McpError::Unauthorized { .. } => Error::HeadersRejected { server_id },
        McpError::Forbidden { www_authenticate } => {
            let challenge = challenge::parse(www_authenticate.as_deref());
            if challenge.as_ref().and_then(|c| c.error.as_deref()) == Some("insufficient_scope") {
                Error::InsufficientScope {
                    server_id,
                    scope: challenge.and_then(|c| c.scope),
                }
            } else {
                Error::Upstream("the MCP server refused access".into())
            }
        }
        McpError::Timeout => Error::UpstreamTimeout,
        McpError::Net(net) => Error::Upstream(net.to_string()),
        McpError::TooManyTools { limit } => Error::QuotaExceeded {
            quota: Quota::ToolsPerServer,
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        },
        McpError::CatalogueTooLarge { limit } => Error::QuotaExceeded {
            quota: Quota::CatalogueBytes,
            limit,
        },
        other => Error::Upstream(other.to_string()),
    }
}

/// The server says a call with `holder`'s grant needs more scopes: remember the union on that
/// grant for its next flow and mark it `INSUFFICIENT_SCOPE` (the server's status for the shared
/// grant, the user's own view for theirs).
pub async fn note_insufficient_scope(
    ctx: &Context,
    server_id: Uuid,
    holder: Holder,
    scope: Option<&str>,
) -> Result<()> {
    let mut conn = ctx.db.conn().await?;
    let event = transaction!(conn, {
        if let Some(mut grant) =
            db::oauth::find_grant(&mut conn, server_id, holder.user_id()).await?
        {
            let union = crate::domain::oauth::scope_union([
                crate::domain::oauth::scope_list(grant.requested_scopes.as_deref()).as_slice(),
                crate::domain::oauth::scope_list(grant.granted_scopes.as_deref()).as_slice(),
                crate::domain::oauth::scope_list(scope).as_slice(),
            ]);
            grant.requested_scopes = (!union.is_empty()).then(|| union.join(" "));
            grant.updated_at = DbTime(db::now());
            db::oauth::save_grant(&mut conn, &grant).await?;
        }
        let event = status::record_for(&mut conn, server_id, holder, Event::ScopeNeeded).await?;
        Ok::<_, Error>(event)
    })?;
    if let Some(event) = event {
        ctx.events.publish(event);
    }
    Ok(())
}
