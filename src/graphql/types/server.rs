//! MCP servers with their OAuth grants, tools and status.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ID, Json, Object, SelectionField, SimpleObject, Value};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::error::{ApiError, Result, principal};
use super::super::loaders::{
    GrantLoader, OwnGrantKey, OwnGrantLoader, OwnToolsKey, OwnToolsLoader, ToolsKey, ToolsLoader,
    UserLoader, load_error, tools_load_error,
};
use super::{
    McpAuthStatus, McpAuthType, McpConnectionStatus, McpCredentialMode, McpOauthRegistration,
    McpStatusReason, McpTransport, User, Workspace,
};
use crate::app::AppHandle;
use crate::db::models::{GrantSummary, McpServerRow, ToolRow};
use crate::db::types::CredentialMode;
use crate::domain::oauth::scope_list;
use crate::domain::pagination::ToolsPage;
use crate::domain::servers::{self, OauthView, Related};
use crate::domain::status;
use crate::domain::workspaces;

/// The page of tools a `tools` selection asks for, when its arguments are valid (an invalid
/// one is reported by the field itself).
pub(super) fn requested_tools_page(selection: &SelectionField<'_>) -> Option<ToolsPage> {
    let mut first = None;
    let mut after = None;
    for (name, value) in selection.arguments().ok()? {
        match (name.as_str(), value) {
            ("first", Value::Number(n)) => first = Some(n.as_i64()?),
            ("after", Value::String(text)) => after = Some(text),
            _ => {}
        }
    }
    ToolsPage::new(first, after).ok()
}

/// A registered MCP server. Header values and the client secret are never returned.
pub struct McpServer {
    /// The row.
    pub row: McpServerRow,
    /// Related rows loaded for a whole page; absent for a single server.
    pub related: Option<Arc<Related>>,
    /// The workspace, when the parent already has it.
    pub workspace: Option<Arc<Workspace>>,
}

impl McpServer {
    /// A server resolved on its own: nested fields go through the loaders.
    pub fn single(row: McpServerRow) -> Self {
        McpServer {
            row,
            related: None,
            workspace: None,
        }
    }
}

#[Object]
impl McpServer {
    async fn id(&self) -> ID {
        ID(self.row.id.0.to_string())
    }
    async fn workspace(&self, ctx: &Context<'_>) -> Result<Workspace> {
        if let Some(workspace) = &self.workspace {
            return Ok(Workspace::clone(workspace));
        }
        // Its row is read only if a field selected needs it, as for `workspace(id)`.
        let principal = principal(ctx)?;
        let id = self.row.workspace_id.0;
        let role = workspaces::role(principal, id).ok_or_else(|| {
            ApiError::internal("a server reached a caller outside its workspace", &id)
        })?;
        Ok(Workspace::of_member(id, role))
    }
    async fn name(&self) -> &str {
        &self.row.name
    }
    async fn description(&self) -> Option<&str> {
        self.row.description.as_deref()
    }
    async fn url(&self) -> &str {
        &self.row.url
    }
    async fn transport(&self) -> McpTransport {
        self.row.transport.into()
    }
    /// The MCP protocol revision last negotiated with the server (`2026-07-28`, `2025-11-25`,
    /// …); null until it was first reached. Servers of 2026-07-28 and later are spoken to
    /// statelessly; earlier ones through `initialize` and a kept session.
    async fn protocol_version(&self) -> Option<&str> {
        self.row.protocol_version.as_deref()
    }
    /// Until when the server said its tool catalogue stays fresh (the `ttlMs` of its last
    /// listing, at most a day); null when it made no such promise. Background checks list the
    /// tools again only after it.
    async fn tools_fresh_until(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.row.tools_fresh_until.map(|at| at.0)
    }
    async fn enabled(&self) -> bool {
        self.row.enabled
    }
    async fn timeout_ms(&self) -> i32 {
        self.row.timeout_ms
    }
    async fn retries(&self) -> i32 {
        self.row.retries
    }
    async fn auth_type(&self) -> McpAuthType {
        self.row.auth_type.into()
    }
    /// Names of the static headers; their values are never returned.
    async fn header_names(&self) -> Vec<String> {
        servers::header_names(&self.row)
    }
    async fn oauth_client_id(&self) -> Option<&str> {
        self.row.oauth_client_id.as_deref()
    }
    /// Whether an authorization server that omits `code_challenge_methods_supported` is
    /// accepted for this server.
    async fn oauth_lenient_pkce(&self) -> bool {
        self.row.oauth_lenient_pkce
    }

    /// Whose OAuth credentials reach the server: the workspace's shared grant, or each
    /// member's own (see `myAuthorization`).
    async fn credentials(&self) -> McpCredentialMode {
        self.row.credential_mode.into()
    }
    async fn has_oauth_client_secret(&self) -> bool {
        self.row.oauth_client_secret_sealed.is_some()
    }
    /// Whether a machine client's private key is stored (it is never returned).
    async fn has_oauth_client_key(&self) -> bool {
        self.row.oauth_client_key_sealed.is_some()
    }
    /// The caller's own authorization of a `PER_USER` server (null on a shared server: see
    /// `oauth`). `authorized` false means the caller must connect their account before calling
    /// its tools.
    async fn my_authorization(&self, ctx: &Context<'_>) -> Result<Option<McpMyAuthorization>> {
        if self.row.credential_mode != CredentialMode::PerUser {
            return Ok(None);
        }
        boxed(async move {
            let user_id = principal(ctx)?.user_id;
            let view = ctx
                .data_unchecked::<DataLoader<OwnGrantLoader>>()
                .load_one(OwnGrantKey {
                    server_id: self.row.id.0,
                    user_id,
                })
                .await
                .map_err(load_error)?
                .unwrap_or_default();
            Ok(Some(McpMyAuthorization(view)))
        })
        .await
    }
    /// Who has connected their own account to a `PER_USER` server, oldest first (admins only;
    /// empty on a shared server). Never tokens. A cursor is an opaque grant id. `first`
    /// defaults to 50 and may be at most 100.
    #[graphql(complexity = "first.unwrap_or(50).clamp(0, 100) as usize * child_complexity + 1")]
    async fn authorizations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, McpUserAuthorization>> {
        boxed(self.authorizations_page(ctx, first, after)).await
    }
    /// The workspace's OAuth grant for this server, if one exists.
    async fn oauth(&self, ctx: &Context<'_>) -> Result<Option<McpOauthGrant>> {
        let related = self.related.clone();
        if let Some(grants) = related.as_ref().and_then(|r| r.grants.as_ref()) {
            return Ok(grants
                .get(&self.row.id.0)
                .cloned()
                .map(|row| McpOauthGrant { row, related }));
        }
        boxed(async move {
            Ok(ctx
                .data_unchecked::<DataLoader<GrantLoader>>()
                .load_one(self.row.id.0)
                .await
                .map_err(load_error)?
                .map(|row| McpOauthGrant { row, related: None }))
        })
        .await
    }
    async fn connection_status(&self) -> McpConnectionStatus {
        self.row.connection_status.into()
    }
    async fn auth_status(&self) -> McpAuthStatus {
        self.row.auth_status.into()
    }
    async fn status_reason(&self) -> Option<McpStatusReason> {
        self.row.status_reason.map(Into::into)
    }
    async fn last_error(&self) -> Option<&str> {
        self.row.last_error.as_deref()
    }
    async fn last_connected_at(&self) -> Option<DateTime<Utc>> {
        self.row.last_connected_at.map(|t| t.0)
    }
    /// The stored tool catalogue in name order; a cursor is a tool's name. `first` defaults
    /// to 50 and may be at most 100. A catalogue is the server's, whoever listed it; on a
    /// `PER_USER` server a member whose own listing differed sees theirs instead (`toolCount`
    /// counts the server's).
    #[graphql(complexity = "first.unwrap_or(50).clamp(0, 100) as usize * child_complexity + 1")]
    async fn tools(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, McpTool>> {
        boxed(self.tools_page(ctx, first, after)).await
    }
    async fn tool_count(&self) -> i32 {
        self.row.tool_count
    }
    async fn tools_refreshed_at(&self) -> Option<DateTime<Utc>> {
        self.row.tools_refreshed_at.map(|t| t.0)
    }
    /// Who registered the server (null once that user is gone).
    async fn created_by(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        boxed(load_user(
            ctx,
            self.related.as_deref(),
            self.row.created_by.map(|id| id.0),
        ))
        .await
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at.0
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at.0
    }
}

impl McpServer {
    /// The body of `tools` (see [`boxed`]).
    async fn tools_page(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, McpTool>> {
        let page = ToolsPage::new(first.map(i64::from), after)?;
        let id = self.row.id.0;
        // A member of a per-user server whose own listing differed sees their own catalogue.
        let own = if self.row.credential_mode == CredentialMode::PerUser {
            ctx.data_unchecked::<DataLoader<OwnToolsLoader>>()
                .load_one(OwnToolsKey {
                    server_id: id,
                    user_id: principal(ctx)?.user_id,
                    page: page.clone(),
                })
                .await
                .map_err(tools_load_error)?
        } else {
            None
        };
        let loaded = own.or_else(|| {
            self.related
                .as_ref()
                .and_then(|related| related.tools.get(&page))
                .map(|pages| pages.get(&id).cloned().unwrap_or_default())
        });
        let tools = match loaded {
            Some(tools) => tools,
            None => ctx
                .data_unchecked::<DataLoader<ToolsLoader>>()
                .load_one(ToolsKey {
                    server_id: id,
                    page: page.clone(),
                })
                .await
                .map_err(tools_load_error)?
                .unwrap_or_default(),
        };
        let mut connection = Connection::new(page.after.is_some(), tools.has_next);
        connection.edges.extend(
            tools
                .items
                .into_iter()
                .map(|row| Edge::new(row.name.clone(), McpTool(row))),
        );
        Ok(connection)
    }

    /// The body of `authorizations`, boxed by the field so that every field's future stays
    /// small.
    async fn authorizations_page(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, McpUserAuthorization>> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let after_id = after
            .as_deref()
            .map(|cursor| {
                Uuid::parse_str(cursor)
                    .map_err(|_| crate::domain::bad_input("after", "is not a cursor of this list"))
            })
            .transpose()
            .map_err(ApiError::from)?;
        let page =
            servers::authorizations(app, principal, &self.row, first.map(i64::from), after_id)
                .await
                .map_err(ApiError::from)?;
        let mut connection = Connection::new(after_id.is_some(), page.has_next);
        connection.edges.extend(
            page.items
                .into_iter()
                .map(|grant| Edge::new(grant.id.0.to_string(), McpUserAuthorization(grant))),
        );
        Ok(connection)
    }
}

/// A resolver's body on the heap. A type's fields are resolved through one future as large as
/// its largest field's, created and moved for every field of every object: boxing the few
/// fields that await loaders or queries keeps the plain ones (most of any page) cheap.
async fn boxed<'a, T>(body: impl std::future::Future<Output = T> + Send + 'a) -> T {
    Box::pin(body).await
}

pub(super) async fn load_user(
    ctx: &Context<'_>,
    related: Option<&Related>,
    id: Option<Uuid>,
) -> Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    if let Some(users) = related.and_then(|r| r.users.as_ref()) {
        return Ok(users.get(&id).cloned().map(User));
    }
    Ok(ctx
        .data_unchecked::<DataLoader<UserLoader>>()
        .load_one(id)
        .await
        .map_err(load_error)?
        .map(User))
}

/// The OAuth grant of a server, shared by its workspace. Tokens are never returned.
pub struct McpOauthGrant {
    /// The grant (if any) and whether a flow is pending.
    pub row: OauthView,
    /// Related rows loaded for a whole page of servers.
    pub related: Option<Arc<Related>>,
}

#[Object]
impl McpOauthGrant {
    /// Authorization server issuer.
    async fn issuer(&self) -> Option<&str> {
        self.row.grant.as_ref()?.issuer.as_deref()
    }
    /// Granted scopes.
    async fn scopes(&self) -> Vec<String> {
        scope_list(
            self.row
                .grant
                .as_ref()
                .and_then(|g| g.granted_scopes.as_deref()),
        )
    }
    /// When the access token expires.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.row.grant.as_ref()?.access_expires_at.map(|t| t.0)
    }
    /// Last time tokens were saved (exchange or refresh).
    async fn last_refreshed_at(&self) -> Option<DateTime<Utc>> {
        self.row.grant.as_ref()?.last_refreshed_at.map(|t| t.0)
    }
    /// How the client was registered.
    async fn registration(&self) -> Option<McpOauthRegistration> {
        self.row.grant.as_ref()?.registration_kind.map(Into::into)
    }
    /// Who completed the last authorization.
    async fn authorized_by(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        boxed(load_user(
            ctx,
            self.related.as_deref(),
            self.row
                .grant
                .as_ref()
                .and_then(|g| g.authorized_by.map(|id| id.0)),
        ))
        .await
    }
    /// Whether someone started a flow in the last 10 minutes that has not completed.
    async fn flow_in_progress(&self) -> bool {
        self.row.flow_in_progress
    }
}

/// The caller's own authorization of a per-user server. Tokens are never returned.
pub struct McpMyAuthorization(OauthView);

#[Object]
impl McpMyAuthorization {
    /// Whether the caller's own tokens are stored: their calls act as their account upstream.
    async fn authorized(&self) -> bool {
        self.0.grant.as_ref().is_some_and(|g| g.has_tokens)
    }
    /// When the caller's access token expires (it is refreshed before then).
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.grant.as_ref()?.access_expires_at.map(|t| t.0)
    }
    /// Scopes granted to the caller.
    async fn scopes(&self) -> Vec<String> {
        scopes_of(self.0.grant.as_ref())
    }
    /// When the caller first connected.
    async fn authorized_at(&self) -> Option<DateTime<Utc>> {
        Some(self.0.grant.as_ref()?.created_at.0)
    }
    /// Whether the caller started a flow in the last 10 minutes that has not completed.
    async fn flow_in_progress(&self) -> bool {
        self.0.flow_in_progress
    }
}

/// One member's own authorization of a per-user server, as admins see it. Tokens are never
/// returned.
pub struct McpUserAuthorization(GrantSummary);

#[Object]
impl McpUserAuthorization {
    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        load_user(ctx, None, self.0.user_id.map(|id| id.0)).await
    }
    /// Whether their tokens are stored (false after a rejected refresh, until they connect
    /// again).
    async fn authorized(&self) -> bool {
        self.0.has_tokens
    }
    /// When they first connected.
    async fn authorized_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }
    /// Last time their tokens were saved (exchange or refresh).
    async fn last_refreshed_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_refreshed_at.map(|t| t.0)
    }
    /// When their access token expires.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.access_expires_at.map(|t| t.0)
    }
    /// Scopes granted to them.
    async fn scopes(&self) -> Vec<String> {
        scopes_of(Some(&self.0))
    }
}

fn scopes_of(grant: Option<&GrantSummary>) -> Vec<String> {
    scope_list(grant.and_then(|g| g.granted_scopes.as_deref()))
}

/// One tool of a server's stored catalogue.
pub struct McpTool(pub ToolRow);

#[Object]
impl McpTool {
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// JSON Schema of the arguments, as listed: keywords in the server's order, `$ref`s not
    /// followed. It can be large, so it weighs as much as ten plain fields in a query's
    /// complexity.
    #[graphql(complexity = 10)]
    async fn input_schema(&self) -> Json<serde_json::Value> {
        Json(serde_json::from_str(&self.0.input_schema).unwrap_or(serde_json::Value::Null))
    }
    /// JSON Schema of the tool's structured result, as listed, when it declares one. Weighs as
    /// much as `inputSchema`.
    #[graphql(complexity = 10)]
    async fn output_schema(&self) -> Option<Json<serde_json::Value>> {
        self.0
            .output_schema
            .as_deref()
            .and_then(|schema| serde_json::from_str(schema).ok())
            .map(Json)
    }
    /// Tool annotations as the server sent them.
    async fn annotations(&self) -> Option<Json<serde_json::Value>> {
        self.0
            .annotations
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .map(Json)
    }
}

/// A server's status at one moment.
#[derive(SimpleObject, Clone)]
pub struct McpServerStatus {
    /// Connection state.
    pub connection_status: McpConnectionStatus,
    /// Authorization state.
    pub auth_status: McpAuthStatus,
    /// Why it changed.
    pub reason: Option<McpStatusReason>,
}

impl From<status::Status> for McpServerStatus {
    fn from(value: status::Status) -> Self {
        McpServerStatus {
            connection_status: value.connection.into(),
            auth_status: value.auth.into(),
            reason: value.reason.map(Into::into),
        }
    }
}

/// What a probe found.
#[derive(SimpleObject)]
pub struct McpProbeResult {
    /// The auth type the server asks for.
    pub auth_type: McpAuthType,
    /// Why, e.g. `oauth_challenge`, `bearer_challenge`, `no_auth_required`, `unreachable`.
    pub reason: String,
    /// The transport that answered: the one asked for, or `SSE` when a server asked over
    /// Streamable HTTP refused its POSTs and opened an HTTP+SSE event stream instead.
    pub transport: McpTransport,
}
