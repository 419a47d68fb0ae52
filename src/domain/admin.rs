//! Operator tasks that run without the API: first-start bootstrap, creating users,
//! workspaces and tokens from the command line, and re-sealing every secret after a key
//! rotation.

use uuid::Uuid;

use super::Context;
use super::access::Role;
use super::workspaces::{NewToken, insert_workspace, issue_token, validate_label};
use super::{Error, Result, bad_input};
use crate::db::models::{UserRow, WorkspaceRow};
use crate::db::{self, DbTime, DbUuid, sealed};
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
pub async fn bootstrap(app: &Context) -> Result<Option<Bootstrap>> {
    let mut conn = app.db.conn().await?;
    transaction!(conn, {
        if db::access::any_user(&mut conn).await? {
            return Ok(None);
        }
        let user = UserRow {
            id: DbUuid(Uuid::now_v7()),
            name: "admin".into(),
            created_at: DbTime(db::now()),
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

/// Create a user.
pub async fn create_user(app: &Context, name: &str) -> Result<UserRow> {
    let name = validate_label("name", name)?;
    let user = UserRow {
        id: DbUuid(Uuid::now_v7()),
        name,
        created_at: DbTime(db::now()),
    };
    let mut conn = app.db.conn().await?;
    db::access::insert_user(&mut conn, &user).await?;
    Ok(user)
}

/// Create a workspace administered by `admin`.
pub async fn create_workspace(app: &Context, name: &str, admin: Uuid) -> Result<WorkspaceRow> {
    let name = validate_label("name", name)?;
    let mut conn = app.db.conn().await?;
    transaction!(conn, {
        if db::access::find_user(&mut conn, admin).await?.is_none() {
            return Err(bad_input("admin", "no such user"));
        }
        insert_workspace(&mut conn, &name, admin).await
    })
}

/// Add a user to a workspace with a role, or change their role.
pub async fn add_member(
    app: &Context,
    workspace_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<()> {
    let mut conn = app.db.conn().await?;
    transaction!(conn, {
        if db::access::find_workspace(&mut conn, workspace_id)
            .await?
            .is_none()
        {
            return Err(bad_input("workspace", "no such workspace"));
        }
        if db::access::find_user(&mut conn, user_id).await?.is_none() {
            return Err(bad_input("user", "no such user"));
        }
        db::access::upsert_member(
            &mut conn,
            &db::models::MemberRow {
                workspace_id: DbUuid(workspace_id),
                user_id: DbUuid(user_id),
                role: role.as_str().to_owned(),
                created_at: DbTime(db::now()),
            },
        )
        .await?;
        Ok::<_, Error>(())
    })
}

/// Create a token for a user.
pub async fn create_token(app: &Context, user_id: Uuid, name: &str) -> Result<NewToken> {
    let name = validate_label("name", name)?;
    let mut conn = app.db.conn().await?;
    if db::access::find_user(&mut conn, user_id).await?.is_none() {
        return Err(bad_input("user", "no such user"));
    }
    issue_token(&mut conn, user_id, &name).await
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
pub async fn reseal_all(app: &Context) -> Result<ResealReport> {
    let mut report = ResealReport::default();
    let mut conn = app.db.conn().await?;
    for column in sealed::ALL {
        let mut after = None;
        loop {
            let batch = sealed::batch(&mut conn, column, after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id.0);
            for cell in &batch {
                if !app.keys.needs_reseal(&cell.value) {
                    continue;
                }
                let row_id = cell.id.0.to_string();
                match app.keys.reseal(&cell.value, column.context(&row_id)) {
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
