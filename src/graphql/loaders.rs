//! DataLoaders for nested fields, so a page of servers costs a constant number of queries
//! whatever its size. Each `load` is one `WHERE … IN (…)` query. The loaders do not cache, so
//! one instance serves every request and subscription without serving stale rows; they only
//! batch. They read rows whose access was already checked by the resolver that produced the
//! parent object.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::app::AppHandle;
use crate::db::models::{McpServerRow, ToolRow, UserRow, WorkspaceRow};
use crate::db::{self, DbError};
use crate::domain::servers::{OauthView, oauth_views};

/// Loader error: shared so every waiting field gets it.
pub type LoadError = Arc<DbError>;

/// Users by id.
pub struct UserLoader(pub AppHandle);
/// Workspaces by id.
pub struct WorkspaceLoader(pub AppHandle);
/// Servers by id.
pub struct ServerLoader(pub AppHandle);
/// OAuth state (grant and pending flow) by server id.
pub struct GrantLoader(pub AppHandle);
/// Tool catalogues by server id.
pub struct ToolsLoader(pub AppHandle);

impl Loader<Uuid> for UserLoader {
    type Value = UserRow;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UserRow>, LoadError> {
        let mut conn = self.0.db.conn().await?;
        let rows = db::access::users_by_ids(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|r| (r.id.0, r)).collect())
    }
}

impl Loader<Uuid> for WorkspaceLoader {
    type Value = WorkspaceRow;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, WorkspaceRow>, LoadError> {
        let mut conn = self.0.db.conn().await?;
        let rows = db::access::workspaces_by_ids(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|r| (r.id.0, r)).collect())
    }
}

impl Loader<Uuid> for ServerLoader {
    type Value = McpServerRow;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, McpServerRow>, LoadError> {
        let mut conn = self.0.db.conn().await?;
        let rows = db::servers::by_ids(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|r| (r.id.0, r)).collect())
    }
}

impl Loader<Uuid> for GrantLoader {
    type Value = OauthView;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, OauthView>, LoadError> {
        let mut conn = self.0.db.conn().await?;
        Ok(oauth_views(&mut conn, keys, true).await?)
    }
}

impl Loader<Uuid> for ToolsLoader {
    type Value = Vec<ToolRow>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<ToolRow>>, LoadError> {
        let mut conn = self.0.db.conn().await?;
        let rows = db::servers::tools_by_server_ids(&mut conn, keys).await?;
        let mut by_server: HashMap<Uuid, Vec<ToolRow>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_server.entry(row.server_id.0).or_default().push(row);
        }
        Ok(by_server)
    }
}

/// Map a loader failure at the resolver boundary (logged once, answered as `INTERNAL`).
pub fn load_error(error: LoadError) -> async_graphql::Error {
    tracing::error!(%error, "storage failure while loading a nested field");
    super::error::internal()
}
