//! Statements shared by several reads, as macros: a query's type depends on the backend once
//! it is boxed, so each backend's branch expands its own copy.

/// The servers of workspace `$workspace_id` (a `Uuid`) in id order after `$after` (an
/// `Option<Uuid>`), at most `$limit`.
macro_rules! page_query {
    ($workspace_id:expr, $after:expr, $limit:expr) => {{
        let mut query = $crate::db::schema::mcp_servers::table
            .filter(
                $crate::db::schema::mcp_servers::workspace_id.eq($crate::db::DbUuid($workspace_id)),
            )
            .order($crate::db::schema::mcp_servers::id.asc())
            .limit($limit)
            .select($crate::db::models::McpServerRow::as_select())
            .into_boxed();
        if let Some(after) = $after {
            query = query.filter($crate::db::schema::mcp_servers::id.gt($crate::db::DbUuid(after)));
        }
        query
    }};
}

/// What the API shows of the shared grants of workspace `$workspace_id`'s servers whose ids lie
/// between `$first` and `$last` (inclusive). One statement of constant shape whatever the page
/// holds, so SQLite keeps it prepared, where a list of ids is compiled again for each length.
macro_rules! grants_between_query {
    ($workspace_id:expr, $first:expr, $last:expr) => {{
        use $crate::db::schema::{mcp_oauth_grants, mcp_servers};
        mcp_oauth_grants::table
            .inner_join(mcp_servers::table.on(mcp_servers::id.eq(mcp_oauth_grants::server_id)))
            .filter(mcp_servers::workspace_id.eq($crate::db::DbUuid($workspace_id)))
            .filter(mcp_oauth_grants::server_id.ge($crate::db::DbUuid($first)))
            .filter(mcp_oauth_grants::server_id.le($crate::db::DbUuid($last)))
            .filter(mcp_oauth_grants::user_id.is_null())
            .select($crate::db::models::GrantSummary::as_select())
    }};
}
