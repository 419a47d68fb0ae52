//! The audit trail: who changed what, per workspace. Details never hold secrets.

use uuid::Uuid;

use super::Result;
use super::access::{Principal, Role};
use super::servers::{Page, page_size};
use crate::app::App;
use crate::db::models::AuditEventRow;
use crate::db::{self, DbConn, DbTime, DbUuid};

/// Append an event inside the caller's transaction.
pub async fn record(
    conn: &mut DbConn,
    workspace_id: Uuid,
    actor: Uuid,
    action: &str,
    target_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    let row = AuditEventRow {
        id: DbUuid(Uuid::now_v7()),
        workspace_id: DbUuid(workspace_id),
        actor_user_id: Some(DbUuid(actor)),
        action: action.to_owned(),
        target_id: target_id.map(DbUuid),
        details: details.to_string(),
        at: DbTime(db::now()),
    };
    db::audit::insert(conn, &row).await?;
    Ok(())
}

/// A page of a workspace's events, newest first (viewer role).
pub async fn page(
    app: &App,
    principal: &Principal,
    workspace_id: Uuid,
    first: Option<i64>,
    after: Option<Uuid>,
) -> Result<Page<AuditEventRow>> {
    principal.require(workspace_id, Role::Viewer)?;
    let first = page_size(first)?;
    let mut conn = app.db.conn().await?;
    let mut items = db::audit::page(&mut conn, workspace_id, after, first + 1).await?;
    let has_next = items.len() as i64 > first;
    items.truncate(usize::try_from(first).unwrap_or(0));
    Ok(Page { items, has_next })
}
