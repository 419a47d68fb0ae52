//! Workspaces, their members and their audit trail.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::super::error::{Result, parse_id, principal};
use super::server::{load_user, requested_tools_page};
use super::{ListedServer, McpServer, ServerPage, User, WorkspaceRole};
use crate::app::AppHandle;
use crate::db::models::{AuditEventRow, WorkspaceRow};
use crate::domain::access::Role;
use crate::domain::servers;

/// A workspace, seen by one of its members.
pub struct Workspace {
    /// The row.
    pub row: WorkspaceRow,
    /// The caller's role in it.
    pub role: Role,
}

#[Object]
impl Workspace {
    async fn id(&self) -> ID {
        ID(self.row.id.0.to_string())
    }
    async fn name(&self) -> &str {
        &self.row.name
    }
    /// The caller's role in this workspace.
    async fn role(&self) -> WorkspaceRole {
        self.role.into()
    }
    /// Registered MCP servers, oldest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1")]
    async fn mcp_servers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ServerPage> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let after = after.map(|c| parse_id("after", &ID(c))).transpose()?;
        // Nested rows of the whole page are loaded here, one query per kind, for exactly the
        // fields the query selects; a timer-based loader batch could split under load.
        let look = ctx.look_ahead();
        let nodes = [look.field("edges").field("node"), look.field("nodes")];
        let wants = |field: &str| nodes.iter().any(|n| n.field(field).exists());
        let mut tools = Vec::new();
        for selection in nodes
            .iter()
            .flat_map(|n| n.field("tools").selection_fields())
        {
            if let Some(page) = requested_tools_page(&selection)
                && !tools.contains(&page)
            {
                tools.push(page);
            }
        }
        let wanted = servers::Wanted {
            grants: wants("oauth"),
            flows_in_progress: nodes
                .iter()
                .any(|n| n.field("oauth").field("flowInProgress").exists()),
            tools,
            users: wants("createdBy")
                || nodes
                    .iter()
                    .any(|n| n.field("oauth").field("authorizedBy").exists()),
        };
        let (id, first) = (self.row.id.0, first.map(i64::from));
        // The grants, when wanted, are read with the page (one trip to the database).
        let (page, grants) = if wanted.grants || wanted.users {
            let (page, grants) =
                servers::page_with_grants(app, principal, id, first, after).await?;
            (page, Some(grants))
        } else {
            (servers::page(app, principal, id, first, after).await?, None)
        };
        let related = Arc::new(servers::related(app, &page.items, wanted, grants).await?);
        let workspace = Arc::new(Workspace {
            row: self.row.clone(),
            role: self.role,
        });
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection.edges.extend(page.items.into_iter().map(|row| {
            let cursor = row.id.0.to_string();
            Edge::new(
                cursor,
                ListedServer(McpServer {
                    row,
                    related: Some(related.clone()),
                    workspace: Some(workspace.clone()),
                }),
            )
        }));
        Ok(ServerPage(connection))
    }
    /// The audit trail, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, AuditEvent>> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let after = after.map(|c| parse_id("after", &ID(c))).transpose()?;
        let page =
            crate::domain::audit::page(app, principal, self.row.id.0, first.map(i64::from), after)
                .await?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection.edges.extend(
            page.items
                .into_iter()
                .map(|row| Edge::new(row.id.0.to_string(), AuditEvent(row))),
        );
        Ok(connection)
    }
}

/// One entry of the audit trail.
pub struct AuditEvent(pub AuditEventRow);

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }
    /// What happened, e.g. `mcp_server.update`.
    async fn action(&self) -> &str {
        &self.0.action
    }
    /// Who did it.
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        load_user(ctx, None, self.0.actor_user_id.map(|id| id.0)).await
    }
    /// The object acted on.
    async fn target_id(&self) -> Option<ID> {
        self.0.target_id.map(|id| ID(id.0.to_string()))
    }
    /// Details; never secrets.
    async fn details(&self) -> Json<serde_json::Value> {
        Json(serde_json::from_str(&self.0.details).unwrap_or(serde_json::Value::Null))
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at.0
    }
}

/// A member of a workspace.
#[derive(SimpleObject)]
pub struct WorkspaceMember {
    /// The user's id.
    pub user_id: ID,
    /// The workspace's id.
    pub workspace_id: ID,
    /// Their role.
    pub role: WorkspaceRole,
}
