//! DataLoaders for nested fields, so a page of servers costs a constant number of queries
//! whatever its size. Each `load` is one `WHERE … IN (…)` query. The loaders do not cache, so
//! one instance serves every request and subscription without serving stale rows; they only
//! batch. They read rows whose access was already checked by the resolver that produced the
//! parent object.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use super::error::ApiError;
use crate::app::AppHandle;
use crate::db::models::{McpServerRow, ToolRow, UserRow};
use crate::domain::pagination::{Page, ToolsPage};
use crate::domain::servers::{self, OauthView};
use crate::domain::{self, workspaces};

/// Loader error: shared so every waiting field gets it.
pub type LoadError = Arc<domain::Error>;

/// Users by id.
pub struct UserLoader(pub AppHandle);
/// Servers by id.
pub struct ServerLoader(pub AppHandle);
/// OAuth state (grant and pending flow) by server id.
pub struct GrantLoader(pub AppHandle);
/// One user's own OAuth state (their grant and pending flow) on per-user servers.
pub struct OwnGrantLoader(pub AppHandle);

/// A server and the user whose own grant is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnGrantKey {
    /// The server.
    pub server_id: Uuid,
    /// The user.
    pub user_id: Uuid,
}

impl Loader<OwnGrantKey> for OwnGrantLoader {
    type Value = OauthView;
    type Error = LoadError;

    /// Two queries per distinct user among the keys (a request has one).
    async fn load(
        &self,
        keys: &[OwnGrantKey],
    ) -> Result<HashMap<OwnGrantKey, OauthView>, LoadError> {
        let mut by_user: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for key in keys {
            by_user.entry(key.user_id).or_default().push(key.server_id);
        }
        let mut found = HashMap::with_capacity(keys.len());
        for (user_id, ids) in by_user {
            let views = servers::own_oauth_by_ids(&self.0, user_id, &ids).await?;
            found.extend(
                views
                    .into_iter()
                    .map(|(server_id, view)| (OwnGrantKey { server_id, user_id }, view)),
            );
        }
        Ok(found)
    }
}
/// Pages of tool catalogues by server id and page.
pub struct ToolsLoader(pub AppHandle);

impl Loader<Uuid> for UserLoader {
    type Value = UserRow;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UserRow>, LoadError> {
        Ok(workspaces::users_by_ids(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for ServerLoader {
    type Value = McpServerRow;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, McpServerRow>, LoadError> {
        Ok(servers::by_ids(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for GrantLoader {
    type Value = OauthView;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, OauthView>, LoadError> {
        Ok(servers::oauth_by_ids(&self.0, keys).await?)
    }
}

/// A page of one member's own catalogue of a per-user server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnToolsKey {
    /// The server.
    pub server_id: Uuid,
    /// The member.
    pub user_id: Uuid,
    /// The page.
    pub page: ToolsPage,
}

/// Pages of members' own catalogues of per-user servers, where they have one.
pub struct OwnToolsLoader(pub AppHandle);

impl Loader<OwnToolsKey> for OwnToolsLoader {
    type Value = Page<ToolRow>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[OwnToolsKey],
    ) -> Result<HashMap<OwnToolsKey, Page<ToolRow>>, Self::Error> {
        let mut groups: HashMap<(Uuid, &ToolsPage), Vec<Uuid>> = HashMap::new();
        for key in keys {
            groups
                .entry((key.user_id, &key.page))
                .or_default()
                .push(key.server_id);
        }
        let mut found = HashMap::with_capacity(keys.len());
        for ((user_id, page), ids) in groups {
            let pages = servers::own_tool_pages(&self.0, user_id, &ids, page).await?;
            found.extend(pages.into_iter().map(|(server_id, tools)| {
                let key = OwnToolsKey {
                    server_id,
                    user_id,
                    page: page.clone(),
                };
                (key, tools)
            }));
        }
        Ok(found)
    }
}

/// A page of one server's tools.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ToolsKey {
    /// The server.
    pub server_id: Uuid,
    /// The page.
    pub page: ToolsPage,
}

impl Loader<ToolsKey> for ToolsLoader {
    type Value = Page<ToolRow>;
    type Error = LoadError;

    /// One query per distinct page among the keys (usually one), whatever the number of
    /// servers.
    async fn load(
        &self,
        keys: &[ToolsKey],
    ) -> Result<HashMap<ToolsKey, Page<ToolRow>>, Self::Error> {
        let mut by_page: HashMap<&ToolsPage, Vec<Uuid>> = HashMap::new();
        for key in keys {
            by_page.entry(&key.page).or_default().push(key.server_id);
        }
        let mut found = HashMap::with_capacity(keys.len());
        for (page, ids) in by_page {
            let pages = servers::tool_pages(&self.0, &ids, page).await?;
            found.extend(pages.into_iter().map(|(server_id, tools)| {
                let key = ToolsKey {
                    server_id,
                    page: page.clone(),
                };
                (key, tools)
            }));
        }
        Ok(found)
    }
}

/// Map a failure to load tools at the resolver boundary (logged once, answered as `INTERNAL`).
pub fn tools_load_error(error: LoadError) -> ApiError {
    ApiError::internal("storage failure while loading tools", &error)
}

/// Map a loader failure at the resolver boundary (logged once, answered as `INTERNAL`).
pub fn load_error(error: LoadError) -> ApiError {
    ApiError::internal("storage failure while loading a nested field", &error)
}
