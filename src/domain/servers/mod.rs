//! The lifecycle of a registered MCP server: create, update, delete, read and probe.
//!
//! - [`input`]: what callers give and its validation (names, URLs, timeouts, headers, client
//!   credentials).
//! - [`secrets`]: sealing and opening the header values and the client secret.
//! - [`related`]: what a page of servers needs besides its rows (OAuth views, tools, users).
//!
//! Invariants:
//! - A server is always resolved inside the caller's workspace before anything else happens;
//!   an id from another workspace is `NotFound` and causes no change anywhere.
//! - Header values and the OAuth client secret are sealed with the row id as AAD; only header
//!   names and whether a secret exists leave this module.
//! - A URL is unique per workspace after normalisation (lowercase scheme and host, no
//!   fragment, no trailing slash).
//! - Changing the URL, the client credentials or the auth type resets the status and removes
//!   the OAuth grant and pending flows, through [`invalidate_authorization`] only.
//! - A secret only goes where it was entered for: moving a server to another origin drops its
//!   header values and pre-registered client unless the same change supplies new ones, and a
//!   pre-registered client is bound to the authorization server it is first used with.
//! - No database connection is held while an upstream server answers (revocation, probing).
//! - Every change writes an audit event in the same transaction, and every status change is
//!   published after the commit.

mod input;
mod related;
mod secrets;

use std::collections::{HashMap, HashSet};

use serde_json::json;
use url::Url;
use uuid::Uuid;

use self::input::{
    validate_client_id, validate_client_key, validate_client_secret, validate_description,
    validate_headers, validate_name, validate_retries, validate_timeout,
};
use self::secrets::{header_names_json, seal_headers};
use super::access::{Principal, Role};
use super::lifecycle::{self, Change, Event, Facts};
use super::limits::{Outbound, Quota};
use super::oauth::Holder;
use super::oauth::{probe, revoke};
use super::pagination::{Page, fetch_limit, page_size};
use super::status::{self, Status, StatusEvent, change_event};
use super::{Error, Result, audit, bad_input};
use crate::db::models::{GrantSummary, McpServerRow};
pub use crate::db::projection::{Cell, Column, Columns, ProjectedRow};
use crate::db::sealed;
pub use crate::db::types::CredentialMode;
use crate::db::types::{AuthStatus, ConnectionStatus, StatusReason};
use crate::db::{self, DbConn, DbTime, DbUuid};
use crate::domain::Context;
use crate::transaction;

/// For the property tests of the URL rules.
#[cfg(test)]
pub(crate) use self::input::parse_server_url;
pub use self::input::{
    DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS, HeaderInput, MAX_HEADERS, NewServer, Patch, RETRIES_RANGE,
    ServerChanges, ServerUrl, TIMEOUT_MS_RANGE, normalize_url, validate_url,
};
pub use self::related::{
    OauthView, Related, Wanted, authorizations, oauth_by_ids, oauth_views, own_oauth_by_ids,
    own_tool_pages, related, tool_pages,
};
pub use self::secrets::{header_names, header_names_of, open_headers};

/// The MCP transport a server speaks (defined with the sessions that speak it).
pub use crate::mcp::Transport;

/// How Switchboard authenticates to a server.
pub use crate::db::types::AuthType;

/// Result of [`create`].
#[derive(Clone, Debug)]
pub struct Created {
    /// The stored server.
    pub server: McpServerRow,
    /// The auth type that was given or detected ([`AuthType::Undetected`] when detection
    /// could not tell).
    pub auth_type: AuthType,
    /// What detection found, when the server was asked (`unreachable`,
    /// `unexpected_status_503`, `oauth_challenge`, …).
    pub detection: Option<String>,
}

/// A server visible to the caller, or `None`.
pub async fn get(ctx: &Context, principal: &Principal, id: Uuid) -> Result<Option<McpServerRow>> {
    let mut conn = ctx.db.conn().await?;
    let server = db::servers::find(&mut conn, id).await?;
    Ok(server.filter(|s| principal.role_in(s.workspace_id.0).is_some()))
}

/// A page of a workspace's servers in creation order.
pub async fn page(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    first: Option<i64>,
    after: Option<Uuid>,
) -> Result<Page<McpServerRow>> {
    principal.require(workspace_id, Role::Viewer)?;
    let first = page_size(first)?;
    let mut conn = ctx.db.conn().await?;
    let fetched = db::servers::page(&mut conn, workspace_id, after, fetch_limit(first)).await?;
    Ok(Page::cut(fetched, first))
}

/// [`page`] with the workspace's shared grants of its servers, read together (one trip to a
/// blocking thread on SQLite), for [`related`]. The grants may include one of a server beyond
/// the page; `related` keeps only the page's.
pub async fn page_with_grants(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    first: Option<i64>,
    after: Option<Uuid>,
) -> Result<(Page<McpServerRow>, Vec<GrantSummary>)> {
    principal.require(workspace_id, Role::Viewer)?;
    let first = page_size(first)?;
    let mut conn = ctx.db.conn().await?;
    let (fetched, grants) =
        db::servers::page_with_grants(&mut conn, workspace_id, after, fetch_limit(first)).await?;
    Ok((Page::cut(fetched, first), grants))
}

/// Which servers of a projected page to learn of a pending OAuth flow for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingFlows {
    /// None.
    None,
    /// Those without a shared grant: the ones whose OAuth state exists only if a flow is
    /// pending (as [`oauth_views`] reads them without `in_progress`).
    WithoutGrant,
    /// All of them.
    All,
}

/// What a page read as chosen columns reads: the columns, and which pending flows to learn of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Projection {
    /// The columns.
    pub columns: Columns,
    /// Which servers to learn of a pending flow of the workspace's for; other than
    /// [`PendingFlows::None`], [`Column::HasGrant`] must be among the columns.
    pub flows: PendingFlows,
    /// Whether to learn of the reader's own pending flows on the page's per-user servers;
    /// [`Column::CredentialMode`] must be among the columns.
    pub own_flows: bool,
}

/// A page of servers read as only the columns a caller chose, with the servers that have an
/// OAuth flow pending among those asked about.
#[derive(Debug)]
pub struct ProjectedPage {
    /// The servers.
    pub page: Page<ProjectedRow>,
    /// The columns each row was read with ([`ProjectedRow::cell`]).
    pub columns: Columns,
    /// The servers of the page, among those asked about, with a pending flow.
    pending_flows: HashSet<Uuid>,
    /// The per-user servers of the page the reader has a pending flow of their own on, when
    /// asked.
    own_pending_flows: HashSet<Uuid>,
}

impl ProjectedPage {
    /// The cell of `column` in `row`, when it was read.
    pub fn cell<'r>(&self, row: &'r ProjectedRow, column: Column) -> Option<&'r Cell> {
        row.cell(self.columns, column)
    }

    /// The OAuth state of `row` as [`oauth_views`] has it: `None` for a server with neither a
    /// shared grant nor a pending flow, otherwise whether a flow is pending (known for a
    /// server with a grant only when [`PendingFlows::All`] was asked). Needs
    /// [`Column::HasGrant`].
    pub fn oauth_view(&self, row: &ProjectedRow) -> Option<bool> {
        let has_grant = self.cell(row, Column::HasGrant) == Some(&Cell::Bool(true));
        let pending = self.pending_flows.contains(&row.id);
        (has_grant || pending).then_some(pending)
    }

    /// Whether the reader has a flow of their own pending on `row`'s server (known when
    /// [`Projection::own_flows`] was asked).
    pub fn own_flow_pending(&self, row: &ProjectedRow) -> bool {
        self.own_pending_flows.contains(&row.id)
    }
}

/// [`page`], each server read as only the columns of `projection` (viewer role), the grant
/// columns of the reader's own being the caller's: one statement for the page, and one more
/// for each kind of pending flows asked for when the page has servers to ask about.
pub async fn projected_page(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    first: Option<i64>,
    after: Option<Uuid>,
    projection: Projection,
) -> Result<ProjectedPage> {
    principal.require(workspace_id, Role::Viewer)?;
    let first = page_size(first)?;
    let Projection {
        columns,
        flows,
        own_flows,
    } = projection;
    let reader = principal.user_id;
    let mut conn = ctx.db.conn().await?;
    let fetched = db::projection::page(
        &mut conn,
        workspace_id,
        reader,
        columns,
        after,
        fetch_limit(first),
    )
    .await?;
    let page = Page::cut(fetched, first);
    let asked: Vec<Uuid> = page
        .items
        .iter()
        .filter(|row| match flows {
            PendingFlows::None => false,
            PendingFlows::All => true,
            PendingFlows::WithoutGrant => {
                row.cell(columns, Column::HasGrant) != Some(&Cell::Bool(true))
            }
        })
        .map(|row| row.id)
        .collect();
    let now = DbTime(db::now());
    let mut pending_flows = HashSet::new();
    if !asked.is_empty() {
        pending_flows.extend(db::oauth::servers_with_live_flows(&mut conn, &asked, now).await?);
    }
    let per_user: Vec<Uuid> = page
        .items
        .iter()
        .filter(|row| {
            own_flows
                && row.cell(columns, Column::CredentialMode)
                    == Some(&Cell::CredentialMode(CredentialMode::PerUser))
        })
        .map(|row| row.id)
        .collect();
    let mut own_pending_flows = HashSet::new();
    if !per_user.is_empty() {
        own_pending_flows.extend(
            db::oauth::servers_with_own_live_flows(&mut conn, &per_user, reader, now).await?,
        );
    }
    Ok(ProjectedPage {
        page,
        columns,
        pending_flows,
        own_pending_flows,
    })
}

/// Probe a URL without saving anything (editor role in the workspace).
pub async fn probe(
    ctx: &Context,
    outbound: Outbound<'_>,
    workspace_id: Uuid,
    url: &str,
    transport: Transport,
) -> Result<probe::ProbeResult> {
    outbound.require(workspace_id, Role::Editor)?;
    let target = validate_url(ctx, "url", url).await?;
    Ok(probe::probe(&ctx.http, &target.parsed, transport).await)
}

/// A server by id, `NotFound` when it is gone. No access check: for callers that check it
/// next, or that hold a server already checked and want it as stored now.
pub async fn load(ctx: &Context, id: Uuid) -> Result<McpServerRow> {
    let mut conn = ctx.db.conn().await?;
    db::servers::find(&mut conn, id)
        .await?
        .ok_or(Error::NotFound)
}

/// Servers by id, for the nested fields of objects whose access was checked when they were
/// resolved (one query, whatever the number of ids). Ids not found are absent.
pub async fn by_ids(ctx: &Context, ids: &[Uuid]) -> Result<HashMap<Uuid, McpServerRow>> {
    let mut conn = ctx.db.conn().await?;
    let rows = db::servers::by_ids(&mut conn, ids).await?;
    Ok(rows.into_iter().map(|r| (r.id.0, r)).collect())
}

/// Register a server in a workspace (editor role), within the workspace's server quota.
pub async fn create(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    workspace_id: Uuid,
    input: NewServer,
) -> Result<Created> {
    outbound.require(workspace_id, Role::Editor)?;
    // Checked before the probe so a full workspace sends nothing, and again when inserting.
    {
        let mut conn = ctx.db.conn().await?;
        ensure_server_quota(ctx, &mut conn, workspace_id).await?;
    }

    let name = validate_name(&input.name)?;
    let description = validate_description(input.description.as_deref())?;
    let target = validate_url(ctx, "url", &input.url).await?;
    let timeout_ms = validate_timeout(input.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))?;
    let retries = validate_retries(input.retries.unwrap_or(DEFAULT_RETRIES))?;
    let headers = validate_headers(input.headers.unwrap_or_default())?;
    let client_id = validate_client_id(input.oauth_client_id.as_deref())?;
    let client_secret = validate_client_secret(input.oauth_client_secret)?;
    let client_key = validate_client_key(input.oauth_client_key)?;
    let credential_mode = input.credentials.unwrap_or(CredentialMode::Shared);

    // An explicit auth type always wins. Without one, a pre-registered client id means OAuth,
    // static headers mean header auth, and otherwise the server is asked (one probe).
    let mut transport = input.transport.unwrap_or(Transport::StreamableHttp);
    refuse_undetected(input.auth_type)?;
    let (auth_type, detection) = match input.auth_type {
        Some(auth_type) => (auth_type, None),
        None if client_id.is_some() || credential_mode == CredentialMode::ClientCredentials => {
            (AuthType::Oauth, None)
        }
        None if !headers.is_empty() => (AuthType::Headers, None),
        None => {
            let found = probe::probe(&ctx.http, &target.parsed, transport).await;
            // A server that answered only on HTTP+SSE is registered for it.
            transport = found.transport;
            (found.auth_type, Some(found.reason))
        }
    };

    let id = Uuid::now_v7();
    let row_id = id.to_string();
    let now = db::now();
    let mut row = McpServerRow {
        id: DbUuid(id),
        workspace_id: DbUuid(workspace_id),
        created_by: Some(DbUuid(principal.user_id)),
        name,
        description,
        url: target.url.clone(),
        normalized_url: target.normalized.clone(),
        transport,
        enabled: input.enabled.unwrap_or(true),
        timeout_ms,
        retries,
        auth_type,
        header_names: header_names_json(&headers),
        headers_sealed: seal_headers(ctx, &row_id, &headers),
        oauth_client_id: client_id,
        oauth_client_secret_sealed: client_secret.map(|s| {
            ctx.keys
                .seal_str(s.expose(), sealed::SERVER_CLIENT_SECRET.context(&row_id))
        }),
        connection_status: ConnectionStatus::Disconnected,
        auth_status: AuthStatus::NotRequired,
        status_reason: None,
        last_error: None,
        last_connected_at: None,
        consecutive_failures: 0,
        tool_count: 0,
        tools_refreshed_at: None,
        created_at: DbTime(now),
        updated_at: DbTime(now),
        oauth_lenient_pkce: input.oauth_lenient_pkce.unwrap_or(false),
        health_checked_at: None,
        oauth_client_issuer: None,
        credential_mode,
        tools_listed_by: None,
        protocol_version: None,
        tools_fresh_until: None,
        oauth_client_key_sealed: client_key.map(|key| {
            ctx.keys
                .seal_str(key.expose(), sealed::SERVER_CLIENT_KEY.context(&row_id))
        }),
    };
    check_credential_mode(&row)?;
    let facts = Facts {
        auth_type,
        has_tokens: false,
    };
    let state = lifecycle::next(status::state_of(&row), facts, Event::Created);
    status::apply(&mut row, state);

    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        db::servers::lock_workspace(&mut conn, workspace_id).await?;
        ensure_server_quota(ctx, &mut conn, workspace_id).await?;
        ensure_url_free(&mut conn, workspace_id, &row.normalized_url, None).await?;
        insert_or_conflict(&mut conn, &row).await?;
        audit::record(
            &mut conn,
            workspace_id,
            principal.user_id,
            "mcp_server.create",
            Some(id),
            json!({ "name": row.name, "url": row.url, "authType": auth_type.as_str() }),
        )
        .await?;
        Ok::<_, Error>(())
    })?;
    publish(ctx, change_event(None, &row));
    tracing::info!(mcp_server.id = %id, workspace.id = %workspace_id, auth_type = auth_type.as_str(), "MCP server created");
    let row = connect_machine_client(ctx, row).await?;
    Ok(Created {
        server: row,
        auth_type,
        detection,
    })
}

/// Change a server (editor role). Absent fields stay as they are.
///
/// A change of URL, auth type or client credentials removes the grant and starts the status
/// over; a change of headers on a server that authenticates with them starts it over too. A
/// new URL without an explicit auth type is detected again, as at creation.
pub async fn update(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    id: Uuid,
    changes: ServerChanges,
) -> Result<McpServerRow> {
    let mut conn = ctx.db.conn().await?;
    let current = db::servers::find(&mut conn, id)
        .await?
        .ok_or(Error::NotFound)?;
    let workspace_id = current.workspace_id.0;
    outbound.require(workspace_id, Role::Editor)?;
    drop(conn);

    let row_id = id.to_string();
    let mut next = current.clone();
    let mut fields: Vec<&str> = Vec::new();

    if let Some(name) = changes.name.required("name")? {
        next.name = validate_name(&name)?;
        fields.push("name");
    }
    if let Some(text) = changes.description.optional() {
        next.description = validate_description(text.as_deref())?;
        fields.push("description");
    }
    if let Some(url) = changes.url.required("url")? {
        let target = validate_url(ctx, "url", &url).await?;
        next.url = target.url;
        next.normalized_url = target.normalized;
        fields.push("url");
    }
    // A secret goes only where it was entered for: moving the server to another origin drops
    // the stored header values and the pre-registered client unless this same change supplies
    // new ones.
    if !same_origin(&current.url, &next.url) {
        if changes.headers.is_unchanged() && next.headers_sealed.is_some() {
            next.header_names = header_names_json(&[]);
            next.headers_sealed = None;
            fields.push("headers");
        }
        if changes.oauth_client_id.is_unchanged() && next.oauth_client_id.is_some() {
            next.oauth_client_id = None;
            fields.push("oauthClientId");
        }
        if changes.oauth_client_secret.is_unchanged() && next.oauth_client_secret_sealed.is_some() {
            next.oauth_client_secret_sealed = None;
            fields.push("oauthClientSecret");
        }
        if changes.oauth_client_key.is_unchanged() && next.oauth_client_key_sealed.is_some() {
            next.oauth_client_key_sealed = None;
            fields.push("oauthClientKey");
        }
    }
    if let Some(transport) = changes.transport.required("transport")? {
        next.transport = transport;
        fields.push("transport");
    }
    if let Some(enabled) = changes.enabled.required("enabled")? {
        next.enabled = enabled;
        fields.push("enabled");
    }
    if let Some(ms) = changes.timeout_ms.required("timeoutMs")? {
        next.timeout_ms = validate_timeout(ms)?;
        fields.push("timeoutMs");
    }
    if let Some(n) = changes.retries.required("retries")? {
        next.retries = validate_retries(n)?;
        fields.push("retries");
    }
    let headers_given = !changes.headers.is_unchanged();
    if let Some(headers) = changes.headers.optional() {
        let headers = validate_headers(headers.unwrap_or_default())?;
        next.header_names = header_names_json(&headers);
        next.headers_sealed = seal_headers(ctx, &row_id, &headers);
        fields.push("headers");
    }
    if let Some(client_id) = changes.oauth_client_id.optional() {
        next.oauth_client_id = validate_client_id(client_id.as_deref())?;
        fields.push("oauthClientId");
    }
    let secret_ctx = sealed::SERVER_CLIENT_SECRET.context(&row_id);
    let mut secret_changed = false;
    if let Some(secret) = changes.oauth_client_secret.optional() {
        let new_secret = validate_client_secret(secret)?;
        // A stored secret that no longer opens (lost key) counts as different, so an admin can
        // always overwrite an unusable secret.
        let old_secret = next
            .oauth_client_secret_sealed
            .as_deref()
            .map(|sealed| ctx.keys.open_str(sealed, secret_ctx).ok());
        secret_changed = match (&old_secret, &new_secret) {
            (None, None) => false,
            (Some(Some(old)), Some(new)) => old != new,
            _ => true,
        };
        next.oauth_client_secret_sealed =
            new_secret.map(|s| ctx.keys.seal_str(s.expose(), secret_ctx));
        fields.push("oauthClientSecret");
    }
    if let Some(key) = changes.oauth_client_key.optional() {
        let new_key = validate_client_key(key)?;
        let key_ctx = sealed::SERVER_CLIENT_KEY.context(&row_id);
        // Whether a key was entered is all that is compared: a key given again counts as a
        // change, so the grant it obtained is renewed with it.
        secret_changed |= new_key.is_some() || next.oauth_client_key_sealed.is_some();
        next.oauth_client_key_sealed = new_key.map(|k| ctx.keys.seal_str(k.expose(), key_ctx));
        fields.push("oauthClientKey");
    }
    if let Some(lenient) = changes.oauth_lenient_pkce.required("oauthLenientPkce")? {
        next.oauth_lenient_pkce = lenient;
        fields.push("oauthLenientPkce");
    }
    if let Some(mode) = changes.credentials.required("credentials")? {
        next.credential_mode = mode;
        fields.push("credentials");
    }
    // Another mode holds other grants: the old ones are revoked and removed.
    let mode_changed = next.credential_mode != current.credential_mode;
    let credentials_changed = secret_changed
        || next.oauth_client_id != current.oauth_client_id
        || next.oauth_client_secret_sealed.is_none()
            != current.oauth_client_secret_sealed.is_none();
    let url_changed = next.url != current.url;
    let auth_type = changes.auth_type.required("authType")?;
    refuse_undetected(auth_type)?;
    match auth_type {
        Some(auth_type) => next.auth_type = auth_type,
        // A client id given without an explicit auth type means the caller wants OAuth with
        // that client.
        None if credentials_changed && next.oauth_client_id.is_some() => {
            next.auth_type = AuthType::Oauth;
        }
        // A new address is asked again how it authenticates, unless what it keeps says so.
        None if url_changed && next.oauth_client_id.is_none() && next.header_names == "[]" => {
            let target = parse_server_url_checked(&next.url)?;
            let found = probe::probe(&ctx.http, &target, next.transport).await;
            next.auth_type = found.auth_type;
            next.transport = found.transport;
        }
        None => {}
    }
    if next.auth_type != current.auth_type {
        fields.push("authType");
    }
    check_credential_mode(&next)?;
    if credentials_changed || url_changed {
        // The pre-registered client is bound again at its next use.
        next.oauth_client_issuer = None;
    }
    let change = if url_changed {
        Some(Change::Url)
    } else if credentials_changed || mode_changed {
        Some(Change::Credentials)
    } else if next.auth_type != current.auth_type {
        Some(Change::AuthType)
    } else {
        None
    };
    // New headers on a server that authenticates with them start its status over; an OAuth
    // server's grant is not about its headers.
    let headers_reset = change.is_none() && headers_given && next.auth_type != AuthType::Oauth;
    fields.dedup();

    let previous = Status::of(&current);
    next.updated_at = DbTime(db::now());
    if change.is_some() {
        // Revoke upstream before the grant row goes (the server is known to be the caller's).
        revoke_upstream(ctx, &current).await?;
        ctx.oauth.forget_discovery(id);
        ctx.sessions.forget(id);
    }
    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        if next.normalized_url != current.normalized_url {
            ensure_url_free(&mut conn, workspace_id, &next.normalized_url, Some(id)).await?;
        }
        if let Some(change) = change {
            invalidate_authorization(&mut conn, &mut next, change).await?;
        } else if headers_reset {
            let facts = status::facts(&mut conn, &next).await?;
            let state = lifecycle::next(
                status::state_of(&next),
                facts,
                Event::Changed(Change::Headers),
            );
            status::apply(&mut next, state);
        }
        if next.enabled != current.enabled {
            let facts = status::facts(&mut conn, &next).await?;
            let event = if next.enabled {
                Event::Enabled
            } else {
                Event::Disabled
            };
            let state = lifecycle::next(status::state_of(&next), facts, event);
            status::apply(&mut next, state);
        }
        if url_changed {
            forget_tools(&mut conn, &mut next).await?;
            // Another endpoint may speak another revision: detected afresh.
            next.protocol_version = None;
        }
        match db::servers::save(&mut conn, &next).await {
            Ok(true) => {}
            Ok(false) => return Err(Error::NotFound),
            Err(db::DbError::UniqueViolation) => return Err(url_conflict(None)),
            Err(e) => return Err(e.into()),
        }
        audit::record(
            &mut conn,
            workspace_id,
            principal.user_id,
            "mcp_server.update",
            Some(id),
            json!({ "fields": fields }),
        )
        .await?;
        Ok::<_, Error>(())
    })?;
    if !next.enabled {
        ctx.sessions.forget(id);
    }
    publish(ctx, change_event(Some(&previous), &next));
    tracing::info!(mcp_server.id = %id, workspace.id = %workspace_id, fields = ?fields, "MCP server updated");
    if change.is_some() {
        return connect_machine_client(ctx, next).await;
    }
    Ok(next)
}

/// A server reached with its machine client's credentials needs nobody to authorize it: its
/// first token and its catalogue are fetched at once. A failure is recorded in its status (and
/// the next call or health check tries again); the server as it now stands is returned.
async fn connect_machine_client(ctx: &Context, row: McpServerRow) -> Result<McpServerRow> {
    if row.credential_mode != CredentialMode::ClientCredentials
        || row.auth_type != AuthType::Oauth
        || !row.enabled
    {
        return Ok(row);
    }
    if let Err(error) = crate::domain::mcp::catalogue::refresh(ctx, &row, Holder::Workspace).await {
        tracing::warn!(mcp_server.id = %row.id.0, %error, "the machine client could not connect");
    }
    load(ctx, row.id.0).await
}

/// Ask a server again how it authenticates (editor role; the server must be enabled) and
/// store the answer. A changed auth type starts the status over like any change of auth type;
/// an answer that cannot tell leaves the auth type as it was, unless it was never known.
pub async fn detect(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    id: Uuid,
) -> Result<Detected> {
    let current = load(ctx, id).await?;
    outbound.require(current.workspace_id.0, Role::Editor)?;
    ensure_enabled(&current)?;
    let found = detect_row(ctx, &current).await?;
    let mut conn = ctx.db.conn().await?;
    let server = transaction!(conn, {
        let server = db::servers::find(&mut conn, id)
            .await?
            .ok_or(Error::NotFound)?;
        audit::record(
            &mut conn,
            server.workspace_id.0,
            principal.user_id,
            "mcp_server.detect",
            Some(id),
            json!({ "authType": server.auth_type.as_str(), "detection": found.reason }),
        )
        .await?;
        Ok::<_, Error>(server)
    })?;
    Ok(Detected {
        server,
        detection: found.reason,
    })
}

/// Result of [`detect`].
#[derive(Clone, Debug)]
pub struct Detected {
    /// The server as stored after detection.
    pub server: McpServerRow,
    /// What detection found.
    pub detection: String,
}

/// Probe a stored server and record what was found: a new auth type starts the status over
/// (revoking and removing any grant), the same one or no answer only moves the status.
/// The caller has checked access.
pub(crate) async fn detect_row(
    ctx: &Context,
    current: &McpServerRow,
) -> Result<probe::ProbeResult> {
    let id = current.id.0;
    let target = parse_server_url_checked(&current.url)?;
    let found = probe::probe(&ctx.http, &target, current.transport).await;
    let detected = found.auth_type != AuthType::Undetected;
    let changed = detected && found.auth_type != current.auth_type;
    if changed {
        revoke_upstream(ctx, current).await?;
        ctx.oauth.forget_discovery(id);
        ctx.sessions.forget(id);
    }
    let mut conn = ctx.db.conn().await?;
    let event = transaction!(conn, {
        let Some(mut row) = db::servers::find(&mut conn, id).await? else {
            return Err(Error::NotFound);
        };
        let previous = Status::of(&row);
        if changed {
            row.auth_type = found.auth_type;
            invalidate_authorization(&mut conn, &mut row, Change::AuthType).await?;
        }
        // A server that answered only on HTTP+SSE is asked there from now on.
        row.transport = found.transport;
        let event = if detected {
            Event::Detected
        } else {
            Event::DetectionFailed
        };
        // A detection that confirms a known auth type changes nothing a user would see.
        if changed || current.auth_type == AuthType::Undetected {
            let facts = status::facts(&mut conn, &row).await?;
            let state = lifecycle::next(status::state_of(&row), facts, event);
            status::apply(&mut row, state);
        }
        row.updated_at = DbTime(db::now());
        db::servers::save(&mut conn, &row).await?;
        Ok::<_, Error>(change_event(Some(&previous), &row))
    })?;
    publish(ctx, event);
    Ok(found)
}

/// `ServerDisabled` unless the server is enabled: every outbound action on a server checks
/// this first, so a disabled server refuses them all the same way.
pub fn ensure_enabled(server: &McpServerRow) -> Result<()> {
    if server.enabled {
        Ok(())
    } else {
        Err(Error::ServerDisabled {
            server_id: server.id.0,
        })
    }
}

/// `UNDETECTED` is what detection says, never a choice.
fn refuse_undetected(auth_type: Option<AuthType>) -> Result<()> {
    if auth_type == Some(AuthType::Undetected) {
        return Err(bad_input(
            "authType",
            "UNDETECTED cannot be set; leave the auth type out to detect it",
        ));
    }
    Ok(())
}

/// A stored URL, parsed (it was validated when stored).
fn parse_server_url_checked(url: &str) -> Result<Url> {
    Url::parse(url).map_err(|_| bad_input("url", "the stored URL cannot be parsed"))
}

/// Delete a server (admin role). The grant, pending flows and the tool catalogue go with it.
pub async fn delete(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    id: Uuid,
) -> Result<Uuid> {
    let server = load(ctx, id).await?;
    let workspace_id = server.workspace_id.0;
    outbound.require(workspace_id, Role::Admin)?;
    // Revoke upstream only now that the server is known to be the caller's.
    revoke_upstream(ctx, &server).await?;
    ctx.oauth.forget_discovery(id);
    ctx.sessions.forget(id);
    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        if !db::servers::delete(&mut conn, id, workspace_id).await? {
            return Err(Error::NotFound);
        }
        audit::record(
            &mut conn,
            workspace_id,
            principal.user_id,
            "mcp_server.delete",
            Some(id),
            json!({ "name": server.name, "url": server.url }),
        )
        .await?;
        Ok::<_, Error>(())
    })?;
    // Dashboards drop the server on this event: its reason is `deleted` and its `server` null.
    let last = Status::of(&server);
    publish(
        ctx,
        Some(StatusEvent {
            workspace_id,
            server_id: id,
            previous: Some(last),
            current: Status {
                reason: Some(StatusReason::Deleted),
                ..last
            },
            at: db::now(),
            user_id: None,
        }),
    );
    tracing::info!(mcp_server.id = %id, workspace.id = %workspace_id, "MCP server deleted");
    Ok(id)
}

/// Revoke every grant of a server at its authorization server (best effort). Call only after
/// the server was found inside the caller's workspace. No connection is held while the
/// authorization server answers.
async fn revoke_upstream(ctx: &Context, server: &McpServerRow) -> Result<()> {
    let grants = {
        let mut conn = ctx.db.conn().await?;
        db::oauth::grants_of_server(&mut conn, server.id.0).await?
    };
    for grant in grants {
        revoke::revoke_grant(ctx, server, &grant).await;
    }
    Ok(())
}

/// Per-user credentials are OAuth grants: a server that authenticates otherwise cannot have
/// them. (A server whose auth type is not known yet may: they apply once it is found to use
/// OAuth.)
fn check_credential_mode(row: &McpServerRow) -> Result<()> {
    let oauth = !matches!(row.auth_type, AuthType::None | AuthType::Headers);
    match row.credential_mode {
        CredentialMode::PerUser if !oauth => Err(bad_input(
            "credentials",
            "per-user credentials need a server that uses OAuth",
        )),
        CredentialMode::ClientCredentials if !oauth => Err(bad_input(
            "credentials",
            "client credentials need a server that uses OAuth",
        )),
        CredentialMode::ClientCredentials if row.oauth_client_id.is_none() => Err(bad_input(
            "oauthClientId",
            "client credentials need the machine client's id",
        )),
        CredentialMode::ClientCredentials
            if row.oauth_client_secret_sealed.is_none()
                && row.oauth_client_key_sealed.is_none() =>
        {
            Err(bad_input(
                "oauthClientSecret",
                "client credentials need the client's secret or private key (oauthClientKey)",
            ))
        }
        _ => Ok(()),
    }
}

/// The holder of the grant a call by `user_id` uses on this server: the user's own on a
/// per-user server, the workspace's otherwise.
pub fn holder(server: &McpServerRow, user_id: Uuid) -> Holder {
    match server.credential_mode {
        CredentialMode::PerUser => Holder::User(user_id),
        CredentialMode::Shared | CredentialMode::ClientCredentials => Holder::Workspace,
    }
}

/// The role needed to authorize, refresh or disconnect with the grant a caller uses on this
/// server: any member for their own on a per-user server, an editor for what the workspace
/// shares.
pub fn own_grant_role(server: &McpServerRow) -> Role {
    match server.credential_mode {
        CredentialMode::PerUser => Role::Viewer,
        CredentialMode::Shared | CredentialMode::ClientCredentials => Role::Editor,
    }
}

/// Whether two stored URLs share scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// The one place a server's authorization is invalidated: its OAuth grants, client
/// registrations and pending flows are removed and its status starts over as `change` says. Runs inside the caller's
/// transaction; the caller saves `row`.
pub async fn invalidate_authorization(
    conn: &mut DbConn,
    row: &mut McpServerRow,
    change: Change,
) -> Result<()> {
    db::oauth::delete_grants_of_server(conn, row.id.0).await?;
    db::oauth::delete_registrations_of_server(conn, row.id.0).await?;
    db::oauth::delete_flows_of_server(conn, row.id.0).await?;
    let facts = Facts {
        auth_type: row.auth_type,
        has_tokens: false,
    };
    let state = lifecycle::next(status::state_of(row), facts, Event::Changed(change));
    status::apply(row, state);
    row.last_connected_at = None;
    row.last_error = None;
    Ok(())
}

/// Drop the stored tool catalogue (it described another endpoint).
async fn forget_tools(conn: &mut DbConn, row: &mut McpServerRow) -> Result<()> {
    db::servers::delete_tools(conn, row.id.0).await?;
    db::servers::delete_all_user_tools(conn, row.id.0).await?;
    row.tool_count = 0;
    row.tools_refreshed_at = None;
    row.tools_listed_by = None;
    row.tools_fresh_until = None;
    Ok(())
}

fn publish(ctx: &Context, event: Option<StatusEvent>) {
    if let Some(event) = event {
        ctx.events.publish(event);
    }
}

/// `QuotaExceeded` when the workspace has as many servers as it may have.
async fn ensure_server_quota(ctx: &Context, conn: &mut DbConn, workspace_id: Uuid) -> Result<()> {
    let limit = ctx.limits.servers_per_workspace;
    let count = db::servers::count_in_workspace(conn, workspace_id).await?;
    if count >= i64::from(limit) {
        return Err(Error::QuotaExceeded {
            quota: Quota::ServersPerWorkspace,
            limit: u64::from(limit),
        });
    }
    Ok(())
}

async fn ensure_url_free(
    conn: &mut DbConn,
    workspace_id: Uuid,
    normalized: &str,
    except: Option<Uuid>,
) -> Result<()> {
    if let Some(existing) =
        db::servers::find_by_normalized_url(conn, workspace_id, normalized).await?
        && Some(existing.id.0) != except
    {
        return Err(url_conflict(Some(existing.id.0)));
    }
    Ok(())
}

async fn insert_or_conflict(conn: &mut DbConn, row: &McpServerRow) -> Result<()> {
    match db::servers::insert(conn, row).await {
        Ok(()) => Ok(()),
        Err(db::DbError::UniqueViolation) => Err(url_conflict(None)),
        Err(e) => Err(e.into()),
    }
}

fn url_conflict(existing_id: Option<Uuid>) -> Error {
    Error::Conflict {
        message: "a server with this URL is already registered in this workspace".into(),
        existing_id,
    }
}
