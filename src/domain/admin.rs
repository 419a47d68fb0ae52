//! Operator tasks that run without the API: first-start bootstrap, creating users,
//! workspaces and tokens from the command line, finding and listing them, and re-sealing every
//! secret after a key rotation.
//!
//! User names are unique, compared trimmed and without regard to case ([`same_name`]): every
//! insert of a user checks the existing names while holding the users' write lock. A database
//! written before this rule may still hold users sharing a name; they stay, and naming one of
//! them where a single user is meant is refused with the candidates listed. Workspace names
//! may repeat.

use std::collections::HashMap;

use serde_json::json;
use uuid::Uuid;

use super::Context;
use super::access::Role;
use super::workspaces::{NewToken, insert_workspace, issue_token, validate_label};
use super::{Error, Result, bad_input};
use crate::db::models::{UserRow, WorkspaceRow};
use crate::db::{self, DbConn, DbTime, DbUuid, sealed};
use crate::transaction;

/// What first start created on an empty database.
pub struct Bootstrap {
    /// The default workspace.
    pub workspace: WorkspaceRow,
    /// The admin user.
    pub user: UserRow,
    /// The admin's token (shown once).
    pub token: NewToken,
}

/// On an empty database (no users), create a default workspace, an admin user and a token.
/// Returns `None` when the database already has users.
pub async fn bootstrap(ctx: &Context) -> Result<Option<Bootstrap>> {
    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        // Replicas starting together on an empty PostgreSQL database create one admin.
        db::access::lock_users(&mut conn).await?;
        if db::access::any_user(&mut conn).await? {
            return Ok(None);
        }
        // The first user holds the instance-wide privilege too.
        let user = UserRow {
            operator: true,
            ..UserRow::human("admin".into())
        };
        db::access::insert_user(&mut conn, &user).await?;
        let workspace = insert_workspace(&mut conn, "Default", user.id.0).await?;
        let token = issue_token(&mut conn, user.id.0, "bootstrap").await?;
        Ok::<_, Error>(Some(Bootstrap {
            workspace,
            user,
            token,
        }))
    })
}

/// Create a user. A name another user has (trimmed, in any case) is a conflict.
pub async fn create_user(ctx: &Context, name: &str) -> Result<UserRow> {
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        db::access::lock_users(&mut conn).await?;
        ensure_name_free(&mut conn, &name).await?;
        let user = UserRow::human(name);
        db::access::insert_user(&mut conn, &user).await?;
        Ok::<_, Error>(user)
    })
}

/// Refuse (`Conflict`) a user name another user has ([`same_name`]). Call inside a transaction
/// holding the users' write lock ([`db::access::lock_users`]).
pub(super) async fn ensure_name_free(conn: &mut DbConn, name: &str) -> Result<()> {
    // Every user is read: the comparison folds case beyond ASCII, which SQLite's `lower()`
    // does not.
    let users = db::access::all_users(conn).await?;
    if let Some(taken) = users.iter().find(|user| same_name(&user.name, name)) {
        return Err(Error::Conflict {
            message: format!(
                "a user named {:?} already exists ({})",
                taken.name, taken.id.0
            ),
            existing_id: Some(taken.id.0),
        });
    }
    Ok(())
}

/// Grant (or withdraw) the instance-wide privilege: onboarding users, workspaces,
/// memberships and tokens anywhere through the API, and managing instance-wide service
/// accounts. Only people hold it this way; the user's cached principals are dropped.
pub async fn set_operator(ctx: &Context, user_id: Uuid, operator: bool) -> Result<()> {
    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        if !db::access::set_operator(&mut conn, user_id, operator).await? {
            return Err(bad_input("user", "is a service account, not a person"));
        }
        let action = if operator {
            "operator.grant"
        } else {
            "operator.revoke"
        };
        super::audit::record_instance(&mut conn, None, action, Some(user_id), json!({})).await
    })?;
    // Running servers read the privilege again within `access::PRINCIPAL_MAX_AGE`, and
    // WebSocket sessions before their next operation.
    ctx.principals.forget(None);
    Ok(())
}

/// Create a workspace administered by `admin`.
pub async fn create_workspace(ctx: &Context, name: &str, admin: Uuid) -> Result<WorkspaceRow> {
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    let workspace = transaction!(conn, {
        if db::access::find_user(&mut conn, admin).await?.is_none() {
            return Err(bad_input("admin", "no such user"));
        }
        insert_workspace(&mut conn, &name, admin).await
    })?;
    super::access::publish_change(
        ctx,
        super::access::AccessEvent::RoleChanged {
            workspace_id: workspace.id.0,
            user_id: admin,
            role: Role::Admin,
        },
    );
    Ok(workspace)
}

/// Add a user to a workspace with a role, or change their role.
pub async fn add_member(
    ctx: &Context,
    workspace_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<()> {
    let mut conn = ctx.db.conn().await?;
    transaction!(conn, {
        if db::access::find_workspace(&mut conn, workspace_id)
            .await?
            .is_none()
        {
            return Err(bad_input("workspace", "no such workspace"));
        }
        let Some(user) = db::access::find_user(&mut conn, user_id).await? else {
            return Err(bad_input("user", "no such user"));
        };
        if user.kind == db::types::UserKind::ServiceAccount {
            return Err(bad_input(
                "user",
                "a service account belongs to the workspace it was created in",
            ));
        }
        db::access::upsert_member(
            &mut conn,
            &db::models::MemberRow {
                workspace_id: DbUuid(workspace_id),
                user_id: DbUuid(user_id),
                role,
                created_at: DbTime(db::now()),
            },
        )
        .await?;
        Ok::<_, Error>(())
    })?;
    // Sessions and cached principals of the user see the new role.
    super::access::publish_change(
        ctx,
        super::access::AccessEvent::RoleChanged {
            workspace_id,
            user_id,
            role,
        },
    );
    Ok(())
}

/// Create a token for a user.
pub async fn create_token(ctx: &Context, user_id: Uuid, name: &str) -> Result<NewToken> {
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    if db::access::find_user(&mut conn, user_id).await?.is_none() {
        return Err(bad_input("user", "no such user"));
    }
    issue_token(&mut conn, user_id, &name).await
}

/// Whether two names are the same user name: equal once trimmed and lowercased.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// The user an operator means by `reference`: the user with that id, else the one user with
/// that name ([`same_name`]). No match, or a name several users share, is bad input on
/// `field`; the latter lists the candidates.
pub async fn find_user(ctx: &Context, field: &str, reference: &str) -> Result<UserRow> {
    let mut conn = ctx.db.conn().await?;
    if let Some(id) = parse_id(reference)
        && let Some(user) = db::access::find_user(&mut conn, id).await?
    {
        return Ok(user);
    }
    let users = db::access::all_users(&mut conn).await?;
    pick_by_name(field, ("user", "users"), reference, users, |u| {
        (u.id.0, u.name.as_str())
    })
}

/// The workspace an operator means by `reference`: the workspace with that id, else the one
/// workspace with that name (compared like user names). No match, or a name several
/// workspaces share, is bad input on `field`; the latter lists the candidates.
pub async fn find_workspace(ctx: &Context, field: &str, reference: &str) -> Result<WorkspaceRow> {
    let mut conn = ctx.db.conn().await?;
    if let Some(id) = parse_id(reference)
        && let Some(workspace) = db::access::find_workspace(&mut conn, id).await?
    {
        return Ok(workspace);
    }
    let workspaces = db::access::all_workspaces(&mut conn).await?;
    pick_by_name(
        field,
        ("workspace", "workspaces"),
        reference,
        workspaces,
        |w| (w.id.0, w.name.as_str()),
    )
}

fn parse_id(reference: &str) -> Option<Uuid> {
    Uuid::parse_str(reference.trim()).ok()
}

/// The one row named `reference` among `rows`.
fn pick_by_name<T>(
    field: &str,
    (noun, nouns): (&str, &str),
    reference: &str,
    rows: Vec<T>,
    id_and_name: impl Fn(&T) -> (Uuid, &str),
) -> Result<T> {
    let wanted = reference.trim();
    if wanted.is_empty() {
        return Err(bad_input(field, "is required"));
    }
    let mut named: Vec<T> = rows
        .into_iter()
        .filter(|row| same_name(id_and_name(row).1, wanted))
        .collect();
    if named.len() > 1 {
        let candidates = named
            .iter()
            .map(|row| {
                let (id, name) = id_and_name(row);
                format!("{name:?} ({id})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(bad_input(
            field,
            format!(
                "{wanted:?} names {} {nouns}: {candidates}; give the id of one",
                named.len()
            ),
        ));
    }
    named
        .pop()
        .ok_or_else(|| bad_input(field, format!("no {noun} has the id or name {wanted:?}")))
}

/// A user and the workspaces they belong to.
#[derive(Debug, Clone)]
pub struct UserEntry {
    /// The user.
    pub user: UserRow,
    /// Their workspaces, with their role in each, in the order they joined.
    pub workspaces: Vec<(WorkspaceRow, Role)>,
}

/// A workspace and its members.
#[derive(Debug, Clone)]
pub struct WorkspaceEntry {
    /// The workspace.
    pub workspace: WorkspaceRow,
    /// Its members, with their roles, in the order they joined.
    pub members: Vec<(UserRow, Role)>,
}

/// Every user with their workspaces, oldest first.
pub async fn list_users(ctx: &Context) -> Result<Vec<UserEntry>> {
    let (users, workspaces, members) = directory(ctx).await?;
    let workspaces: HashMap<Uuid, WorkspaceRow> =
        workspaces.into_iter().map(|w| (w.id.0, w)).collect();
    let mut joined: HashMap<Uuid, Vec<(WorkspaceRow, Role)>> = HashMap::new();
    for (workspace_id, user_id, role) in members {
        if let Some(workspace) = workspaces.get(&workspace_id) {
            joined
                .entry(user_id)
                .or_default()
                .push((workspace.clone(), role));
        }
    }
    Ok(users
        .into_iter()
        .map(|user| UserEntry {
            workspaces: joined.remove(&user.id.0).unwrap_or_default(),
            user,
        })
        .collect())
}

/// Every workspace with its members, oldest first.
pub async fn list_workspaces(ctx: &Context) -> Result<Vec<WorkspaceEntry>> {
    let (users, workspaces, members) = directory(ctx).await?;
    let users: HashMap<Uuid, UserRow> = users.into_iter().map(|u| (u.id.0, u)).collect();
    let mut joined: HashMap<Uuid, Vec<(UserRow, Role)>> = HashMap::new();
    for (workspace_id, user_id, role) in members {
        if let Some(user) = users.get(&user_id) {
            joined
                .entry(workspace_id)
                .or_default()
                .push((user.clone(), role));
        }
    }
    Ok(workspaces
        .into_iter()
        .map(|workspace| WorkspaceEntry {
            members: joined.remove(&workspace.id.0).unwrap_or_default(),
            workspace,
        })
        .collect())
}

/// Users and workspaces, oldest first, and memberships (workspace id, user id, role) in the
/// order they were made.
async fn directory(
    ctx: &Context,
) -> Result<(Vec<UserRow>, Vec<WorkspaceRow>, Vec<(Uuid, Uuid, Role)>)> {
    let mut conn = ctx.db.conn().await?;
    let users = db::access::all_users(&mut conn).await?;
    let workspaces = db::access::all_workspaces(&mut conn).await?;
    let members = db::access::all_members(&mut conn)
        .await?
        .into_iter()
        .map(|m| (m.workspace_id.0, m.user_id.0, m.role))
        .collect();
    Ok((users, workspaces, members))
}

/// Outcome of [`reseal_all`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    /// Values now sealed under the primary key.
    pub resealed: usize,
    /// Values that no key in the ring opens (left as they were; they read as absent).
    pub unreadable: usize,
}

const BATCH: i64 = 200;

/// Re-seal every value of every sealed column ([`sealed::ALL`]) under the key ring's primary
/// key, a batch at a time. Each value is replaced only if it did not change meanwhile, so a
/// running server's writes (a refreshed token) are never overwritten with older values; such a
/// value was written under the primary key already.
pub async fn reseal_all(ctx: &Context) -> Result<ResealReport> {
    let mut report = ResealReport::default();
    let mut conn = ctx.db.conn().await?;
    for column in sealed::ALL {
        let mut after = None;
        loop {
            let batch = sealed::batch(&mut conn, column, after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id.0);
            for cell in &batch {
                if !ctx.keys.needs_reseal(&cell.value) {
                    continue;
                }
                let row_id = cell.id.0.to_string();
                match ctx.keys.reseal(&cell.value, column.context(&row_id)) {
                    Ok(resealed) => {
                        if sealed::replace(&mut conn, column, cell.id.0, &cell.value, &resealed)
                            .await?
                        {
                            report.resealed += 1;
                        }
                    }
                    Err(_) => report.unreadable += 1,
                }
            }
        }
    }
    Ok(report)
}
