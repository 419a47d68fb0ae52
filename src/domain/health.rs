//! Background health checks: every enabled server is visited at a configurable, jittered
//! interval with a concurrency cap. A check detects the auth type of a server whose auth type
//! is not known yet, then reconnects, lists the tools and stores them, unless the server said
//! its last listing is still fresh (`ttlMs`): then reaching it is the whole check; the outcome moves the
//! status like any other contact (see [`super::lifecycle`]). A server whose OAuth grant is
//! missing costs no request: the check stops before sending anything. With PostgreSQL each server is leased to one replica per round
//! (`FOR UPDATE SKIP LOCKED` plus a timestamp), so replicas never check the same server twice
//! in one interval.

use std::time::Duration;

use chrono::TimeDelta;
use futures_util::StreamExt;
use rand::RngExt as _;

use super::mcp::catalogue;
use super::oauth::Holder;
use crate::db::types::{AuthType, CredentialMode};
use crate::db::{self, DbTime};
use crate::domain::Context;
use crate::transaction;

/// Servers claimed per batch.
const BATCH: i64 = 50;

/// Run one round: claim due servers in batches and check them, at most `concurrency` at a
/// time. Returns how many servers were checked; fails only when servers cannot be claimed.
pub async fn run_round(
    ctx: &Context,
    interval: Duration,
    concurrency: usize,
) -> Result<usize, db::DbError> {
    // Everything this round claims is stamped with its start, so a batch never claims a server
    // this round already checked, even with a zero interval.
    let started = db::now();
    let stale_before = started - TimeDelta::from_std(interval).unwrap_or(TimeDelta::seconds(60));
    let mut checked = 0;
    loop {
        let claimed = claim(ctx, stale_before, started).await?;
        if claimed.is_empty() {
            return Ok(checked);
        }
        checked += claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(concurrency.max(1), |server| async move {
                // A per-user server is reached only as one of its users, by their own calls:
                // no background check acts as somebody upstream.
                if server.credential_mode == CredentialMode::PerUser
                    && server.auth_type == AuthType::Oauth
                {
                    return;
                }
                // A catalogue its server said is still fresh is not listed again: reaching
                // the server is enough.
                let checked = if catalogue::catalogue_is_fresh(&server) {
                    catalogue::reach(ctx, &server, Holder::Workspace).await
                } else {
                    catalogue::check(ctx, &server, Holder::Workspace)
                        .await
                        .map(drop)
                };
                match checked {
                    Ok(()) => tracing::debug!(mcp_server.id = %server.id.0, "health check passed"),
                    Err(error) => {
                        tracing::info!(mcp_server.id = %server.id.0, %error, "health check failed")
                    }
                }
            })
            .await;
    }
}

async fn claim(
    ctx: &Context,
    stale_before: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<db::models::McpServerRow>, db::DbError> {
    let mut conn = ctx.db.conn().await?;
    transaction!(
        conn,
        db::servers::claim_for_health(&mut conn, DbTime(stale_before), DbTime(now), BATCH).await
    )
}

/// The pause before the next round: a jittered quarter of the interval, so a server is
/// checked about once per interval.
pub fn pause(interval: Duration) -> Duration {
    let base = interval / 4;
    let jitter_ms = rand::rng().random_range(0..=u64::try_from(base.as_millis() / 2).unwrap_or(0));
    base + Duration::from_millis(jitter_ms)
}
