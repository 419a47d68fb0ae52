//! OAuth grants: one row per server, holding the sealed tokens, the client registration and
//! the pending flow. Token saves are compare-and-swap on `token_generation`.

use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use uuid::Uuid;

use super::models::{GrantSummary, OauthGrantRow};
use super::schema::mcp_server_oauth;
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

/// Every grant, in server order, after `after` (used to re-seal secrets in batches).
pub async fn grant_batch_after(
    conn: &mut DbConn,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        let mut query = mcp_server_oauth::table
            .order(mcp_server_oauth::server_id.asc())
            .limit(limit)
            .select(OauthGrantRow::as_select())
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(mcp_server_oauth::server_id.gt(DbUuid(after)));
        }
        query.load(c).await
    })?)
}

/// Replace the sealed columns of a grant (key rotation).
pub async fn save_grant_sealed(
    conn: &mut DbConn,
    server_id: DbUuid,
    client_information_sealed: Option<&str>,
    tokens_sealed: Option<&str>,
    code_verifier_sealed: Option<&str>,
) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::update(mcp_server_oauth::table.find(server_id))
            .set((
                mcp_server_oauth::client_information_sealed.eq(client_information_sealed),
                mcp_server_oauth::tokens_sealed.eq(tokens_sealed),
                mcp_server_oauth::code_verifier_sealed.eq(code_verifier_sealed),
            ))
            .execute(c)
            .await
    })?;
    Ok(())
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

/// The grant whose pending flow has this state hash.
pub async fn find_grant_by_state(
    conn: &mut DbConn,
    state_hash: &str,
) -> Result<Option<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_server_oauth::table
            .filter(mcp_server_oauth::state_hash.eq(state_hash))
            .select(OauthGrantRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// The grant whose pending flow has this begin-link hash.
pub async fn find_grant_by_flow(
    conn: &mut DbConn,
    flow_id_hash: &str,
) -> Result<Option<OauthGrantRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        mcp_server_oauth::table
            .filter(mcp_server_oauth::flow_id_hash.eq(flow_id_hash))
            .select(OauthGrantRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
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

/// Burn a pending flow: forget its state, verifier, begin link and binding, but only if the
/// state is still the one given (so exactly one callback can win).
pub async fn burn_flow(
    conn: &mut DbConn,
    server_id: Uuid,
    state_hash: &str,
    at: DbTime,
) -> Result<bool, DbError> {
    let none: Option<String> = None;
    let no_time: Option<DbTime> = None;
    let changed = with_conn!(conn, |c| {
        diesel::update(
            mcp_server_oauth::table
                .filter(mcp_server_oauth::server_id.eq(DbUuid(server_id)))
                .filter(mcp_server_oauth::state_hash.eq(state_hash)),
        )
        .set((
            mcp_server_oauth::state_hash.eq(&none),
            mcp_server_oauth::state_created_at.eq(no_time),
            mcp_server_oauth::code_verifier_sealed.eq(&none),
            mcp_server_oauth::flow_id_hash.eq(&none),
            mcp_server_oauth::browser_binding_hash.eq(&none),
            mcp_server_oauth::authorization_url_sealed.eq(&none),
            mcp_server_oauth::updated_at.eq(at),
        ))
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Record the browser binding of a pending flow, once: returns false when the begin link was
/// already used.
pub async fn bind_flow(
    conn: &mut DbConn,
    server_id: Uuid,
    flow_id_hash: &str,
    binding_hash: &str,
) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            mcp_server_oauth::table
                .filter(mcp_server_oauth::server_id.eq(DbUuid(server_id)))
                .filter(mcp_server_oauth::flow_id_hash.eq(flow_id_hash))
                .filter(mcp_server_oauth::browser_binding_hash.is_null()),
        )
        .set(mcp_server_oauth::browser_binding_hash.eq(Some(binding_hash)))
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

/// Serialise token refreshes of one grant across every process sharing the database. On
/// PostgreSQL this takes a transaction-scoped advisory lock (call inside a transaction; it is
/// released at commit or rollback). SQLite serves one process, whose in-process single-flight
/// already serialises refreshes, so there it does nothing.
pub async fn lock_grant(conn: &mut DbConn, server_id: Uuid) -> Result<(), DbError> {
    if let DbConn::Postgres(c) = conn {
        let key = grant_lock_key(server_id);
        c.batch_execute(&format!("SELECT pg_advisory_xact_lock({key})"))
            .await?;
    }
    Ok(())
}

/// A 64-bit advisory lock key derived from the whole server id (both halves folded), so
/// servers created in the same millisecond still get different keys.
fn grant_lock_key(server_id: Uuid) -> i64 {
    let (high, low) = server_id.as_u64_pair();
    i64::from_ne_bytes((high ^ low).to_ne_bytes())
}
