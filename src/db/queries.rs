//! Statements shared by several reads, as macros: each backend's branch expands its own copy,
//! and a query's static type is what finds its prepared statement.

/// The servers of workspace `$workspace_id` (a `Uuid`) in id order, at most `$limit`; a later
/// page adds its cursor with [`load_page`].
macro_rules! page_query {
    ($workspace_id:expr, $limit:expr) => {{
        use $crate::db::schema::mcp_servers;
        mcp_servers::table
            .filter(mcp_servers::workspace_id.eq($crate::db::DbUuid($workspace_id)))
            .order(mcp_servers::id.asc())
            .limit($limit)
            .select($crate::db::models::McpServerRow::as_select())
    }};
}

/// [`page_query`], each server with what the API shows of its shared grant (`None` without
/// one): a left join on the grant whose user is null, of which a server has at most one.
macro_rules! page_with_grant_query {
    ($workspace_id:expr, $limit:expr) => {{
        use $crate::db::schema::{mcp_oauth_grants, mcp_servers};
        mcp_servers::table
            .left_join(
                mcp_oauth_grants::table.on(mcp_oauth_grants::server_id
                    .eq(mcp_servers::id)
                    .and(mcp_oauth_grants::user_id.is_null())),
            )
            .filter(mcp_servers::workspace_id.eq($crate::db::DbUuid($workspace_id)))
            .order(mcp_servers::id.asc())
            .limit($limit)
            .select((
                $crate::db::models::McpServerRow::as_select(),
                Option::<$crate::db::models::GrantSummary>::as_select(),
            ))
    }};
}

/// The rows of `$query` (a page of servers in id order) after the server `$after` (an
/// `Option<Uuid>`), with `load_rows!`. The first page and a later one are two statements of
/// their own static types, so each finds its prepared statement by its type; a boxed query
/// would write out its SQL, and hash it, on every execution to find it.
macro_rules! load_page {
    ($conn:expr, $query:expr, $after:expr) => {
        match $after {
            None => load_rows!($conn, $query),
            Some(after) => load_rows!(
                $conn,
                $query.filter($crate::db::schema::mcp_servers::id.gt($crate::db::DbUuid(after)))
            ),
        }
    };
}

/// The server with id `$id` (a `Uuid`), as at most one row.
macro_rules! server_query {
    ($id:expr) => {{
        $crate::db::schema::mcp_servers::table
            .find($crate::db::DbUuid($id))
            .select($crate::db::models::McpServerRow::as_select())
            .limit(1)
    }};
}

/// The grant of server `$server_id` held by user `$user_id` (an `Option<Uuid>`; `None`: the
/// workspace's shared grant), read with `$read` (`first` or `get_result`, sync or async): two
/// statements of their own static types, as a grant has one or the other holder.
macro_rules! grant_read {
    ($server_id:expr, $user_id:expr, |$query:ident| $read:expr) => {{
        use $crate::db::schema::mcp_oauth_grants;
        let held = mcp_oauth_grants::table
            .filter(mcp_oauth_grants::server_id.eq($crate::db::DbUuid($server_id)))
            .select($crate::db::models::OauthGrantRow::as_select());
        match $user_id {
            Some(user) => {
                let $query = held.filter(mcp_oauth_grants::user_id.eq($crate::db::DbUuid(user)));
                $read
            }
            None => {
                let $query = held.filter(mcp_oauth_grants::user_id.is_null());
                $read
            }
        }
    }};
}

/// What a call needs of the tool `$name` (a `&str`) in server `$server_id`'s stored catalogue.
macro_rules! callable_tool_query {
    ($server_id:expr, $name:expr) => {{
        use $crate::db::schema::mcp_tools;
        mcp_tools::table
            .filter(mcp_tools::server_id.eq($crate::db::DbUuid($server_id)))
            .filter(mcp_tools::name.eq($name))
            .select((
                mcp_tools::input_schema.like($crate::db::servers::HEADER_PARAMETER_PATTERN),
                mcp_tools::annotations,
            ))
            .limit(1)
    }};
}

/// Whether user `$user_id` has a catalogue of their own of server `$server_id`: its tool count.
macro_rules! user_catalogue_query {
    ($server_id:expr, $user_id:expr) => {{
        use $crate::db::schema::mcp_user_catalogues;
        mcp_user_catalogues::table
            .filter(mcp_user_catalogues::server_id.eq($crate::db::DbUuid($server_id)))
            .filter(mcp_user_catalogues::user_id.eq($crate::db::DbUuid($user_id)))
            .select(mcp_user_catalogues::tool_count)
            .limit(1)
    }};
}

/// [`callable_tool_query`] in user `$user_id`'s own catalogue of server `$server_id`.
macro_rules! callable_user_tool_query {
    ($server_id:expr, $user_id:expr, $name:expr) => {{
        use $crate::db::schema::mcp_user_tools;
        mcp_user_tools::table
            .filter(mcp_user_tools::server_id.eq($crate::db::DbUuid($server_id)))
            .filter(mcp_user_tools::user_id.eq($crate::db::DbUuid($user_id)))
            .filter(mcp_user_tools::name.eq($name))
            .select((
                mcp_user_tools::input_schema.like($crate::db::servers::HEADER_PARAMETER_PATTERN),
                mcp_user_tools::annotations,
            ))
            .limit(1)
    }};
}
