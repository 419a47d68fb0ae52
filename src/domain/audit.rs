//! The audit trail: who changed what, per workspace, and the instance's own events (no
//! workspace). Details never hold secrets.
//!
//! Events are kept for the configured retention (`--audit-retention-days`, 365 by default; 0
//! keeps them all). A background task purges older ones about once an hour, in batches.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt as _;
use uuid::Uuid;

use super::Result;
use super::access::{Principal, Role};
use super::pagination::{Page, fetch_limit, page_size};
use crate::db::models::AuditEventRow;
use crate::db::{self, DbConn, DbTime, DbUuid};
use crate::domain::Context;

/// Events deleted per statement.
const PURGE_BATCH: i64 = 1000;

/// Time between purges; each is jittered by up to a quarter more so replicas spread out.
const PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Time from start to the first purge (jittered the same way), so a restart neither purges in
/// the middle of start-up nor waits an hour.
const FIRST_PURGE_AFTER: Duration = Duration::from_secs(60);

/// Append an event inside the caller's transaction.
pub async fn record(
    conn: &mut DbConn,
    workspace_id: Uuid,
    actor: Uuid,
    action: &str,
    target_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    record_as(conn, workspace_id, Some(actor), action, target_id, details).await
}

/// [`record`] for an act that may have no user behind it (`None`: the operator's command line).
pub async fn record_as(
    conn: &mut DbConn,
    workspace_id: Uuid,
    actor: Option<Uuid>,
    action: &str,
    target_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    insert(conn, Some(workspace_id), actor, action, target_id, details).await
}

/// Append an event of the instance itself (no workspace: a user created through onboarding,
/// an instance-wide service account, an operator grant) inside the caller's transaction;
/// instance operators read them.
pub async fn record_instance(
    conn: &mut DbConn,
    actor: Option<Uuid>,
    action: &str,
    target_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    insert(conn, None, actor, action, target_id, details).await
}

async fn insert(
    conn: &mut DbConn,
    workspace_id: Option<Uuid>,
    actor: Option<Uuid>,
    action: &str,
    target_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    let row = AuditEventRow {
        // Time-ordered: paging and the retention purge walk the ids (see `db::audit`).
        id: DbUuid(Uuid::now_v7()),
        workspace_id: workspace_id.map(DbUuid),
        actor_user_id: actor.map(DbUuid),
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
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    first: Option<i64>,
    after: Option<Uuid>,
) -> Result<Page<AuditEventRow>> {
    principal.require(workspace_id, Role::Viewer)?;
    let first = page_size(first)?;
    let mut conn = ctx.db.conn().await?;
    let fetched = db::audit::page(&mut conn, Some(workspace_id), after, fetch_limit(first)).await?;
    Ok(Page::cut(fetched, first))
}

/// A page of the instance's own events, newest first (instance operators and instance-wide
/// service accounts).
pub async fn instance_page(
    ctx: &Context,
    principal: &Principal,
    first: Option<i64>,
    after: Option<Uuid>,
) -> Result<Page<AuditEventRow>> {
    if !principal.operator {
        return Err(super::Error::Forbidden(
            "the instance's audit trail is for instance operators".to_owned(),
        ));
    }
    let first = page_size(first)?;
    let mut conn = ctx.db.conn().await?;
    let fetched = db::audit::page(&mut conn, None, after, fetch_limit(first)).await?;
    Ok(Page::cut(fetched, first))
}

/// The oldest time an event may have been recorded at to be kept, `retention_days` before
/// `now`; `None` when every event is kept (0 days).
pub fn retention_cutoff(now: DateTime<Utc>, retention_days: u32) -> Option<DateTime<Utc>> {
    if retention_days == 0 {
        return None;
    }
    now.checked_sub_signed(TimeDelta::days(i64::from(retention_days)))
}

/// Delete every event recorded more than `retention_days` ago (none when it is 0), a batch at a
/// time; returns how many were deleted.
pub async fn run_once(ctx: &Context, retention_days: u32) -> Result<usize> {
    let Some(cutoff) = retention_cutoff(db::now(), retention_days) else {
        return Ok(0);
    };
    let mut deleted = 0usize;
    loop {
        // A connection per batch, so other requests get one between batches.
        let mut conn = ctx.db.conn().await?;
        let batch = db::audit::delete_recorded_before(&mut conn, cutoff, PURGE_BATCH).await?;
        drop(conn);
        deleted = deleted.saturating_add(batch);
        if i64::try_from(batch).map_or(true, |batch| batch < PURGE_BATCH) {
            return Ok(deleted);
        }
    }
}

/// The pause before the next purge: about an hour, jittered; the first purge comes about a
/// minute after start.
pub fn pause(first: bool) -> Duration {
    let wait = if first {
        FIRST_PURGE_AFTER
    } else {
        PURGE_INTERVAL
    };
    let jitter_ms = rand::rng().random_range(0..=u64::try_from(wait.as_millis() / 4).unwrap_or(0));
    wait + Duration::from_millis(jitter_ms)
}

/// One purge round, logged.
pub async fn purge(ctx: &Context, retention_days: u32) -> Result<()> {
    match run_once(ctx, retention_days).await? {
        0 => tracing::debug!(retention_days, "no audit events past retention"),
        deleted => tracing::info!(
            deleted,
            retention_days,
            "purged audit events past retention"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_cutoff_counts_whole_days_back_and_zero_keeps_everything() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retention_cutoff(now, 0), None);
        assert_eq!(retention_cutoff(now, 1), Some(now - TimeDelta::hours(24)));
        assert_eq!(
            retention_cutoff(now, 365).map(|c| c.to_rfc3339()),
            Some("2025-11-28T12:00:00+00:00".to_owned())
        );
        assert!(retention_cutoff(now, 36_500).is_some_and(|c| c.timestamp() < 0));
    }
}
