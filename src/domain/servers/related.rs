//! What a page of servers needs besides its rows: the OAuth view of each server (the grant's
//! summary and whether a flow is pending), pages of their tool catalogues, and the users they
//! name (creators and grant authorizers).
//!
//! Invariants:
//! - The servers given here were access-checked by the caller.
//! - Each kind is one query whatever the number of servers (tools: one per distinct page).
//! - Nothing sealed is loaded into a view.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::db::models::{GrantSummary, McpServerRow, ToolRow, UserRow};
use crate::db::{self, DbConn, DbTime};
use crate::domain::access::{Principal, Role};
use crate::domain::pagination::{Page, ToolsPage, fetch_limit, page_size};
use crate::domain::{Context, Result};

/// The OAuth state (grant and pending flow) of servers already access-checked, by server id;
/// servers with neither are absent. Two queries, whatever the number of ids.
pub async fn oauth_by_ids(ctx: &Context, ids: &[Uuid]) -> Result<HashMap<Uuid, OauthView>> {
    let mut conn = ctx.db.conn().await?;
    Ok(oauth_views(&mut conn, ids, true).await?)
}

/// The OAuth view of each server that has one of these grants (no flow known yet).
fn views_of(grants: Vec<GrantSummary>) -> HashMap<Uuid, OauthView> {
    grants
        .into_iter()
        .map(|grant| {
            (
                grant.server_id.0,
                OauthView {
                    grant: Some(grant),
                    flow_in_progress: false,
                },
            )
        })
        .collect()
}

/// One user's own authorization of each of these servers (their grant, and whether their flow
/// is pending), in two queries. Servers with neither are absent. The caller has checked that
/// the servers are in workspaces `user_id` belongs to.
pub async fn own_oauth_by_ids(
    ctx: &Context,
    user_id: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, OauthView>> {
    let mut conn = ctx.db.conn().await?;
    let mut views = views_of(db::oauth::own_grant_summaries(&mut conn, ids, user_id).await?);
    let now = DbTime(db::now());
    for id in db::oauth::servers_with_own_live_flows(&mut conn, ids, user_id, now).await? {
        views.entry(id).or_default().flow_in_progress = true;
    }
    Ok(views)
}

/// Who has connected their own account to a per-user server, oldest grant first (admin role):
/// a page of grants without any of their secrets. `after` is a grant id.
pub async fn authorizations(
    ctx: &Context,
    principal: &Principal,
    server: &McpServerRow,
    first: Option<i64>,
    after: Option<Uuid>,
) -> Result<Page<GrantSummary>> {
    principal.require(server.workspace_id.0, Role::Admin)?;
    let first = page_size(first)?;
    let mut conn = ctx.db.conn().await?;
    let fetched =
        db::oauth::user_grants_of_server(&mut conn, server.id.0, after, fetch_limit(first)).await?;
    Ok(Page::cut(fetched, first))
}

/// Which related rows a page of servers needs (the API asks only for what the query selects).
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    /// The OAuth grants.
    pub grants: bool,
    /// Whether a flow is in progress, for servers that have a grant too.
    pub flows_in_progress: bool,
    /// The pages of the tool catalogues, one entry per distinct page the query asks for.
    pub tools: Vec<ToolsPage>,
    /// The creators, and the users who authorized the grants.
    pub users: bool,
}

/// Rows related to a set of servers, each kind loaded with one query. `None` (or a missing
/// page) means that kind was not loaded, as opposed to loaded and absent.
#[derive(Debug, Default)]
pub struct Related {
    /// OAuth state (grant and pending flow) by server id; servers with neither are absent.
    pub grants: Option<HashMap<Uuid, OauthView>>,
    /// Pages of tools by page asked for, then by server id.
    pub tools: HashMap<ToolsPage, HashMap<Uuid, Page<ToolRow>>>,
    /// Creators and grant authorizers by user id.
    pub users: Option<HashMap<Uuid, UserRow>>,
}

/// Load what `wanted` asks for about `rows` (already access-checked): one query per kind and
/// per distinct tools page, whatever the number of servers.
///
/// `grants`: the shared grants already read with the page ([`super::page_with_grants`]), or
/// `None` to read those of `rows` here when they are wanted.
pub async fn related(
    ctx: &Context,
    rows: &[McpServerRow],
    wanted: Wanted,
    grants: Option<Vec<GrantSummary>>,
) -> Result<Related> {
    let mut related = Related::default();
    if rows.is_empty() || !(wanted.grants || !wanted.tools.is_empty() || wanted.users) {
        return Ok(related);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id.0).collect();
    let mut conn = ctx.db.conn().await?;
    if wanted.grants || wanted.users {
        let summaries = match grants {
            Some(mut summaries) => {
                // Read with the page, whose read holds one row beyond it (to learn whether
                // another page follows).
                let wanted_ids: HashSet<Uuid> = ids.iter().copied().collect();
                summaries.retain(|grant| wanted_ids.contains(&grant.server_id.0));
                summaries
            }
            None => db::oauth::shared_grant_summaries(&mut conn, &ids).await?,
        };
        related.grants =
            Some(views_with_flows(&mut conn, summaries, &ids, wanted.flows_in_progress).await?);
    }
    for page in wanted.tools {
        if let std::collections::hash_map::Entry::Vacant(slot) = related.tools.entry(page) {
            let pages = load_tool_pages(&mut conn, &ids, slot.key()).await?;
            slot.insert(pages);
        }
    }
    if wanted.users {
        let mut user_ids: Vec<Uuid> = rows
            .iter()
            .filter_map(|r| r.created_by.map(|u| u.0))
            .collect();
        if let Some(grants) = &related.grants {
            user_ids.extend(
                grants
                    .values()
                    .filter_map(|v| v.grant.as_ref()?.authorized_by.map(|u| u.0)),
            );
        }
        user_ids.sort_unstable();
        user_ids.dedup();
        let users = db::access::users_by_ids(&mut conn, &user_ids).await?;
        related.users = Some(users.into_iter().map(|u| (u.id.0, u)).collect());
    }
    Ok(related)
}

/// What the API shows of a server's OAuth state: the grant's summary, if there is a grant, and
/// whether someone's flow is pending.
#[derive(Clone, Debug, Default)]
pub struct OauthView {
    /// The grant, without any of its sealed values.
    pub grant: Option<GrantSummary>,
    /// Whether a flow started in the last ten minutes has not completed.
    pub flow_in_progress: bool,
}

/// The OAuth state of these servers: one query for the grants, and one for the pending flows
/// of the servers it needs: all of them when `in_progress` is asked, otherwise only those
/// without a grant (whose OAuth state exists only if a flow is pending). Servers with neither
/// are absent from the map; without `in_progress`, `flow_in_progress` is only set for servers
/// without a grant.
pub async fn oauth_views(
    conn: &mut DbConn,
    ids: &[Uuid],
    in_progress: bool,
) -> std::result::Result<HashMap<Uuid, OauthView>, db::DbError> {
    let summaries = db::oauth::shared_grant_summaries(conn, ids).await?;
    views_with_flows(conn, summaries, ids, in_progress).await
}

/// [`oauth_views`] from grant summaries already read.
async fn views_with_flows(
    conn: &mut DbConn,
    summaries: Vec<GrantSummary>,
    ids: &[Uuid],
    in_progress: bool,
) -> std::result::Result<HashMap<Uuid, OauthView>, db::DbError> {
    let mut views = views_of(summaries);
    let asked: Vec<Uuid> = if in_progress {
        ids.to_vec()
    } else {
        ids.iter()
            .copied()
            .filter(|id| !views.contains_key(id))
            .collect()
    };
    if !asked.is_empty() {
        for id in db::oauth::servers_with_live_flows(conn, &asked, DbTime(db::now())).await? {
            views.entry(id).or_default().flow_in_progress = true;
        }
    }
    Ok(views)
}

/// One page of tools of each of these servers (already access-checked), in one query.
pub async fn tool_pages(
    ctx: &Context,
    server_ids: &[Uuid],
    page: &ToolsPage,
) -> Result<HashMap<Uuid, Page<ToolRow>>> {
    let mut conn = ctx.db.conn().await?;
    load_tool_pages(&mut conn, server_ids, page).await
}

/// One page of `user_id`'s own catalogue of each of these per-user servers where they have one
/// (their listing differed from the server's); servers where they have none are absent, and
/// the server's catalogue applies. One query, plus one per server with a catalogue of its own.
pub async fn own_tool_pages(
    ctx: &Context,
    user_id: Uuid,
    server_ids: &[Uuid],
    page: &ToolsPage,
) -> Result<HashMap<Uuid, Page<ToolRow>>> {
    let mut conn = ctx.db.conn().await?;
    let own = db::servers::user_catalogues(&mut conn, server_ids, user_id).await?;
    let mut pages = HashMap::with_capacity(own.len());
    for (server_id, _) in own {
        let fetched = db::servers::user_tool_page(
            &mut conn,
            server_id,
            user_id,
            page.after.as_deref(),
            fetch_limit(page.first),
        )
        .await?;
        pages.insert(server_id, Page::cut(fetched, page.first));
    }
    Ok(pages)
}

async fn load_tool_pages(
    conn: &mut DbConn,
    server_ids: &[Uuid],
    page: &ToolsPage,
) -> Result<HashMap<Uuid, Page<ToolRow>>> {
    let mut pages: HashMap<Uuid, Page<ToolRow>> =
        server_ids.iter().map(|id| (*id, Page::default())).collect();
    if server_ids.is_empty() {
        return Ok(pages);
    }
    // One more than asked tells whether another page follows.
    let rows = db::servers::tool_pages(
        conn,
        server_ids,
        page.after.as_deref(),
        page.first.saturating_add(1),
    )
    .await?;
    let first = usize::try_from(page.first).unwrap_or(usize::MAX);
    for row in rows {
        if let Some(server) = pages.get_mut(&row.server_id.0) {
            if server.items.len() < first {
                server.items.push(row);
            } else {
                server.has_next = true;
            }
        }
    }
    Ok(pages)
}
