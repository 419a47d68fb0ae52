//! The lifecycle of a registered MCP server: create, update, delete, read.
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

use std::collections::HashMap;

use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::access::{Principal, Role};
use super::limits::{Outbound, Quota};
use super::oauth::{probe, revoke};
use super::status::{Status, StatusEvent, change_event};
use super::{Error, Result, audit, bad_input};
use crate::crypto::Secret;
use crate::db::models::{GrantSummary, McpServerRow, ToolRow, UserRow};
use crate::db::sealed;
use crate::db::{self, DbConn, DbTime, DbUuid};
use crate::domain::Context;
use crate::mcp::RESERVED_HEADERS;
use crate::net::{self, NetError};
use crate::transaction;

/// The MCP transport a server speaks (defined with the sessions that speak it).
pub use crate::mcp::Transport;

/// How Switchboard authenticates to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthType {
    /// No authentication.
    None,
    /// Static headers only.
    Headers,
    /// OAuth 2.1 (static headers are still sent, but never override `Authorization`).
    Oauth,
}

impl AuthType {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::None => "none",
            AuthType::Headers => "headers",
            AuthType::Oauth => "oauth",
        }
    }

    /// Parse the stored form; unknown text reads as `Headers` (the conservative choice).
    pub fn parse(text: &str) -> AuthType {
        match text {
            "none" => AuthType::None,
            "oauth" => AuthType::Oauth,
            _ => AuthType::Headers,
        }
    }
}

/// A change to one field of an update: absent leaves it, `Clear` empties it.
#[derive(Clone, Debug, Default)]
pub enum Patch<T> {
    /// Field absent: unchanged.
    #[default]
    Unchanged,
    /// `null` (or `""` where that means empty): clear it.
    Clear,
    /// A new value.
    Set(T),
}

/// A static header as given by the caller.
#[derive(Clone, Debug)]
pub struct HeaderInput {
    /// Header name.
    pub name: String,
    /// Header value (sealed at rest, never returned).
    pub value: Secret,
}

/// Input of [`create`].
#[derive(Clone, Debug, Default)]
pub struct NewServer {
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// MCP endpoint.
    pub url: String,
    /// Transport (default Streamable HTTP).
    pub transport: Option<Transport>,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// Request timeout in milliseconds.
    pub timeout_ms: Option<i32>,
    /// Connection retries.
    pub retries: Option<i32>,
    /// Explicit auth type; when absent it is inferred.
    pub auth_type: Option<AuthType>,
    /// Static headers.
    pub headers: Option<Vec<HeaderInput>>,
    /// Pre-registered OAuth client id (`""` means none).
    pub oauth_client_id: Option<String>,
    /// Pre-registered OAuth client secret (`""` means none).
    pub oauth_client_secret: Option<Secret>,
    /// Accept an authorization server that omits `code_challenge_methods_supported`.
    pub oauth_lenient_pkce: Option<bool>,
}

/// Input of [`update`]: every field optional.
#[derive(Clone, Debug, Default)]
pub struct ServerChanges {
    /// Display name.
    pub name: Patch<String>,
    /// Free text.
    pub description: Patch<String>,
    /// MCP endpoint.
    pub url: Patch<String>,
    /// Transport.
    pub transport: Patch<Transport>,
    /// Enabled.
    pub enabled: Patch<bool>,
    /// Request timeout in milliseconds.
    pub timeout_ms: Patch<i32>,
    /// Connection retries.
    pub retries: Patch<i32>,
    /// Auth type.
    pub auth_type: Patch<AuthType>,
    /// Static headers (`Clear` or an empty list removes them all).
    pub headers: Patch<Vec<HeaderInput>>,
    /// Pre-registered OAuth client id.
    pub oauth_client_id: Patch<String>,
    /// Pre-registered OAuth client secret.
    pub oauth_client_secret: Patch<Secret>,
    /// Accept an authorization server that omits `code_challenge_methods_supported`.
    pub oauth_lenient_pkce: Patch<bool>,
}

/// Result of [`create`].
#[derive(Clone, Debug)]
pub struct Created {
    /// The stored server.
    pub server: McpServerRow,
    /// The auth type that was given or detected.
    pub auth_type: AuthType,
}

/// A page of servers, or of a server's tools.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether more follow.
    pub has_next: bool,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            items: Vec::new(),
            has_next: false,
        }
    }
}

/// Default request timeout.
pub const DEFAULT_TIMEOUT_MS: i32 = 30_000;
/// Accepted request timeouts.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<i32> = 1_000..=300_000;
/// Default retries.
pub const DEFAULT_RETRIES: i32 = 3;
/// Accepted retries.
pub const RETRIES_RANGE: std::ops::RangeInclusive<i32> = 0..=10;
/// Most static headers per server.
pub const MAX_HEADERS: usize = 32;
/// Page size when `first` is absent, and the largest page.
pub const DEFAULT_PAGE: i64 = 20;
/// Largest page.
pub const MAX_PAGE: i64 = 100;

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
    let mut items = db::servers::page(&mut conn, workspace_id, after, first + 1).await?;
    let has_next = items.len() as i64 > first;
    items.truncate(usize::try_from(first).unwrap_or(0));
    Ok(Page { items, has_next })
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

/// Servers by id, for the nested fields of objects whose access was checked when they were
/// resolved (one query, whatever the number of ids). Ids not found are absent.
pub async fn by_ids(ctx: &Context, ids: &[Uuid]) -> Result<HashMap<Uuid, McpServerRow>> {
    let mut conn = ctx.db.conn().await?;
    let rows = db::servers::by_ids(&mut conn, ids).await?;
    Ok(rows.into_iter().map(|r| (r.id.0, r)).collect())
}

/// The OAuth state (grant and pending flow) of servers already access-checked, by server id;
/// servers with neither are absent. Two queries, whatever the number of ids.
pub async fn oauth_by_ids(ctx: &Context, ids: &[Uuid]) -> Result<HashMap<Uuid, OauthView>> {
    let mut conn = ctx.db.conn().await?;
    Ok(oauth_views(&mut conn, ids, true).await?)
}

/// Which related rows a page of servers needs (the API asks only for what the query selects).
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    /// The OAuth grants.
    pub grants: bool,
    /// The pages of the tool catalogues, one entry per distinct page the query asks for.
    pub tools: Vec<ToolsPage>,
    /// The creators, and the users who authorized the grants.
    pub users: bool,
}

/// Rows related to a set of servers, each kind loaded with one query. `None` (or a missing
/// page) means that kind was not loaded, as opposed to loaded and absent.
#[derive(Debug, Default)]
pub struct Related {
    /// OAuth state (grant and pending flow) by server id; servers with neither are absent.
    pub grants: Option<HashMap<Uuid, OauthView>>,
    /// Pages of tools by page asked for, then by server id.
    pub tools: HashMap<ToolsPage, HashMap<Uuid, Page<ToolRow>>>,
    /// Creators and grant authorizers by user id.
    pub users: Option<HashMap<Uuid, UserRow>>,
}

/// Load what `wanted` asks for about `rows` (already access-checked): one query per kind and
/// per distinct tools page, whatever the number of servers.
pub async fn related(ctx: &Context, rows: &[McpServerRow], wanted: Wanted) -> Result<Related> {
    let mut related = Related::default();
    if rows.is_empty() || !(wanted.grants || !wanted.tools.is_empty() || wanted.users) {
        return Ok(related);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id.0).collect();
    let mut conn = ctx.db.conn().await?;
    if wanted.grants || wanted.users {
        related.grants = Some(oauth_views(&mut conn, &ids, wanted.grants).await?);
    }
    for page in wanted.tools {
        if let std::collections::hash_map::Entry::Vacant(slot) = related.tools.entry(page) {
            let pages = load_tool_pages(&mut conn, &ids, slot.key()).await?;
            slot.insert(pages);
        }
    }
    if wanted.users {
        let mut user_ids: Vec<Uuid> = rows
            .iter()
            .filter_map(|r| r.created_by.map(|u| u.0))
            .collect();
        if let Some(grants) = &related.grants {
            user_ids.extend(
                grants
                    .values()
                    .filter_map(|v| v.grant.as_ref()?.authorized_by.map(|u| u.0)),
            );
        }
        user_ids.sort_unstable();
        user_ids.dedup();
        let users = db::access::users_by_ids(&mut conn, &user_ids).await?;
        related.users = Some(users.into_iter().map(|u| (u.id.0, u)).collect());
    }
    Ok(related)
}

/// What the API shows of a server's OAuth state: the grant's summary, if there is a grant, and
/// whether someone's flow is pending.
#[derive(Clone, Debug, Default)]
pub struct OauthView {
    /// The grant, without any of its sealed values.
    pub grant: Option<GrantSummary>,
    /// Whether a flow started in the last ten minutes has not completed.
    pub flow_in_progress: bool,
}

/// The OAuth state of these servers: one query for the grants and, when `flows` is asked,
/// one for the pending flows. Servers with neither are absent from the map.
pub async fn oauth_views(
    conn: &mut DbConn,
    ids: &[Uuid],
    flows: bool,
) -> std::result::Result<HashMap<Uuid, OauthView>, db::DbError> {
    let mut views: HashMap<Uuid, OauthView> = db::oauth::grants_by_server_ids(conn, ids)
        .await?
        .into_iter()
        .map(|g| {
            (
                g.server_id.0,
                OauthView {
                    grant: Some(g),
                    flow_in_progress: false,
                },
            )
        })
        .collect();
    if flows {
        for id in db::oauth::servers_with_live_flows(conn, ids, DbTime(db::now())).await? {
            views.entry(id).or_default().flow_in_progress = true;
        }
    }
    Ok(views)
}

/// Tools per page when `first` is absent.
pub const DEFAULT_TOOLS_PAGE: i64 = 50;
/// Largest page of tools.
pub const MAX_TOOLS_PAGE: i64 = 100;

/// A page of a server's tools in name order: `first` tools, after the tool named `after`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ToolsPage {
    /// How many tools.
    pub first: i64,
    /// The name of the last tool of the previous page (the cursor).
    pub after: Option<String>,
}

impl ToolsPage {
    /// Validate the page a caller asks for.
    pub fn new(first: Option<i64>, after: Option<String>) -> Result<ToolsPage> {
        let first = match first {
            None => DEFAULT_TOOLS_PAGE,
            Some(n) if (0..=MAX_TOOLS_PAGE).contains(&n) => n,
            Some(_) => {
                return Err(bad_input(
                    "first",
                    format!("must be between 0 and {MAX_TOOLS_PAGE}"),
                ));
            }
        };
        Ok(ToolsPage { first, after })
    }
}

/// One page of tools of each of these servers (already access-checked), in one query.
pub async fn tool_pages(
    ctx: &Context,
    server_ids: &[Uuid],
    page: &ToolsPage,
) -> Result<HashMap<Uuid, Page<ToolRow>>> {
    let mut conn = ctx.db.conn().await?;
    load_tool_pages(&mut conn, server_ids, page).await
}

async fn load_tool_pages(
    conn: &mut DbConn,
    server_ids: &[Uuid],
    page: &ToolsPage,
) -> Result<HashMap<Uuid, Page<ToolRow>>> {
    let mut pages: HashMap<Uuid, Page<ToolRow>> =
        server_ids.iter().map(|id| (*id, Page::default())).collect();
    if server_ids.is_empty() {
        return Ok(pages);
    }
    // One more than asked tells whether another page follows.
    let rows = db::servers::tool_pages(
        conn,
        server_ids,
        page.after.as_deref(),
        page.first.saturating_add(1),
    )
    .await?;
    let first = usize::try_from(page.first).unwrap_or(usize::MAX);
    for row in rows {
        if let Some(server) = pages.get_mut(&row.server_id.0) {
            if server.items.len() < first {
                server.items.push(row);
            } else {
                server.has_next = true;
            }
        }
    }
    Ok(pages)
}

/// Validate a requested page size.
pub fn page_size(first: Option<i64>) -> Result<i64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (0..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(bad_input(
            "first",
            format!("must be between 0 and {MAX_PAGE}"),
        )),
    }
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

    // An explicit auth type always wins. Without one, a pre-registered client id means OAuth,
    // static headers mean header auth, and otherwise the server is asked (one probe).
    let auth_type = match input.auth_type {
        Some(auth_type) => auth_type,
        None if client_id.is_some() => AuthType::Oauth,
        None if !headers.is_empty() => AuthType::Headers,
        None => {
            let transport = input.transport.unwrap_or(Transport::StreamableHttp);
            probe::probe(&ctx.http, &target.parsed, transport)
                .await
                .auth_type
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
        transport: input
            .transport
            .unwrap_or(Transport::StreamableHttp)
            .as_str()
            .to_owned(),
        enabled: input.enabled.unwrap_or(true),
        timeout_ms,
        retries,
        auth_type: auth_type.as_str().to_owned(),
        header_names: header_names_json(&headers),
        headers_sealed: seal_headers(ctx, &row_id, &headers),
        oauth_client_id: client_id,
        oauth_client_secret_sealed: client_secret.map(|s| {
            ctx.keys
                .seal_str(s.expose(), sealed::SERVER_CLIENT_SECRET.context(&row_id))
        }),
        connection_status: String::new(),
        auth_status: String::new(),
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
    };
    Status::initial(auth_type == AuthType::Oauth, "created").apply_to(&mut row);

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
    Ok(Created {
        server: row,
        auth_type,
    })
}

/// Change a server (editor role). Absent fields stay as they are.
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

    match changes.name {
        Patch::Unchanged => {}
        Patch::Clear => return Err(bad_input("name", "cannot be null")),
        Patch::Set(name) => {
            next.name = validate_name(&name)?;
            fields.push("name");
        }
    }
    match changes.description {
        Patch::Unchanged => {}
        Patch::Clear => {
            next.description = None;
            fields.push("description");
        }
        Patch::Set(text) => {
            next.description = validate_description(Some(&text))?;
            fields.push("description");
        }
    }
    match changes.url {
        Patch::Unchanged => {}
        Patch::Clear => return Err(bad_input("url", "cannot be null")),
        Patch::Set(url) => {
            let target = validate_url(ctx, "url", &url).await?;
            next.url = target.url;
            next.normalized_url = target.normalized;
            fields.push("url");
        }
    }
    // A secret goes only where it was entered for: moving the server to another origin drops
    // the stored header values and the pre-registered client unless this same change supplies
    // new ones.
    if !same_origin(&current.url, &next.url) {
        if matches!(changes.headers, Patch::Unchanged) && next.headers_sealed.is_some() {
            next.header_names = header_names_json(&[]);
            next.headers_sealed = None;
            fields.push("headers");
        }
        if matches!(changes.oauth_client_id, Patch::Unchanged) && next.oauth_client_id.is_some() {
            next.oauth_client_id = None;
            fields.push("oauthClientId");
        }
        if matches!(changes.oauth_client_secret, Patch::Unchanged)
            && next.oauth_client_secret_sealed.is_some()
        {
            next.oauth_client_secret_sealed = None;
            fields.push("oauthClientSecret");
        }
    }
    match changes.transport {
        Patch::Unchanged => {}
        Patch::Clear => return Err(bad_input("transport", "cannot be null")),
        Patch::Set(transport) => {
            next.transport = transport.as_str().to_owned();
            fields.push("transport");
        }
    }
    match changes.enabled {
        Patch::Unchanged => {}
        Patch::Clear => return Err(bad_input("enabled", "cannot be null")),
        Patch::Set(enabled) => {
            next.enabled = enabled;
            fields.push("enabled");
        }
    }
    match changes.timeout_ms {
        Patch::Unchanged => {}
        Patch::Clear => return Err(bad_input("timeoutMs", "cannot be null")),
        Patch::Set(ms) => {
            next.timeout_ms = validate_timeout(ms)?;
            fields.push("timeoutMs");
        }
    }
    match changes.retries {
        Patch::Unchanged => {}
        Patch::Clear => return Err(bad_input("retries", "cannot be null")),
        Patch::Set(n) => {
            next.retries = validate_retries(n)?;
            fields.push("retries");
        }
    }
    match changes.headers {
        Patch::Unchanged => {}
        Patch::Clear => {
            next.header_names = header_names_json(&[]);
            next.headers_sealed = None;
            fields.push("headers");
        }
        Patch::Set(headers) => {
            let headers = validate_headers(headers)?;
            next.header_names = header_names_json(&headers);
            next.headers_sealed = seal_headers(ctx, &row_id, &headers);
            fields.push("headers");
        }
    }
    let mut credentials_changed = false;
    match changes.oauth_client_id {
        Patch::Unchanged => {}
        Patch::Clear => {
            credentials_changed |= next.oauth_client_id.is_some();
            next.oauth_client_id = None;
            fields.push("oauthClientId");
        }
        Patch::Set(client_id) => {
            let client_id = validate_client_id(Some(&client_id))?;
            credentials_changed |= client_id != next.oauth_client_id;
            next.oauth_client_id = client_id;
            fields.push("oauthClientId");
        }
    }
    let secret_ctx = sealed::SERVER_CLIENT_SECRET.context(&row_id);
    let new_secret = match changes.oauth_client_secret {
        Patch::Unchanged => None,
        Patch::Clear => Some(None),
        Patch::Set(secret) => Some(validate_client_secret(Some(secret))?),
    };
    if let Some(new_secret) = new_secret {
        // A stored secret that no longer opens (lost key) counts as different, so an admin can
        // always overwrite an unusable secret.
        let old_secret = next
            .oauth_client_secret_sealed
            .as_deref()
            .map(|sealed| ctx.keys.open_str(sealed, secret_ctx).ok());
        let same = match (&old_secret, &new_secret) {
            (None, None) => true,
            (Some(Some(old)), Some(new)) => old == new,
            _ => false,
        };
        credentials_changed |= !same;
        next.oauth_client_secret_sealed =
            new_secret.map(|s| ctx.keys.seal_str(s.expose(), secret_ctx));
        fields.push("oauthClientSecret");
    }
    match changes.oauth_lenient_pkce {
        Patch::Unchanged => {}
        Patch::Clear => return Err(bad_input("oauthLenientPkce", "cannot be null")),
        Patch::Set(lenient) => {
            next.oauth_lenient_pkce = lenient;
            fields.push("oauthLenientPkce");
        }
    }
    match changes.auth_type {
        Patch::Unchanged => {
            // A client id given on a non-OAuth server without an explicit auth type means the
            // caller wants OAuth with that client.
            if credentials_changed
                && next.oauth_client_id.is_some()
                && next.auth_type != AuthType::Oauth.as_str()
            {
                next.auth_type = AuthType::Oauth.as_str().to_owned();
                fields.push("authType");
            }
        }
        Patch::Clear => return Err(bad_input("authType", "cannot be null")),
        Patch::Set(auth_type) => {
            next.auth_type = auth_type.as_str().to_owned();
            fields.push("authType");
        }
    }

    let credentials_changed = credentials_changed
        || next.oauth_client_id != current.oauth_client_id
        || next.oauth_client_secret_sealed.is_none()
            != current.oauth_client_secret_sealed.is_none();
    if credentials_changed || next.url != current.url {
        // The pre-registered client is bound again at its next use.
        next.oauth_client_issuer = None;
    }
    let url_changed = next.url != current.url;
    let auth_type_changed = next.auth_type != current.auth_type;
    let reason = if url_changed {
        Some("url_changed")
    } else if credentials_changed {
        Some("credentials_changed")
    } else if auth_type_changed {
        Some("auth_type_changed")
    } else {
        None
    };

    let previous = Status::of(&current);
    next.updated_at = DbTime(db::now());
    if reason.is_some() {
        // Revoke upstream before the grant row goes (the server is known to be the caller's).
        revoke_upstream(ctx, &current).await?;
        ctx.oauth.forget_discovery(id);
    }
    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        if next.normalized_url != current.normalized_url {
            ensure_url_free(&mut conn, workspace_id, &next.normalized_url, Some(id)).await?;
        }
        if let Some(reason) = reason {
            invalidate_authorization(&mut conn, &mut next, reason).await?;
        }
        if url_changed {
            forget_tools(&mut conn, &mut next).await?;
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
    publish(ctx, change_event(Some(&previous), &next));
    tracing::info!(mcp_server.id = %id, workspace.id = %workspace_id, fields = ?fields, "MCP server updated");
    Ok(next)
}

/// Delete a server (admin role). The grant, pending flows and the tool catalogue go with it.
pub async fn delete(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    id: Uuid,
) -> Result<Uuid> {
    let server = {
        let mut conn = ctx.db.conn().await?;
        db::servers::find(&mut conn, id)
            .await?
            .ok_or(Error::NotFound)?
    };
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
            previous: Some(last.clone()),
            current: Status {
                reason: Some("deleted".to_owned()),
                ..last
            },
            at: db::now(),
        }),
    );
    tracing::info!(mcp_server.id = %id, workspace.id = %workspace_id, "MCP server deleted");
    Ok(id)
}

/// Revoke a server's grant at its authorization server (best effort). Call only after the
/// server was found inside the caller's workspace. No connection is held while the
/// authorization server answers.
async fn revoke_upstream(ctx: &Context, server: &McpServerRow) -> Result<()> {
    let grant = {
        let mut conn = ctx.db.conn().await?;
        db::oauth::find_grant(&mut conn, server.id.0).await?
    };
    if let Some(grant) = grant {
        revoke::revoke_grant(ctx, server, &grant).await;
    }
    Ok(())
}

/// Whether two stored URLs share scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// The one place a server's authorization is invalidated: its OAuth grant is removed and its
/// status reset to what a never-contacted server of its auth type has. Runs inside the
/// caller's transaction; the caller saves `row`.
pub async fn invalidate_authorization(
    conn: &mut DbConn,
    row: &mut McpServerRow,
    reason: &str,
) -> Result<()> {
    db::oauth::delete_grant(conn, row.id.0).await?;
    db::oauth::delete_flows_of_server(conn, row.id.0).await?;
    Status::initial(AuthType::parse(&row.auth_type) == AuthType::Oauth, reason).apply_to(row);
    row.last_connected_at = None;
    row.last_error = None;
    row.consecutive_failures = 0;
    Ok(())
}

/// Drop the stored tool catalogue (it described another endpoint).
async fn forget_tools(conn: &mut DbConn, row: &mut McpServerRow) -> Result<()> {
    db::servers::delete_tools(conn, row.id.0).await?;
    row.tool_count = 0;
    row.tools_refreshed_at = None;
    Ok(())
}

/// Header names of a server, in the order they were given.
pub fn header_names(row: &McpServerRow) -> Vec<String> {
    serde_json::from_str(&row.header_names).unwrap_or_default()
}

/// The static headers of a server, opened. A value that no longer opens (lost key) is
/// reported as a crypto error; callers decide whether that means "ask again".
pub fn open_headers(ctx: &Context, row: &McpServerRow) -> Result<Vec<(String, Secret)>> {
    let Some(sealed) = &row.headers_sealed else {
        return Ok(Vec::new());
    };
    let row_id = row.id.0.to_string();
    let json = ctx
        .keys
        .open_str(sealed, sealed::SERVER_HEADERS.context(&row_id))?;
    let pairs: Vec<(String, String)> =
        serde_json::from_str(json.expose()).map_err(|_| crate::crypto::CryptoError::Malformed)?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| (name, Secret::new(value)))
        .collect())
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

fn header_names_json(headers: &[(String, Secret)]) -> String {
    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

fn seal_headers(ctx: &Context, row_id: &str, headers: &[(String, Secret)]) -> Option<String> {
    if headers.is_empty() {
        return None;
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    let json = serde_json::to_string(&pairs).ok()?;
    Some(
        ctx.keys
            .seal_str(&json, sealed::SERVER_HEADERS.context(row_id)),
    )
}

/// A validated server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// As stored: the caller's text, trimmed, without fragment.
    pub url: String,
    /// The form compared for uniqueness.
    pub normalized: String,
    /// Parsed.
    pub parsed: Url,
}

/// Validate a server URL and check it against the outbound rules (resolving the host).
pub async fn validate_url(ctx: &Context, field: &str, raw: &str) -> Result<ServerUrl> {
    let parsed = parse_server_url(field, raw)?;
    net::check_url(&parsed, ctx.http.policy())
        .await
        .map_err(|e| url_error(field, e))?;
    let url = raw.trim().split('#').next().unwrap_or_default().to_owned();
    Ok(ServerUrl {
        url,
        normalized: normalize_url(&parsed),
        parsed,
    })
}

pub(crate) fn parse_server_url(field: &str, raw: &str) -> Result<Url> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad_input(field, "is required"));
    }
    if raw.len() > 2048 {
        return Err(bad_input(field, "is longer than 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|e| bad_input(field, format!("is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_input(field, "must be an http or https URL"));
    }
    if url.host().is_none() {
        return Err(bad_input(field, "must have a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad_input(
            field,
            "must not contain credentials; use headers instead",
        ));
    }
    Ok(url)
}

fn url_error(field: &str, error: NetError) -> Error {
    match error {
        NetError::DisallowedAddress { .. } | NetError::HttpsRequired => Error::UnsafeUrl {
            field: field.to_owned(),
            message: error.to_string(),
        },
        other => bad_input(field, other.to_string()),
    }
}

/// The normalised form of a URL: lowercase scheme and host (the parser does both), default
/// port dropped, no fragment, no trailing slash.
pub fn normalize_url(url: &Url) -> String {
    let mut normalized = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        normalized.push_str(&format!(":{port}"));
    }
    normalized.push_str(url.path().trim_end_matches('/'));
    if let Some(query) = url.query() {
        normalized.push('?');
        normalized.push_str(query);
    }
    normalized
}

fn validate_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(bad_input("name", "is required"));
    }
    if name.chars().count() > 200 {
        return Err(bad_input("name", "is longer than 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad_input("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

fn validate_description(raw: Option<&str>) -> Result<Option<String>> {
    let Some(text) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > 2000 {
        return Err(bad_input("description", "is longer than 2000 characters"));
    }
    Ok(Some(text.to_owned()))
}

fn validate_timeout(ms: i32) -> Result<i32> {
    if TIMEOUT_MS_RANGE.contains(&ms) {
        Ok(ms)
    } else {
        Err(bad_input(
            "timeoutMs",
            format!(
                "must be between {} and {}",
                TIMEOUT_MS_RANGE.start(),
                TIMEOUT_MS_RANGE.end()
            ),
        ))
    }
}

fn validate_retries(n: i32) -> Result<i32> {
    if RETRIES_RANGE.contains(&n) {
        Ok(n)
    } else {
        Err(bad_input(
            "retries",
            format!(
                "must be between {} and {}",
                RETRIES_RANGE.start(),
                RETRIES_RANGE.end()
            ),
        ))
    }
}

fn validate_headers(headers: Vec<HeaderInput>) -> Result<Vec<(String, Secret)>> {
    if headers.len() > MAX_HEADERS {
        return Err(bad_input(
            "headers",
            format!("at most {MAX_HEADERS} headers are allowed"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.name.trim().to_owned();
        if name.is_empty()
            || name.len() > 128
            || http::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err(bad_input(
                "headers",
                format!("{name:?} is not a valid header name"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(bad_input(
                "headers",
                format!("{name} is set by Switchboard and cannot be configured"),
            ));
        }
        if !seen.insert(lower) {
            return Err(bad_input(
                "headers",
                format!("{name} is given more than once"),
            ));
        }
        let value = header.value;
        // The value is never echoed: it is a secret.
        if value.expose().len() > 8192 || http::HeaderValue::from_str(value.expose()).is_err() {
            return Err(bad_input(
                "headers",
                format!("the value of {name} is not a valid header value"),
            ));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn validate_client_id(raw: Option<&str>) -> Result<Option<String>> {
    let Some(id) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if id.len() > 512 || id.chars().any(char::is_control) {
        return Err(bad_input(
            "oauthClientId",
            "must be at most 512 printable characters",
        ));
    }
    Ok(Some(id.to_owned()))
}

fn validate_client_secret(raw: Option<Secret>) -> Result<Option<Secret>> {
    let Some(secret) = raw.filter(|s| !s.expose().is_empty()) else {
        return Ok(None);
    };
    if secret.expose().len() > 2048 || secret.expose().chars().any(char::is_control) {
        return Err(bad_input(
            "oauthClientSecret",
            "must be at most 2048 printable characters",
        ));
    }
    Ok(Some(secret))
}

impl<T> Patch<T> {
    /// Transform the value of a `Set`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Unchanged => Patch::Unchanged,
            Patch::Clear => Patch::Clear,
            Patch::Set(value) => Patch::Set(f(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        normalize_url(&Url::parse(raw).unwrap())
    }

    #[test]
    fn normalisation_matches_the_product_rules() {
        assert_eq!(
            norm("HTTPS://MCP.Example.com/mcp/"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            norm("https://mcp.example.com/mcp#frag"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            norm("https://mcp.example.com:443/"),
            "https://mcp.example.com"
        );
        assert_eq!(norm("https://mcp.example.com"), "https://mcp.example.com");
        assert_eq!(
            norm("http://127.0.0.1:8080/a/?x=1"),
            "http://127.0.0.1:8080/a?x=1"
        );
        assert_ne!(
            norm("https://mcp.example.com/A"),
            norm("https://mcp.example.com/a")
        );
    }

    #[test]
    fn header_rules() {
        let h = |n: &str, v: &str| HeaderInput {
            name: n.into(),
            value: Secret::new(v),
        };
        assert!(
            validate_headers(vec![h("Authorization", "Bearer x"), h("X-Api-Key", "k")]).is_ok()
        );
        assert!(validate_headers(vec![h("Host", "x")]).is_err());
        assert!(validate_headers(vec![h("X-A", "1"), h("x-a", "2")]).is_err());
        assert!(validate_headers(vec![h("Bad Name", "1")]).is_err());
        let error = validate_headers(vec![h("X-A", "line\r\nbreak-secret")]).unwrap_err();
        assert!(!error.to_string().contains("break-secret"));
    }

    #[test]
    fn url_rules() {
        assert!(parse_server_url("url", "ftp://x.example").is_err());
        assert!(parse_server_url("url", "javascript:alert(1)").is_err());
        assert!(parse_server_url("url", "https://user:pw@x.example").is_err());
        assert!(parse_server_url("url", "").is_err());
        assert!(parse_server_url("url", "https://x.example/mcp").is_ok());
    }
}
