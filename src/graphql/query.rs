//! Query root.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object};

use super::error::{ApiError, Result, parse_id, principal};
use super::types::{
    ApiToken, AuditEvent, McpProbeResult, McpServer, McpTransport, ServiceAccount, User, Workspace,
};
use crate::app::AppHandle;
use crate::domain::servers::{self, Transport};
use crate::domain::{audit, onboarding, workspaces};

/// Queries.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The calling user.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<User> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        workspaces::viewer(app, principal)
            .await
            .map_err(ApiError::from)
            .map(User)
    }

    /// The workspaces the caller belongs to.
    async fn workspaces(&self, ctx: &Context<'_>) -> Result<Vec<Workspace>> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let rows = workspaces::mine(app, principal).await?;
        Ok(rows
            .into_iter()
            .map(|(row, role)| Workspace::read(row, role))
            .collect())
    }

    /// A workspace; null when the caller is not a member.
    async fn workspace(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Workspace>> {
        let principal = principal(ctx)?;
        let id = parse_id("id", &id)?;
        // Its row is read only if a field selected needs it.
        Ok(workspaces::role(principal, id).map(|role| Workspace::of_member(id, role)))
    }

    /// An MCP server; null outside the caller's workspaces.
    async fn mcp_server(&self, ctx: &Context<'_>, id: ID) -> Result<Option<McpServer>> {
        let principal = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        Ok(servers::get(app, principal, id)
            .await?
            .map(McpServer::single))
    }

    /// How a server at `url` wants to be authenticated, without saving anything (editor).
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn probe_mcp_server(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        url: String,
        transport: Option<McpTransport>,
    ) -> Result<McpProbeResult> {
        let (_, outbound) = super::outbound(ctx)?;
        let workspace_id = parse_id("workspaceId", &workspace_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let transport = transport.map_or(Transport::StreamableHttp, Into::into);
        let result = servers::probe(app, outbound, workspace_id, &url, transport).await?;
        Ok(McpProbeResult {
            auth_type: result.auth_type.into(),
            reason: result.reason,
            transport: result.transport.into(),
        })
    }

    /// Onboarding: a user by id (service accounts and instance operators; a workspace-scoped
    /// service account sees the members of its workspace only, others are `NOT_FOUND`).
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<User> {
        let principal = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::user(app, principal, id)
            .await
            .map_err(ApiError::from)
            .map(User)
    }

    /// Onboarding: the user an identity provider's issuer and subject name, seen like `user`.
    async fn user_by_identity(
        &self,
        ctx: &Context<'_>,
        issuer: String,
        subject: String,
    ) -> Result<User> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::user_by_identity(app, principal, &issuer, &subject)
            .await
            .map_err(ApiError::from)
            .map(User)
    }

    /// The live service accounts of a workspace (its admins and instance operators), or the
    /// instance-wide ones without `workspaceId` (instance operators), oldest first.
    async fn service_accounts(
        &self,
        ctx: &Context<'_>,
        workspace_id: Option<ID>,
    ) -> Result<Vec<ServiceAccount>> {
        let principal = principal(ctx)?;
        let workspace = workspace_id
            .as_ref()
            .map(|id| parse_id("workspaceId", id))
            .transpose()?;
        let app = ctx.data_unchecked::<AppHandle>();
        Ok(onboarding::service_accounts(app, principal, workspace)
            .await?
            .into_iter()
            .map(ServiceAccount)
            .collect())
    }

    /// The instance's own audit trail, newest first: users created and tokens minted by
    /// instance-wide callers, instance-wide service accounts, operator grants (instance
    /// operators and instance-wide service accounts).
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1")]
    async fn instance_audit_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, AuditEvent>> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let after = after.map(|c| parse_id("after", &ID(c))).transpose()?;
        let page = audit::instance_page(app, principal, first.map(i64::from), after).await?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection.edges.extend(
            page.items
                .into_iter()
                .map(|row| Edge::new(row.id.0.to_string(), AuditEvent(row))),
        );
        Ok(connection)
    }

    /// The caller's API tokens, newest first.
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiToken>> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        Ok(workspaces::tokens(app, principal)
            .await?
            .into_iter()
            .map(ApiToken)
            .collect())
    }
}
