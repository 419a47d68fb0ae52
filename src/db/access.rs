//! Workspaces, users, memberships and API tokens.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::models::{ApiTokenRow, MemberRow, ProvisionedUserRow, UserRow, WorkspaceRow};
use super::schema::{api_tokens, users, workspace_members, workspaces};
use super::types::UserKind;
use super::{DbConn, DbError, DbTime, DbUuid};
use crate::with_conn;

/// Insert a user.
pub async fn insert_user(conn: &mut DbConn, row: &UserRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(users::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Insert a user signed in from an identity provider.
pub async fn insert_provisioned_user(
    conn: &mut DbConn,
    row: &ProvisionedUserRow,
) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(users::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// The user an identity provider's issuer and subject name.
pub async fn find_user_by_identity(
    conn: &mut DbConn,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        users::table
            .filter(users::issuer.eq(issuer))
            .filter(users::subject.eq(subject))
            .select(UserRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Every membership of one user.
pub async fn members_of_user(conn: &mut DbConn, user_id: Uuid) -> Result<Vec<MemberRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        workspace_members::table
            .filter(workspace_members::user_id.eq(DbUuid(user_id)))
            .select(MemberRow::as_select())
            .load(c)
            .await
    })?)
}

/// Insert a workspace.
pub async fn insert_workspace(conn: &mut DbConn, row: &WorkspaceRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(workspaces::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Add a member, or change the role of an existing one.
pub async fn upsert_member(conn: &mut DbConn, row: &MemberRow) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::insert_into(workspace_members::table)
            .values(row)
            .on_conflict((workspace_members::workspace_id, workspace_members::user_id))
            .do_update()
            .set(workspace_members::role.eq(&row.role))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// Hold off every other writer of users until the current transaction ends, so that a check
/// over the existing users (no other user has that name) still holds when an insert commits.
/// On PostgreSQL the table is locked in `SHARE ROW EXCLUSIVE` mode, which only conflicts with
/// writes (reads, and the key checks of rows referring to users, go on); on SQLite the write
/// transaction (`BEGIN IMMEDIATE`) already excludes every other writer. Call inside a
/// transaction.
pub async fn lock_users(conn: &mut DbConn) -> Result<(), DbError> {
    if let DbConn::Postgres(c) = conn {
        let c: &mut diesel_async::AsyncPgConnection = c;
        diesel::sql_query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .execute(c)
            .await?;
    }
    Ok(())
}

/// Every user, oldest first (ties by id, so the order is stable).
pub async fn all_users(conn: &mut DbConn) -> Result<Vec<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        users::table
            .order((users::created_at.asc(), users::id.asc()))
            .select(UserRow::as_select())
            .load(c)
            .await
    })?)
}

/// Every workspace, oldest first (ties by id, so the order is stable).
pub async fn all_workspaces(conn: &mut DbConn) -> Result<Vec<WorkspaceRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        workspaces::table
            .order((workspaces::created_at.asc(), workspaces::id.asc()))
            .select(WorkspaceRow::as_select())
            .load(c)
            .await
    })?)
}

/// Every membership of every workspace, oldest first.
pub async fn all_members(conn: &mut DbConn) -> Result<Vec<MemberRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        workspace_members::table
            .order((
                workspace_members::created_at.asc(),
                workspace_members::workspace_id.asc(),
                workspace_members::user_id.asc(),
            ))
            .select(MemberRow::as_select())
            .load(c)
            .await
    })?)
}

/// Whether any user exists (an empty database gets bootstrapped).
pub async fn any_user(conn: &mut DbConn) -> Result<bool, DbError> {
    let found: Option<DbUuid> = with_conn!(conn, |c| {
        users::table.select(users::id).first(c).await.optional()
    })?;
    Ok(found.is_some())
}

/// Find a user.
pub async fn find_user(conn: &mut DbConn, id: Uuid) -> Result<Option<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        users::table
            .find(DbUuid(id))
            .select(UserRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Find a workspace.
pub async fn find_workspace(conn: &mut DbConn, id: Uuid) -> Result<Option<WorkspaceRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        workspaces::table
            .find(DbUuid(id))
            .select(WorkspaceRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Users by id, in one query.
pub async fn users_by_ids(conn: &mut DbConn, ids: &[Uuid]) -> Result<Vec<UserRow>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    Ok(with_conn!(conn, |c| {
        users::table
            .filter(users::id.eq_any(&ids))
            .select(UserRow::as_select())
            .load(c)
            .await
    })?)
}

/// Workspaces by id, in one query.
pub async fn workspaces_by_ids(
    conn: &mut DbConn,
    ids: &[Uuid],
) -> Result<Vec<WorkspaceRow>, DbError> {
    let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
    Ok(with_conn!(conn, |c| {
        workspaces::table
            .filter(workspaces::id.eq_any(&ids))
            .select(WorkspaceRow::as_select())
            .load(c)
            .await
    })?)
}

/// One membership.
pub async fn find_member(
    conn: &mut DbConn,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<Option<MemberRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        workspace_members::table
            .find((DbUuid(workspace_id), DbUuid(user_id)))
            .select(MemberRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// Insert an API token.
pub async fn insert_token(conn: &mut DbConn, row: &ApiTokenRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(api_tokens::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// A live (unrevoked) token by hash, with its user and all of the user's memberships, in one
/// query: authentication runs on every request.
pub async fn find_live_token_with_memberships(
    conn: &mut DbConn,
    token_hash: &str,
) -> Result<Option<(ApiTokenRow, UserRow, Vec<MemberRow>)>, DbError> {
    let rows: Vec<(ApiTokenRow, UserRow, Option<MemberRow>)> = with_conn!(conn, |c| {
        api_tokens::table
            .inner_join(users::table.left_join(workspace_members::table))
            .filter(api_tokens::token_hash.eq(token_hash))
            .filter(api_tokens::revoked_at.is_null())
            .filter(users::deleted_at.is_null())
            .select((
                ApiTokenRow::as_select(),
                UserRow::as_select(),
                Option::<MemberRow>::as_select(),
            ))
            .load(c)
            .await
    })?;
    let mut rows = rows.into_iter();
    let Some((token, user, first)) = rows.next() else {
        return Ok(None);
    };
    let memberships = first
        .into_iter()
        .chain(rows.filter_map(|(_, _, member)| member))
        .collect();
    Ok(Some((token, user, memberships)))
}

/// Record that a token was used.
pub async fn touch_token(conn: &mut DbConn, id: Uuid, at: DbTime) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::update(api_tokens::table.find(DbUuid(id)))
            .set(api_tokens::last_used_at.eq(Some(at)))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// Revoke one of the user's own live tokens; returns whether one was revoked.
pub async fn revoke_token(
    conn: &mut DbConn,
    id: Uuid,
    user_id: Uuid,
    at: DbTime,
) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            api_tokens::table
                .filter(api_tokens::id.eq(DbUuid(id)))
                .filter(api_tokens::user_id.eq(DbUuid(user_id)))
                .filter(api_tokens::revoked_at.is_null()),
        )
        .set(api_tokens::revoked_at.eq(Some(at)))
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// A user's tokens, newest first (hashes included; callers must not expose them).
pub async fn tokens_of(conn: &mut DbConn, user_id: Uuid) -> Result<Vec<ApiTokenRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        api_tokens::table
            .filter(api_tokens::user_id.eq(DbUuid(user_id)))
            .order(api_tokens::id.desc())
            .select(ApiTokenRow::as_select())
            .load(c)
            .await
    })?)
}

/// Lock a workspace's memberships until the current transaction ends, so that checks like
/// "another admin remains" hold when the change commits; returns whether the workspace exists.
/// On PostgreSQL the workspace row is locked (`FOR UPDATE`); on SQLite the write transaction
/// (`BEGIN IMMEDIATE`) already excludes every other writer. Call inside a transaction.
pub async fn lock_workspace(conn: &mut DbConn, workspace_id: Uuid) -> Result<bool, DbError> {
    let found: Option<DbUuid> = match conn {
        DbConn::Postgres(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            workspaces::table
                .find(DbUuid(workspace_id))
                .select(workspaces::id)
                .for_update()
                .first(c)
                .await
                .optional()?
        }
        DbConn::Sqlite(c) => {
            let c: &mut super::SqliteConn = c;
            workspaces::table
                .find(DbUuid(workspace_id))
                .select(workspaces::id)
                .first(c)
                .await
                .optional()?
        }
    };
    Ok(found.is_some())
}

/// How many members of a workspace have the given role.
pub async fn count_members_with_role(
    conn: &mut DbConn,
    workspace_id: Uuid,
    role: &str,
) -> Result<i64, DbError> {
    Ok(with_conn!(conn, |c| {
        workspace_members::table
            .filter(workspace_members::workspace_id.eq(DbUuid(workspace_id)))
            .filter(workspace_members::role.eq(role))
            .count()
            .get_result(c)
            .await
    })?)
}

/// Remove a membership; returns whether there was one.
pub async fn delete_member(
    conn: &mut DbConn,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<bool, DbError> {
    let deleted = with_conn!(conn, |c| {
        diesel::delete(workspace_members::table.find((DbUuid(workspace_id), DbUuid(user_id))))
            .execute(c)
            .await
    })?;
    Ok(deleted == 1)
}

/// Grant or withdraw the instance-wide privilege of a person; returns whether such a person
/// exists.
pub async fn set_operator(
    conn: &mut DbConn,
    user_id: Uuid,
    operator: bool,
) -> Result<bool, DbError> {
    let changed = with_conn!(conn, |c| {
        diesel::update(
            users::table
                .filter(users::id.eq(DbUuid(user_id)))
                .filter(users::kind.eq(UserKind::Human.as_str())),
        )
        .set(users::operator.eq(operator))
        .execute(c)
        .await
    })?;
    Ok(changed == 1)
}

/// Live service accounts, oldest first: those scoped to `workspace_id`, or the instance-wide
/// ones when `None`.
pub async fn service_accounts(
    conn: &mut DbConn,
    workspace_id: Option<Uuid>,
) -> Result<Vec<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        let mut query = users::table
            .filter(users::kind.eq(UserKind::ServiceAccount.as_str()))
            .filter(users::deleted_at.is_null())
            .order((users::created_at.asc(), users::id.asc()))
            .select(UserRow::as_select())
            .into_boxed();
        query = match workspace_id {
            Some(id) => query.filter(users::scope_workspace_id.eq(DbUuid(id))),
            None => query.filter(users::scope_workspace_id.is_null()),
        };
        query.load(c).await
    })?)
}

/// Mark a service account deleted.
pub async fn mark_deleted(conn: &mut DbConn, user_id: Uuid, at: DbTime) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::update(users::table.find(DbUuid(user_id)))
            .set(users::deleted_at.eq(Some(at)))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// Revoke every live token of a user; returns the ids revoked.
pub async fn revoke_all_tokens(
    conn: &mut DbConn,
    user_id: Uuid,
    at: DbTime,
) -> Result<Vec<Uuid>, DbError> {
    let ids: Vec<DbUuid> = with_conn!(conn, |c| {
        api_tokens::table
            .filter(api_tokens::user_id.eq(DbUuid(user_id)))
            .filter(api_tokens::revoked_at.is_null())
            .select(api_tokens::id)
            .load(c)
            .await
    })?;
    with_conn!(conn, |c| {
        diesel::update(api_tokens::table.filter(api_tokens::id.eq_any(&ids)))
            .set(api_tokens::revoked_at.eq(Some(at)))
            .execute(c)
            .await
    })?;
    Ok(ids.into_iter().map(|id| id.0).collect())
}
