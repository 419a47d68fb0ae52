//! MCP servers, their OAuth grants and their tool catalogues.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::models::{GrantSummary, McpServerRow, OauthGrantRow, ToolRow, UserToolRow};
use super::schema::{mcp_servers, mcp_tools, mcp_user_catalogues, mcp_user_tools, workspaces};
use super::types::Transport;
use super::{DbConn, DbError, DbTime, DbUuid};
use crate::{load_rows, with_conn};

/// Insert a server.
pub async fn insert(conn: &mut DbConn, row: &McpServerRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(mcp_servers::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Write every column of an existing server, scoped by its workspace; returns whether a row
/// was written.
pub async fn save(conn: &mut DbConn, row: &McpServerRow) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            mcp_servers::table
                .filter(mcp_servers::id.eq(row.id))
                .filter(mcp_servers::workspace_id.eq(row.workspace_id)),
        )
        .set(row)
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Delete a server inside its workspace; the grant and the tools go with it (cascade).
pub async fn delete(conn: &mut DbConn, id: Uuid, workspace_id: Uuid) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::delete(
            mcp_servers::table
                .filter(mcp_servers::id.eq(DbUuid(id)))
                .filter(mcp_servers::workspace_id.eq(DbUuid(workspace_id))),
        )
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Find a server by id, whatever its workspace (callers check access next).
pub async fn find(conn: &mut DbConn, id: Uuid) -> Result<Option<McpServerRow>, DbError> {
    // Read by nearly every operation on a server: one blocking trip on SQLite.
    let rows: Vec<McpServerRow> = load_rows!(conn, server_query!(id))?;
    Ok(rows.into_iter().next())
}

/// The server of a workspace registered under this normalised URL.
pub async fn find_by_normalized_url(
    conn: &mut DbConn,
    workspace_id: Uuid,
    normalized_url: &str,
) -> Result<Option<McpServerRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_servers::table
            .filter(mcp_servers::workspace_id.eq(DbUuid(workspace_id)))
            .filter(mcp_servers::normalized_url.eq(normalized_url))
            .select(McpServerRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// A page of a workspace's servers in id (creation) order, after `after` when given.
pub async fn page(
    conn: &mut DbConn,
    workspace_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<McpServerRow>, DbError> {
    // The hottest read of the API (every dashboard refresh): one blocking trip on SQLite.
    Ok(load_page!(conn, page_query!(workspace_id, limit), after)?)
}

/// [`page`], each server with its shared grant when it has one, in one statement: a
/// dashboard's page and its grants in one round trip (one trip to a blocking thread on
/// SQLite). A server has at most one shared grant (a unique partial index), so the join never
/// repeats a server and the limit counts servers.
pub async fn page_with_grants(
    conn: &mut DbConn,
    workspace_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<(Vec<McpServerRow>, Vec<GrantSummary>), DbError> {
    let joined: Vec<(McpServerRow, Option<GrantSummary>)> =
        load_page!(conn, page_with_grant_query!(workspace_id, limit), after)?;
    let mut grants = Vec::new();
    let rows = joined
        .into_iter()
        .map(|(row, grant)| {
            grants.extend(grant);
            row
        })
        .collect();
    Ok((rows, grants))
}

/// Bind a server's pre-registered client to the authorization server it is first used with
/// (a binding already made is kept).
pub async fn bind_client_issuer(conn: &mut DbConn, id: Uuid, issuer: &str) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::update(
            mcp_servers::table
                .filter(mcp_servers::id.eq(DbUuid(id)))
                .filter(mcp_servers::oauth_client_issuer.is_null()),
        )
        .set(mcp_servers::oauth_client_issuer.eq(Some(issuer)))
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Record the transport a server was found to speak.
pub async fn set_transport(
    conn: &mut DbConn,
    id: Uuid,
    transport: Transport,
) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::update(mcp_servers::table.filter(mcp_servers::id.eq(DbUuid(id))))
            .set(mcp_servers::transport.eq(transport))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// Remember the protocol revision last negotiated with a server. Writes nothing when it is
/// already the one stored.
pub async fn set_protocol_version(
    conn: &mut DbConn,
    id: Uuid,
    version: &str,
) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::update(
            mcp_servers::table
                .filter(mcp_servers::id.eq(DbUuid(id)))
                .filter(
                    mcp_servers::protocol_version
                        .is_null()
                        .or(mcp_servers::protocol_version.ne(version)),
                ),
        )
        .set(mcp_servers::protocol_version.eq(Some(version)))
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Servers whose tool changes are worth listening to, in id order, at most `limit`: enabled,
/// last reached with protocol revision `since` or a later one (revisions are dates, so they
/// compare as text), reached with the workspace's credentials (not each member's own).
pub async fn listenable(conn: &mut DbConn, since: &str, limit: i64) -> Result<Vec<Uuid>, DbError> {
    let ids: Vec<DbUuid> = with_conn!(conn, |c| {
        mcp_servers::table
            .filter(mcp_servers::enabled.eq(true))
            .filter(mcp_servers::protocol_version.ge(since))
            .filter(mcp_servers::credential_mode.ne(super::types::CredentialMode::PerUser))
            .order(mcp_servers::id.asc())
            .limit(limit)
            .select(mcp_servers::id)
            .load(c)
            .await
    })?;
    Ok(ids.into_iter().map(|id| id.0).collect())
}

/// Remove a server's stored tool catalogue.
pub async fn delete_tools(conn: &mut DbConn, server_id: Uuid) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(mcp_tools::table.filter(mcp_tools::server_id.eq(DbUuid(server_id))))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// One page of tools of each of these servers, in one statement whatever their number: at
/// most `limit` tools per server, in name order, with names after `after` when given. Rows come
/// ordered by server, then name.
pub async fn tool_pages(
    conn: &mut DbConn,
    server_ids: &[Uuid],
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ToolRow>, DbError> {
    if server_ids.is_empty() {
        return Ok(Vec::new());
    }
    // One index range scan per server (the primary key is (server_id, name)), so a page costs
    // what it returns, not the size of the catalogues. Parameters are numbered: `$n` on
    // PostgreSQL, `?n` on SQLite; `after` and `limit` come first and are shared by every part.
    let sql = |mark: char| {
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("{mark}{n}")
        };
        let after_param = after.map(|_| next());
        let limit_param = next();
        let parts: Vec<String> = server_ids
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let after_clause = after_param
                    .as_deref()
                    .map(|p| format!(" AND name > {p}"))
                    .unwrap_or_default();
                format!(
                    "SELECT * FROM (SELECT server_id, name, title, description, input_schema, \
                     output_schema, annotations, updated_at FROM mcp_tools WHERE server_id = {}{after_clause} \
                     ORDER BY name LIMIT {limit_param}) AS page_{i}",
                    next()
                )
            })
            .collect();
        format!("{} ORDER BY server_id, name", parts.join(" UNION ALL "))
    };
    let rows: Vec<ToolPageRow> = match conn {
        DbConn::Postgres(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            bind_page(
                diesel::sql_query(sql('$')).into_boxed::<diesel::pg::Pg>(),
                server_ids,
                after,
                limit,
            )
            .load(c)
            .await?
        }
        DbConn::Sqlite(c) => {
            let c: &mut super::SqliteConn = c;
            bind_page(
                diesel::sql_query(sql('?')).into_boxed::<diesel::sqlite::Sqlite>(),
                server_ids,
                after,
                limit,
            )
            .load(c)
            .await?
        }
    };
    Ok(rows.into_iter().map(ToolRow::from).collect())
}

/// Bind the parameters of [`tool_pages`] in the order its statement numbers them.
fn bind_page<'f, DB>(
    query: diesel::query_builder::BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>,
    server_ids: &[Uuid],
    after: Option<&str>,
    limit: i64,
) -> diesel::query_builder::BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<super::types::PortableUuid>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    DbUuid: diesel::serialize::ToSql<super::types::PortableUuid, DB>,
{
    let mut query = query;
    if let Some(after) = after {
        query = query.bind::<diesel::sql_types::Text, _>(after.to_owned());
    }
    query = query.bind::<diesel::sql_types::BigInt, _>(limit);
    for id in server_ids {
        query = query.bind::<super::types::PortableUuid, _>(DbUuid(*id));
    }
    query
}

/// A row of [`tool_pages`], read by column name.
#[derive(QueryableByName)]
#[diesel(table_name = mcp_tools, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct ToolPageRow {
    server_id: DbUuid,
    name: String,
    title: Option<String>,
    description: Option<String>,
    input_schema: String,
    output_schema: Option<String>,
    annotations: Option<String>,
    updated_at: DbTime,
}

impl From<ToolPageRow> for ToolRow {
    fn from(row: ToolPageRow) -> Self {
        ToolRow {
            server_id: row.server_id,
            name: row.name,
            title: row.title,
            description: row.description,
            input_schema: row.input_schema,
            output_schema: row.output_schema,
            annotations: row.annotations,
            updated_at: row.updated_at,
        }
    }
}

/// How many servers a workspace has.
pub async fn count_in_workspace(conn: &mut DbConn, workspace_id: Uuid) -> Result<i64, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_servers::table
            .filter(mcp_servers::workspace_id.eq(DbUuid(workspace_id)))
            .count()
            .get_result(c)
            .await
    })?)
}

/// Inside a transaction, make other transactions that call this for the same workspace wait
/// until it ends, so a count of its servers stays true until the insert. PostgreSQL locks the
/// workspace row; a SQLite write transaction already excludes every other writer.
pub async fn lock_workspace(conn: &mut DbConn, workspace_id: Uuid) -> Result<(), DbError> {
    if let DbConn::Postgres(c) = conn {
        let c: &mut diesel_async::AsyncPgConnection = c;
        workspaces::table
            .find(DbUuid(workspace_id))
            .select(workspaces::id)
            .for_no_key_update()
            .first::<DbUuid>(c)
            .await
            .optional()?;
    }
    Ok(())
}

/// What a call needs to know of a stored tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallableTool {
    /// Its input schema names `x-mcp-header` parameters.
    pub header_parameters: bool,
    /// Its annotations, as JSON text.
    pub annotations: Option<String>,
}

/// What a tool call reads besides its server, as the caller decides from the server's row.
pub struct CallReads {
    /// Whose grant and own catalogue the call uses: a member's on a per-user server, `None`
    /// for the workspace's.
    pub holder: Option<Uuid>,
    /// Whether the call needs that grant.
    pub grant: bool,
}

/// What a tool call reads, in one checkout: on SQLite on the caller's thread, on PostgreSQL
/// in one round trip for a call that needs no grant and no member's own catalogue.
pub struct ForCall {
    /// The server.
    pub server: McpServerRow,
    /// The tool, in the holder's own catalogue when they have one and otherwise in the
    /// server's; `None` when that catalogue does not list it.
    pub tool: Option<CallableTool>,
    /// The holder's grant, when [`CallReads::grant`] asked for it and it exists.
    pub grant: Option<OauthGrantRow>,
}

/// The server with this id, and what a tool call on it reads besides ([`CallReads`], decided by
/// `reads` from the server's row): the tool named `name` and the holder's grant. `None` when
/// there is no such server. The read of every tool call; callers check access to the server
/// before using any of it.
pub async fn find_for_call(
    conn: &mut DbConn,
    server_id: Uuid,
    name: &str,
    reads: impl FnOnce(&McpServerRow) -> CallReads + Send + 'static,
) -> Result<Option<ForCall>, DbError> {
    type Found = Option<(bool, Option<String>)>;
    let found = match conn {
        DbConn::Postgres(c) => {
            let c: &diesel_async::AsyncPgConnection = c;
            // The server (its text written once: a server row is many columns) and the tool in
            // the server's catalogue, asked together in one round trip: that tool is the one
            // every call reads but a member's with a catalogue of their own.
            let (mut server_conn, mut tool_conn) = (c, c);
            let (server, shared_tool) = futures_util::future::join(
                super::fixed::ServerById(DbUuid(server_id))
                    .get_result::<McpServerRow>(&mut server_conn),
                callable_tool_query!(server_id, name).get_result(&mut tool_conn),
            )
            .await;
            let Some(server) = server.optional()? else {
                return Ok(None);
            };
            let shared_tool: Found = shared_tool.optional()?;
            let mut c = c;
            let reads = reads(&server);
            let own = match reads.holder {
                Some(user) => user_catalogue_query!(server_id, user)
                    .get_result::<i32>(&mut c)
                    .await
                    .optional()?
                    .map(|_| user),
                None => None,
            };
            let tool: Found = match own {
                Some(user) => callable_user_tool_query!(server_id, user, name)
                    .get_result(&mut c)
                    .await
                    .optional()?,
                None => shared_tool,
            };
            let grant = match (reads.grant, reads.holder) {
                (false, _) => None,
                (true, Some(user)) => super::fixed::UserGrant {
                    server: DbUuid(server_id),
                    user: DbUuid(user),
                }
                .get_result::<OauthGrantRow>(&mut c)
                .await
                .optional()?,
                (true, None) => super::fixed::SharedGrant(DbUuid(server_id))
                    .get_result::<OauthGrantRow>(&mut c)
                    .await
                    .optional()?,
            };
            Some((server, tool, grant))
        }
        DbConn::Sqlite(c) => {
            let c: &mut super::SqliteConn = &mut *c;
            let name = name.to_owned();
            super::read_here(c, move |c| {
                use diesel::RunQueryDsl as Sync;
                let Some(server) =
                    Sync::get_result::<McpServerRow>(server_query!(server_id), c).optional()?
                else {
                    return Ok(None);
                };
                let reads = reads(&server);
                let own = match reads.holder {
                    Some(user) => {
                        Sync::get_result::<i32>(user_catalogue_query!(server_id, user), c)
                            .optional()?
                            .map(|_| user)
                    }
                    None => None,
                };
                let tool: Found = match own {
                    Some(user) => {
                        Sync::get_result(callable_user_tool_query!(server_id, user, &name), c)
                            .optional()?
                    }
                    None => {
                        Sync::get_result(callable_tool_query!(server_id, &name), c).optional()?
                    }
                };
                let grant = if reads.grant {
                    grant_read!(server_id, reads.holder, |query| {
                        Sync::first::<OauthGrantRow>(query, c).optional()
                    })?
                } else {
                    None
                };
                Ok(Some((server, tool, grant)))
            })
            .await?
        }
    };
    Ok(found.map(|(server, tool, grant)| ForCall {
        server,
        tool: tool.map(callable),
        grant,
    }))
}

fn callable((header_parameters, annotations): (bool, Option<String>)) -> CallableTool {
    CallableTool {
        header_parameters,
        annotations,
    }
}

/// Matches a schema that names `x-mcp-header` parameters: the SQL form of
/// [`crate::mcp::ToolInfo::names_header_parameters`].
pub(super) const HEADER_PARAMETER_PATTERN: &str = "%x-mcp-header%";

/// Servers by id, in one query (callers check access).
pub async fn by_ids(conn: &mut DbConn, ids: &[Uuid]) -> Result<Vec<McpServerRow>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    Ok(with_conn!(conn, |c| {
        mcp_servers::table
            .filter(mcp_servers::id.eq_any(&ids))
            .select(McpServerRow::as_select())
            .load(c)
            .await
    })?)
}

/// Replace a server's stored tool catalogue (inside the caller's transaction).
pub async fn replace_tools(
    conn: &mut DbConn,
    server_id: Uuid,
    rows: &[ToolRow],
) -> Result<(), DbError> {
    delete_tools(conn, server_id).await?;
    for row in rows {
        // One statement per tool: SQLite has no multi-row insert in diesel's portable subset.
        with_conn!(conn, |c| diesel::insert_into(mcp_tools::table)
            .values(row)
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Claim up to `limit` enabled servers whose last health check is older than `stale_before`
/// (or that were never checked), marking them checked at `now`. Runs in one transaction; on
/// PostgreSQL the rows are locked with `FOR UPDATE SKIP LOCKED`, so replicas claiming at the
/// same time get disjoint sets, and the new timestamp keeps others away until they are stale
/// again.
pub async fn claim_for_health(
    conn: &mut DbConn,
    stale_before: DbTime,
    now: DbTime,
    limit: i64,
) -> Result<Vec<McpServerRow>, DbError> {
    let due = mcp_servers::enabled.eq(true).and(
        mcp_servers::health_checked_at
            .is_null()
            .or(mcp_servers::health_checked_at.lt(stale_before)),
    );
    let rows: Vec<McpServerRow> = match conn {
        DbConn::Postgres(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            mcp_servers::table
                .filter(due)
                .order(mcp_servers::health_checked_at.asc().nulls_first())
                .limit(limit)
                .for_update()
                .skip_locked()
                .select(McpServerRow::as_select())
                .load(c)
                .await?
        }
        DbConn::Sqlite(c) => {
            let c: &mut super::SqliteConn = c;
            mcp_servers::table
                .filter(due)
                .order(mcp_servers::health_checked_at.asc())
                .limit(limit)
                .select(McpServerRow::as_select())
                .load(c)
                .await?
        }
    };
    let ids: Vec<DbUuid> = rows.iter().map(|r| r.id).collect();
    if !ids.is_empty() {
        with_conn!(conn, |c| {
            diesel::update(mcp_servers::table.filter(mcp_servers::id.eq_any(&ids)))
                .set(mcp_servers::health_checked_at.eq(Some(now)))
                .execute(c)
                .await
        })?;
    }
    Ok(rows)
}

/// How many servers are in each (connection status, auth status) pair.
pub async fn status_counts(conn: &mut DbConn) -> Result<Vec<(String, String, i64)>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_servers::table
            .group_by((mcp_servers::connection_status, mcp_servers::auth_status))
            .select((
                mcp_servers::connection_status,
                mcp_servers::auth_status,
                diesel::dsl::count_star(),
            ))
            .order((mcp_servers::connection_status, mcp_servers::auth_status))
            .load(c)
            .await
    })?)
}

/// Every tool of a server's catalogue, in name order (bounded by the tools-per-server quota).
pub async fn all_tools(conn: &mut DbConn, server_id: Uuid) -> Result<Vec<ToolRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_tools::table
            .filter(mcp_tools::server_id.eq(DbUuid(server_id)))
            .order(mcp_tools::name.asc())
            .select(ToolRow::as_select())
            .load(c)
            .await
    })?)
}

/// Replace `user_id`'s own catalogue of a server (inside the caller's transaction).
pub async fn replace_user_tools(
    conn: &mut DbConn,
    server_id: Uuid,
    user_id: Uuid,
    rows: &[ToolRow],
    now: DbTime,
) -> Result<(), DbError> {
    delete_user_tools(conn, server_id, user_id).await?;
    let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    with_conn!(conn, |c| diesel::insert_into(mcp_user_catalogues::table)
        .values((
            mcp_user_catalogues::server_id.eq(DbUuid(server_id)),
            mcp_user_catalogues::user_id.eq(DbUuid(user_id)),
            mcp_user_catalogues::tool_count.eq(count),
            mcp_user_catalogues::refreshed_at.eq(now),
        ))
        .execute(c)
        .await)?;
    for row in rows {
        let own = UserToolRow {
            server_id: DbUuid(server_id),
            user_id: DbUuid(user_id),
            name: row.name.clone(),
            title: row.title.clone(),
            description: row.description.clone(),
            input_schema: row.input_schema.clone(),
            output_schema: row.output_schema.clone(),
            annotations: row.annotations.clone(),
            updated_at: row.updated_at,
        };
        with_conn!(conn, |c| diesel::insert_into(mcp_user_tools::table)
            .values(&own)
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Forget `user_id`'s own catalogue of a server: they see the server's again.
pub async fn delete_user_tools(
    conn: &mut DbConn,
    server_id: Uuid,
    user_id: Uuid,
) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_user_tools::table
                .filter(mcp_user_tools::server_id.eq(DbUuid(server_id)))
                .filter(mcp_user_tools::user_id.eq(DbUuid(user_id))),
        )
        .execute(c)
        .await
    })?;
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_user_catalogues::table
                .filter(mcp_user_catalogues::server_id.eq(DbUuid(server_id)))
                .filter(mcp_user_catalogues::user_id.eq(DbUuid(user_id))),
        )
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Forget every member's own catalogue of a server (its catalogue was forgotten).
pub async fn delete_all_user_tools(conn: &mut DbConn, server_id: Uuid) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_user_tools::table.filter(mcp_user_tools::server_id.eq(DbUuid(server_id))),
        )
        .execute(c)
        .await
    })?;
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_user_catalogues::table.filter(mcp_user_catalogues::server_id.eq(DbUuid(server_id))),
        )
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Which of these servers `user_id` has a catalogue of their own of, with its tool count.
pub async fn user_catalogues(
    conn: &mut DbConn,
    server_ids: &[Uuid],
    user_id: Uuid,
) -> Result<Vec<(Uuid, i32)>, DbError> {
    let ids: Vec<DbUuid> = server_ids.iter().copied().map(DbUuid).collect();
    let found: Vec<(DbUuid, i32)> = with_conn!(conn, |c| {
        mcp_user_catalogues::table
            .filter(mcp_user_catalogues::server_id.eq_any(&ids))
            .filter(mcp_user_catalogues::user_id.eq(DbUuid(user_id)))
            .select((
                mcp_user_catalogues::server_id,
                mcp_user_catalogues::tool_count,
            ))
            .load(c)
            .await
    })?;
    Ok(found.into_iter().map(|(id, count)| (id.0, count)).collect())
}

/// A page of `user_id`'s own catalogue of a server, in name order after `after`.
pub async fn user_tool_page(
    conn: &mut DbConn,
    server_id: Uuid,
    user_id: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ToolRow>, DbError> {
    let after = after.unwrap_or_default().to_owned();
    Ok(with_conn!(conn, |c| {
        mcp_user_tools::table
            .filter(mcp_user_tools::server_id.eq(DbUuid(server_id)))
            .filter(mcp_user_tools::user_id.eq(DbUuid(user_id)))
            .filter(mcp_user_tools::name.gt(&after))
            .order(mcp_user_tools::name.asc())
            .limit(limit)
            .select((
                mcp_user_tools::server_id,
                mcp_user_tools::name,
                mcp_user_tools::title,
                mcp_user_tools::description,
                mcp_user_tools::input_schema,
                mcp_user_tools::output_schema,
                mcp_user_tools::annotations,
                mcp_user_tools::updated_at,
            ))
            .load::<ToolRow>(c)
            .await
    })?)
}
