//! Workspaces, their members and their audit trail.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::super::error::{ApiError, Result, parse_id, principal};
use super::listed::projection;
use super::server::{load_user, requested_tools_page};
use super::{ListedServer, McpServer, ServerPage, User, WorkspaceRole};
use crate::app::AppHandle;
use crate::db::models::{AuditEventRow, WorkspaceRow};
use crate::domain::access::Role;
use crate::domain::{servers, workspaces};
use crate::metrics::PageRead;

/// A workspace, seen by one of its members. Clones share the row.
#[derive(Clone)]
pub struct Workspace {
    /// Its id.
    pub id: Uuid,
    /// The caller's role in it.
    pub role: Role,
    /// The row, read at most once: a member's role in a workspace is known without reading
    /// it (memberships name existing workspaces), so a query that selects none of the row's
    /// fields reads no row, and a page of servers whose workspace is selected reads it once.
    row: Arc<OnceCell<WorkspaceRow>>,
}

impl Workspace {
    /// A workspace whose row was read.
    pub fn read(row: WorkspaceRow, role: Role) -> Self {
        Workspace {
            id: row.id.0,
            role,
            row: Arc::new(OnceCell::new_with(Some(row))),
        }
    }

    /// A workspace the caller is a member of with `role`, read when a field needs the row.
    pub fn of_member(id: Uuid, role: Role) -> Self {
        Workspace {
            id,
            role,
            row: Arc::new(OnceCell::new()),
        }
    }

    async fn row(&self, ctx: &Context<'_>) -> Result<&WorkspaceRow> {
        self.row
            .get_or_try_init(|| async {
                let principal = principal(ctx)?;
                let app = ctx.data_unchecked::<AppHandle>();
                let (row, _) =
                    workspaces::get(app, principal, self.id)
                        .await?
                        .ok_or_else(|| {
                            ApiError::internal("a member's workspace is missing", &self.id)
                        })?;
                Ok(row)
            })
            .await
    }
}

#[Object]
impl Workspace {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    async fn name(&self, ctx: &Context<'_>) -> Result<&str> {
        Ok(&self.row(ctx).await?.name)
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
        let (id, first) = (self.id, first.map(i64::from));
        // A selection of plain fields reads only the columns it shows.
        if let Some((projection, shape)) = projection(ctx) {
            let page =
                servers::projected_page(app, principal, id, first, after, projection).await?;
            app.metrics.server_page(PageRead::Columns);
            return Ok(ServerPage::Projected {
                page,
                has_previous: after.is_some(),
                shape,
            });
        }
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
        // The grants, when wanted, are read with the page (one trip to the database).
        let (page, grants) = if wanted.grants || wanted.users {
            let (page, grants) =
                servers::page_with_grants(app, principal, id, first, after).await?;
            (page, Some(grants))
        } else {
            (servers::page(app, principal, id, first, after).await?, None)
        };
        let related = Arc::new(servers::related(app, &page.items, wanted, grants).await?);
        app.metrics.server_page(PageRead::Rows);
        let workspace = Arc::new(self.clone());
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
        Ok(ServerPage::Loaded(connection))
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
        let page = crate::domain::audit::page(app, principal, self.id, first.map(i64::from), after)
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
