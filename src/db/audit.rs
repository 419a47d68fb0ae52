//! The audit log.
//!
//! Event ids are UUIDv7 minted when the event is recorded, so id order is time order and the
//! primary key serves as the time index: paging walks it, and so does the retention purge.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::models::AuditEventRow;
use super::schema::audit_events;
use super::{DbConn, DbError, DbTime, DbUuid};
use crate::with_conn;

/// Append an event.
pub async fn insert(conn: &mut DbConn, row: &AuditEventRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(audit_events::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// A page of a workspace's events (the instance's own events when `None`), newest first,
/// strictly older than `before` when given.
pub async fn page(
    conn: &mut DbConn,
    workspace_id: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AuditEventRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        let mut query = audit_events::table
            .order(audit_events::id.desc())
            .limit(limit)
            .select(AuditEventRow::as_select())
            .into_boxed();
        query = match workspace_id {
            Some(id) => query.filter(audit_events::workspace_id.eq(DbUuid(id))),
            None => query.filter(audit_events::workspace_id.is_null()),
        };
        if let Some(before) = before {
            query = query.filter(audit_events::id.lt(DbUuid(before)));
        }
        query.load(c).await
    })?)
}

/// Delete at most `limit` events recorded before `cutoff`, oldest first; returns how many were
/// deleted. Callers repeat until fewer than `limit` come back, so a large backlog is removed in
/// short statements that never hold the write lock for long.
///
/// The batch is found by walking the primary key up to the smallest id that could have been
/// minted at `cutoff` (no index on `at` is needed), and each event's `at` is checked as well,
/// so an event recorded after `cutoff` is never deleted.
pub async fn delete_recorded_before(
    conn: &mut DbConn,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<usize, DbError> {
    let millis = u64::try_from(cutoff.timestamp_millis()).unwrap_or(0);
    let first_id_at_cutoff =
        DbUuid(uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid());
    let cutoff = DbTime(cutoff);
    // diesel takes a subquery on the table being deleted from only under another name.
    let batch_events = diesel::alias!(audit_events as batch_events);
    Ok(with_conn!(conn, |c| {
        let batch = batch_events
            .select(batch_events.field(audit_events::id))
            .filter(batch_events.field(audit_events::id).lt(first_id_at_cutoff))
            .filter(batch_events.field(audit_events::at).lt(cutoff))
            .order(batch_events.field(audit_events::id))
            .limit(limit);
        diesel::delete(audit_events::table.filter(audit_events::id.eq_any(batch)))
            .execute(c)
            .await
    })?)
}
