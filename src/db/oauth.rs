//! OAuth grants (one row per server: sealed tokens, the client registration with the issuing
//! authorization server, the refresh lease) and pending flows (one row per server and user).
//! Token saves are compare-and-swap on `token_generation`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::models::{FlowRow, GrantSummary, OauthGrantRow};
use super::schema::{mcp_oauth_flows, mcp_server_oauth};
use super::{DbConn, DbError, DbTime, DbUuid};
use crate::with_conn;

/// What the API shows of the grants of these servers, in one query.
pub async fn grants_by_server_ids(
    conn: &mut DbConn,
    ids: &[Uuid],
) -> Result<Vec<GrantSummary>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    Ok(with_conn!(conn, |c| {
        mcp_server_oauth::table
            .filter(mcp_server_oauth::server_id.eq_any(&ids))
            .select(GrantSummary::as_select())
            .load(c)
            .await
    })?)
}

/// Insert a grant row.
pub async fn insert_grant(conn: &mut DbConn, row: &OauthGrantRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(mcp_server_oauth::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Remove a server's grant; returns whether there was one.
pub async fn delete_grant(conn: &mut DbConn, server_id: Uuid) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::delete(mcp_server_oauth::table.find(DbUuid(server_id)))
            .execute(c)
            .await
    })?;
    Ok(changed == 1)
}

/// The grant of one server.
pub async fn find_grant(
    conn: &mut DbConn,
    server_id: Uuid,
) -> Result<Option<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_server_oauth::table
            .find(DbUuid(server_id))
            .select(OauthGrantRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Whether a server has stored OAuth tokens.
pub async fn has_tokens(conn: &mut DbConn, server_id: Uuid) -> Result<bool, DbError> {
    let found: Option<DbUuid> = with_conn!(conn, |c| {
        mcp_server_oauth::table
            .find(DbUuid(server_id))
            .filter(mcp_server_oauth::tokens_sealed.is_not_null())
            .select(mcp_server_oauth::server_id)
            .first(c)
            .await
            .optional()
    })?;
    Ok(found.is_some())
}

/// Write every column of a grant; returns whether a row was written.
pub async fn save_grant(conn: &mut DbConn, row: &OauthGrantRow) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(mcp_server_oauth::table.find(row.server_id))
            .set(row)
            .execute(c)
            .await
    })?;
    Ok(changed == 1)
}

/// Write every column of a grant only if its token generation is still `expected`; returns
/// whether it was written. This is how a token save loses cleanly to a concurrent one.
pub async fn save_grant_if_generation(
    conn: &mut DbConn,
    row: &OauthGrantRow,
    expected: i64,
) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            mcp_server_oauth::table
                .filter(mcp_server_oauth::server_id.eq(row.server_id))
                .filter(mcp_server_oauth::token_generation.eq(expected)),
        )
        .set(row)
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Grants holding tokens whose access token expires before `before`, soonest first.
pub async fn grants_expiring(
    conn: &mut DbConn,
    before: DbTime,
    limit: i64,
) -> Result<Vec<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_server_oauth::table
            .filter(mcp_server_oauth::tokens_sealed.is_not_null())
            .filter(mcp_server_oauth::access_expires_at.lt(before))
            .order(mcp_server_oauth::access_expires_at.asc())
            .limit(limit)
            .select(OauthGrantRow::as_select())
            .load(c)
            .await
    })?)
}

/// Take the refresh lease of a grant: succeeds only if the grant is still at `generation` and
/// nobody holds an unexpired lease. The lease is what lets exactly one process refresh a
/// grant at a time without keeping a connection (or a lock) open across the token request.
pub async fn take_refresh_lease(
    conn: &mut DbConn,
    server_id: Uuid,
    generation: i64,
    owner: &str,
    now: DbTime,
    until: DbTime,
) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            mcp_server_oauth::table
                .filter(mcp_server_oauth::server_id.eq(DbUuid(server_id)))
                .filter(mcp_server_oauth::token_generation.eq(generation))
                .filter(
                    mcp_server_oauth::refresh_lease_until
                        .is_null()
                        .or(mcp_server_oauth::refresh_lease_until.lt(now)),
                ),
        )
        .set((
            mcp_server_oauth::refresh_lease_owner.eq(Some(owner)),
            mcp_server_oauth::refresh_lease_until.eq(Some(until)),
        ))
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Give up a refresh lease this owner holds (after a refresh that saved nothing).
pub async fn release_refresh_lease(
    conn: &mut DbConn,
    server_id: Uuid,
    owner: &str,
) -> Result<(), DbError> {
    let none: Option<String> = None;
    let no_time: Option<DbTime> = None;
    with_conn!(conn, |c| {
        diesel::update(
            mcp_server_oauth::table
                .filter(mcp_server_oauth::server_id.eq(DbUuid(server_id)))
                .filter(mcp_server_oauth::refresh_lease_owner.eq(owner)),
        )
        .set((
            mcp_server_oauth::refresh_lease_owner.eq(none),
            mcp_server_oauth::refresh_lease_until.eq(no_time),
        ))
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Insert a pending flow.
pub async fn insert_flow(conn: &mut DbConn, row: &FlowRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(mcp_oauth_flows::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// The pending flow of one user on one server, live or expired.
pub async fn flow_of(
    conn: &mut DbConn,
    server_id: Uuid,
    user_id: Uuid,
) -> Result<Option<FlowRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::server_id.eq(DbUuid(server_id)))
            .filter(mcp_oauth_flows::user_id.eq(DbUuid(user_id)))
            .select(FlowRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// A live flow on a server started by someone other than `user_id`, if any.
pub async fn live_flow_of_another_user(
    conn: &mut DbConn,
    server_id: Uuid,
    user_id: Uuid,
    now: DbTime,
) -> Result<Option<FlowRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::server_id.eq(DbUuid(server_id)))
            .filter(mcp_oauth_flows::user_id.ne(DbUuid(user_id)))
            .filter(mcp_oauth_flows::expires_at.gt(now))
            .select(FlowRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// The flow whose `state` has this hash.
pub async fn find_flow_by_state(
    conn: &mut DbConn,
    state_hash: &str,
) -> Result<Option<FlowRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::state_hash.eq(state_hash))
            .select(FlowRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// The flow whose begin link has this hash.
pub async fn find_flow_by_begin(
    conn: &mut DbConn,
    begin_hash: &str,
) -> Result<Option<FlowRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::begin_hash.eq(begin_hash))
            .select(FlowRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Record the browser binding of a flow, once: false when the begin link was already used.
pub async fn bind_flow(
    conn: &mut DbConn,
    flow_id: Uuid,
    binding_hash: &str,
) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            mcp_oauth_flows::table
                .filter(mcp_oauth_flows::id.eq(DbUuid(flow_id)))
                .filter(mcp_oauth_flows::browser_binding_hash.is_null()),
        )
        .set(mcp_oauth_flows::browser_binding_hash.eq(Some(binding_hash)))
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Burn a flow (delete it); returns whether it was still there, so exactly one caller wins.
pub async fn burn_flow(conn: &mut DbConn, flow_id: Uuid) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::delete(mcp_oauth_flows::table.find(DbUuid(flow_id)))
            .execute(c)
            .await
    })?;
    Ok(changed == 1)
}

/// Remove one user's flow on a server (a new start replaces it).
pub async fn delete_flow_of(
    conn: &mut DbConn,
    server_id: Uuid,
    user_id: Uuid,
) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_oauth_flows::table
                .filter(mcp_oauth_flows::server_id.eq(DbUuid(server_id)))
                .filter(mcp_oauth_flows::user_id.eq(DbUuid(user_id))),
        )
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Remove every pending flow of a server (its URL or credentials changed).
pub async fn delete_flows_of_server(conn: &mut DbConn, server_id: Uuid) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_oauth_flows::table.filter(mcp_oauth_flows::server_id.eq(DbUuid(server_id))),
        )
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Which of these servers have a live flow, in one query.
pub async fn servers_with_live_flows(
    conn: &mut DbConn,
    ids: &[Uuid],
    now: DbTime,
) -> Result<Vec<Uuid>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    let found: Vec<DbUuid> = with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::server_id.eq_any(&ids))
            .filter(mcp_oauth_flows::expires_at.gt(now))
            .select(mcp_oauth_flows::server_id)
            .distinct()
            .load(c)
            .await
    })?;
    Ok(found.into_iter().map(|id| id.0).collect())
}

/// Delete up to `limit` expired flows; returns the servers they belonged to.
pub async fn delete_expired_flows(
    conn: &mut DbConn,
    now: DbTime,
    limit: i64,
) -> Result<Vec<Uuid>, DbError> {
    let expired: Vec<(DbUuid, DbUuid)> = with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::expires_at.le(now))
            .order(mcp_oauth_flows::expires_at.asc())
            .limit(limit)
            .select((mcp_oauth_flows::id, mcp_oauth_flows::server_id))
            .load(c)
            .await
    })?;
    if expired.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<DbUuid> = expired.iter().map(|(id, _)| *id).collect();
    with_conn!(conn, |c| {
        diesel::delete(mcp_oauth_flows::table.filter(mcp_oauth_flows::id.eq_any(&ids)))
            .execute(c)
            .await
    })?;
    let mut servers: Vec<Uuid> = expired.into_iter().map(|(_, server)| server.0).collect();
    servers.sort_unstable();
    servers.dedup();
    Ok(servers)
}
