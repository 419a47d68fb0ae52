//! The audit log.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::models::AuditEventRow;
use super::schema::audit_events;
use super::{DbConn, DbError, DbUuid};
use crate::with_conn;

/// Append an event.
pub async fn insert(conn: &mut DbConn, row: &AuditEventRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(audit_events::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// A page of a workspace's events, newest first, strictly older than `before` when given.
pub async fn page(
    conn: &mut DbConn,
    workspace_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AuditEventRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        let mut query = audit_events::table
            .filter(audit_events::workspace_id.eq(DbUuid(workspace_id)))
            .order(audit_events::id.desc())
            .limit(limit)
            .select(AuditEventRow::as_select())
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(audit_events::id.lt(DbUuid(before)));
        }
        query.load(c).await
    })?)
}
