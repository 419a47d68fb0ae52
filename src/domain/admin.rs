//! Operator tasks that run without the API: first-start bootstrap, creating users,
//! workspaces and tokens from the command line, and re-sealing every secret after a key
//! rotation.

use uuid::Uuid;

use super::access::Role;
use super::workspaces::{NewToken, insert_workspace, issue_token, validate_label};
use super::{Error, Result, bad_input, servers};
use crate::app::App;
use crate::crypto::SealContext;
use crate::db::models::{UserRow, WorkspaceRow};
use crate::db::{self, DbTime, DbUuid};
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
pub async fn bootstrap(app: &App) -> Result<Option<Bootstrap>> {
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
pub async fn create_user(app: &App, name: &str) -> Result<UserRow> {
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
pub async fn create_workspace(app: &App, name: &str, admin: Uuid) -> Result<WorkspaceRow> {
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
pub async fn add_member(app: &App, workspace_id: Uuid, user_id: Uuid, role: Role) -> Result<()> {
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
pub async fn create_token(app: &App, user_id: Uuid, name: &str) -> Result<NewToken> {
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
const GRANT_TABLE: &str = "mcp_server_oauth";
const FLOW_TABLE: &str = "mcp_oauth_flows";

/// Re-seal every sealed value under the key ring's primary key, one batch per transaction.
pub async fn reseal_all(app: &App) -> Result<ResealReport> {
    let mut report = ResealReport::default();
    let mut conn = app.db.conn().await?;

    let mut after = None;
    loop {
        let batch = db::servers::batch_after(&mut conn, after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id.0);
        transaction!(conn, {
            for row in &batch {
                let row_id = row.id.0.to_string();
                let mut reseal = |sealed: &Option<String>, column| {
                    reseal_value(
                        app,
                        sealed,
                        SealContext::new(servers::TABLE, column, &row_id),
                        &mut report,
                    )
                };
                let headers = reseal(&row.headers_sealed, servers::HEADERS_COLUMN);
                let secret = reseal(&row.oauth_client_secret_sealed, servers::SECRET_COLUMN);
                db::servers::save_sealed(&mut conn, row.id, headers.as_deref(), secret.as_deref())
                    .await?;
            }
            Ok::<_, Error>(())
        })?;
    }

    let mut after = None;
    loop {
        let batch = db::oauth::grant_batch_after(&mut conn, after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.server_id.0);
        transaction!(conn, {
            for row in &batch {
                let row_id = row.server_id.0.to_string();
                let mut reseal = |sealed: &Option<String>, column| {
                    reseal_value(
                        app,
                        sealed,
                        SealContext::new(GRANT_TABLE, column, &row_id),
                        &mut report,
                    )
                };
                let client = reseal(&row.client_information_sealed, "client_information_sealed");
                let tokens = reseal(&row.tokens_sealed, "tokens_sealed");
                db::oauth::save_grant_sealed(
                    &mut conn,
                    row.server_id,
                    client.as_deref(),
                    tokens.as_deref(),
                )
                .await?;
            }
            Ok::<_, Error>(())
        })?;
    }

    let mut after = None;
    loop {
        let batch = db::oauth::flow_batch_after(&mut conn, after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id.0);
        transaction!(conn, {
            for row in &batch {
                let row_id = row.id.0.to_string();
                let mut reseal = |sealed: &str, column| {
                    reseal_value(
                        app,
                        &Some(sealed.to_owned()),
                        SealContext::new(FLOW_TABLE, column, &row_id),
                        &mut report,
                    )
                    .unwrap_or_else(|| sealed.to_owned())
                };
                let verifier = reseal(&row.code_verifier_sealed, "code_verifier_sealed");
                let url = reseal(&row.authorization_url_sealed, "authorization_url_sealed");
                let client = row
                    .client_information_sealed
                    .as_deref()
                    .map(|sealed| reseal(sealed, "client_information_sealed"));
                db::oauth::save_flow_sealed(&mut conn, row.id, &verifier, &url, client.as_deref())
                    .await?;
            }
            Ok::<_, Error>(())
        })?;
    }
    Ok(report)
}

/// Re-seal one value under the primary key; a value no key opens is kept as it is.
fn reseal_value(
    app: &App,
    sealed: &Option<String>,
    ctx: SealContext<'_>,
    report: &mut ResealReport,
) -> Option<String> {
    let value = sealed.as_ref()?;
    match app.keys.reseal(value, ctx) {
        Ok(resealed) => {
            report.resealed += 1;
            Some(resealed)
        }
        Err(_) => {
            report.unreadable += 1;
            Some(value.clone())
        }
    }
}
