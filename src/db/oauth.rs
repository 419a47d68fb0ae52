//! OAuth client registrations (one per server and authorization server), grants (sealed tokens
//! and the refresh lease; one shared grant per server, or one per server and user) and pending
//! flows (one per server and user). Token saves are compare-and-swap on `token_generation`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::models::{FlowRow, GrantSummary, OauthGrantRow, RegistrationRow};
use super::schema::{mcp_oauth_flows, mcp_oauth_grants, mcp_oauth_registrations, mcp_servers};
use super::{DbConn, DbError, DbTime, DbUuid};
use crate::with_conn;

/// What the API shows of the workspace's shared grants of these servers, in one query.
pub async fn shared_grant_summaries(
    conn: &mut DbConn,
    ids: &[Uuid],
) -> Result<Vec<GrantSummary>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    Ok(with_conn!(conn, |c| {
        mcp_oauth_grants::table
            .filter(mcp_oauth_grants::server_id.eq_any(&ids))
            .filter(mcp_oauth_grants::user_id.is_null())
            .select(GrantSummary::as_select())
            .load(c)
            .await
    })?)
}

/// Every per-user grant of one server, oldest first, up to `limit` after the grant `after`.
pub async fn user_grants_of_server(
    conn: &mut DbConn,
    server_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<GrantSummary>, DbError> {
    let after = DbUuid(after.unwrap_or(Uuid::nil()));
    Ok(with_conn!(conn, |c| {
        mcp_oauth_grants::table
            .filter(mcp_oauth_grants::server_id.eq(DbUuid(server_id)))
            .filter(mcp_oauth_grants::user_id.is_not_null())
            .filter(mcp_oauth_grants::id.gt(after))
            .order(mcp_oauth_grants::id.asc())
            .limit(limit)
            .select(GrantSummary::as_select())
            .load(c)
            .await
    })?)
}

/// Insert a grant row.
pub async fn insert_grant(conn: &mut DbConn, row: &OauthGrantRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(mcp_oauth_grants::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Remove one grant; returns whether it was there.
pub async fn delete_grant(conn: &mut DbConn, grant_id: Uuid) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::delete(mcp_oauth_grants::table.find(DbUuid(grant_id)))
            .execute(c)
            .await
    })?;
    Ok(changed == 1)
}

/// Remove every grant of a server (shared and per user); returns how many there were.
pub async fn delete_grants_of_server(conn: &mut DbConn, server_id: Uuid) -> Result<usize, DbError> {
    Ok(with_conn!(conn, |c| {
        diesel::delete(
            mcp_oauth_grants::table.filter(mcp_oauth_grants::server_id.eq(DbUuid(server_id))),
        )
        .execute(c)
        .await
    })?)
}

/// Every grant of a server (shared and per user).
pub async fn grants_of_server(
    conn: &mut DbConn,
    server_id: Uuid,
) -> Result<Vec<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_grants::table
            .filter(mcp_oauth_grants::server_id.eq(DbUuid(server_id)))
            .select(OauthGrantRow::as_select())
            .load(c)
            .await
    })?)
}

/// The grant of one server held by `user` (`None`: the workspace's shared grant).
pub async fn find_grant(
    conn: &mut DbConn,
    server_id: Uuid,
    user: Option<Uuid>,
) -> Result<Option<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        grant_read!(server_id, user, |query| query.first(c).await.optional())
    })?)
}

/// One grant by id.
pub async fn find_grant_by_id(
    conn: &mut DbConn,
    grant_id: Uuid,
) -> Result<Option<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_grants::table
            .find(DbUuid(grant_id))
            .select(OauthGrantRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Whether any grant of a server holds tokens.
pub async fn has_tokens(conn: &mut DbConn, server_id: Uuid) -> Result<bool, DbError> {
    let found: Option<DbUuid> = with_conn!(conn, |c| {
        mcp_oauth_grants::table
            .filter(mcp_oauth_grants::server_id.eq(DbUuid(server_id)))
            .filter(mcp_oauth_grants::tokens_sealed.is_not_null())
            .select(mcp_oauth_grants::id)
            .first(c)
            .await
            .optional()
    })?;
    Ok(found.is_some())
}

/// Write every column of a grant; returns whether a row was written.
pub async fn save_grant(conn: &mut DbConn, row: &OauthGrantRow) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(mcp_oauth_grants::table.find(row.id))
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
            mcp_oauth_grants::table
                .filter(mcp_oauth_grants::id.eq(row.id))
                .filter(mcp_oauth_grants::token_generation.eq(expected)),
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
        mcp_oauth_grants::table
            .filter(mcp_oauth_grants::tokens_sealed.is_not_null())
            .filter(mcp_oauth_grants::access_expires_at.lt(before))
            .order(mcp_oauth_grants::access_expires_at.asc())
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
    grant_id: Uuid,
    generation: i64,
    owner: &str,
    now: DbTime,
    until: DbTime,
) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            mcp_oauth_grants::table
                .filter(mcp_oauth_grants::id.eq(DbUuid(grant_id)))
                .filter(mcp_oauth_grants::token_generation.eq(generation))
                .filter(
                    mcp_oauth_grants::refresh_lease_until
                        .is_null()
                        .or(mcp_oauth_grants::refresh_lease_until.lt(now)),
                ),
        )
        .set((
            mcp_oauth_grants::refresh_lease_owner.eq(Some(owner)),
            mcp_oauth_grants::refresh_lease_until.eq(Some(until)),
        ))
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Give up a refresh lease this owner holds (after a refresh that saved nothing).
pub async fn release_refresh_lease(
    conn: &mut DbConn,
    grant_id: Uuid,
    owner: &str,
) -> Result<(), DbError> {
    let none: Option<String> = None;
    let no_time: Option<DbTime> = None;
    with_conn!(conn, |c| {
        diesel::update(
            mcp_oauth_grants::table
                .filter(mcp_oauth_grants::id.eq(DbUuid(grant_id)))
                .filter(mcp_oauth_grants::refresh_lease_owner.eq(owner)),
        )
        .set((
            mcp_oauth_grants::refresh_lease_owner.eq(none),
            mcp_oauth_grants::refresh_lease_until.eq(no_time),
        ))
        .execute(c)
        .await
    })?;
    Ok(())
}

/// The registration of a server with one authorization server.
pub async fn find_registration(
    conn: &mut DbConn,
    server_id: Uuid,
    issuer: &str,
) -> Result<Option<RegistrationRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_registrations::table
            .filter(mcp_oauth_registrations::server_id.eq(DbUuid(server_id)))
            .filter(mcp_oauth_registrations::issuer.eq(issuer))
            .select(RegistrationRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Store a registration, replacing the one the server had with the same issuer.
pub async fn put_registration(conn: &mut DbConn, row: &RegistrationRow) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_oauth_registrations::table
                .filter(mcp_oauth_registrations::server_id.eq(row.server_id))
                .filter(mcp_oauth_registrations::issuer.eq(&row.issuer)),
        )
        .execute(c)
        .await
    })?;
    with_conn!(conn, |c| diesel::insert_into(
        mcp_oauth_registrations::table
    )
    .values(row)
    .execute(c)
    .await)?;
    Ok(())
}

/// Forget a server's registration with one authorization server.
pub async fn delete_registration(
    conn: &mut DbConn,
    server_id: Uuid,
    issuer: &str,
) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_oauth_registrations::table
                .filter(mcp_oauth_registrations::server_id.eq(DbUuid(server_id)))
                .filter(mcp_oauth_registrations::issuer.eq(issuer)),
        )
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Forget every registration of a server.
pub async fn delete_registrations_of_server(
    conn: &mut DbConn,
    server_id: Uuid,
) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_oauth_registrations::table
                .filter(mcp_oauth_registrations::server_id.eq(DbUuid(server_id))),
        )
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

/// Delete up to `limit` expired flows; returns the server and user of each.
pub async fn delete_expired_flows(
    conn: &mut DbConn,
    now: DbTime,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>, DbError> {
    let expired: Vec<(DbUuid, DbUuid, DbUuid)> = with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::expires_at.le(now))
            .order(mcp_oauth_flows::expires_at.asc())
            .limit(limit)
            .select((
                mcp_oauth_flows::id,
                mcp_oauth_flows::server_id,
                mcp_oauth_flows::user_id,
            ))
            .load(c)
            .await
    })?;
    if expired.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<DbUuid> = expired.iter().map(|(id, _, _)| *id).collect();
    with_conn!(conn, |c| {
        diesel::delete(mcp_oauth_flows::table.filter(mcp_oauth_flows::id.eq_any(&ids)))
            .execute(c)
            .await
    })?;
    Ok(expired
        .into_iter()
        .map(|(_, server, user)| (server.0, user.0))
        .collect())
}

/// The grants `user_id` holds on the servers of one workspace.
pub async fn user_grants_in_workspace(
    conn: &mut DbConn,
    user_id: Uuid,
    workspace_id: Uuid,
) -> Result<Vec<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_oauth_grants::table
            .inner_join(mcp_servers::table)
            .filter(mcp_oauth_grants::user_id.eq(DbUuid(user_id)))
            .filter(mcp_servers::workspace_id.eq(DbUuid(workspace_id)))
            .select(OauthGrantRow::as_select())
            .load(c)
            .await
    })?)
}

/// Remove `user_id`'s pending flows on the servers of one workspace.
pub async fn delete_user_flows_in_workspace(
    conn: &mut DbConn,
    user_id: Uuid,
    workspace_id: Uuid,
) -> Result<(), DbError> {
    let servers = mcp_servers::table
        .filter(mcp_servers::workspace_id.eq(DbUuid(workspace_id)))
        .select(mcp_servers::id);
    with_conn!(conn, |c| {
        diesel::delete(
            mcp_oauth_flows::table
                .filter(mcp_oauth_flows::user_id.eq(DbUuid(user_id)))
                .filter(mcp_oauth_flows::server_id.eq_any(servers)),
        )
        .execute(c)
        .await
    })?;
    Ok(())
}

/// What the API shows of `user`'s own grants on these servers, in one query.
pub async fn own_grant_summaries(
    conn: &mut DbConn,
    ids: &[Uuid],
    user: Uuid,
) -> Result<Vec<GrantSummary>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    Ok(with_conn!(conn, |c| {
        mcp_oauth_grants::table
            .filter(mcp_oauth_grants::server_id.eq_any(&ids))
            .filter(mcp_oauth_grants::user_id.eq(DbUuid(user)))
            .select(GrantSummary::as_select())
            .load(c)
            .await
    })?)
}

/// Which of these servers `user` has a live flow on, in one query.
pub async fn servers_with_own_live_flows(
    conn: &mut DbConn,
    ids: &[Uuid],
    user: Uuid,
    now: DbTime,
) -> Result<Vec<Uuid>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    let found: Vec<DbUuid> = with_conn!(conn, |c| {
        mcp_oauth_flows::table
            .filter(mcp_oauth_flows::server_id.eq_any(&ids))
            .filter(mcp_oauth_flows::user_id.eq(DbUuid(user)))
            .filter(mcp_oauth_flows::expires_at.gt(now))
            .select(mcp_oauth_flows::server_id)
            .load(c)
            .await
    })?;
    Ok(found.into_iter().map(|id| id.0).collect())
}
