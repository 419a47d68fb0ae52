//! Workspaces, members and API tokens as the API manages them.
//!
//! Every change of who may do what (a revoked token, a removed member, a changed role) is
//! published as an [`AccessEvent`] once it commits, so that open sessions on every replica
//! follow it. A workspace always keeps at least one admin: member changes lock the workspace's
//! memberships, then refuse to remove or demote its last admin.

use std::collections::HashMap;

use serde_json::json;
use uuid::Uuid;

use super::access::{AccessEvent, Principal, Role, TOKEN_PREFIX, UserKind};
use super::oauth::revoke;
use super::{Error, Result, audit, bad_input};
use crate::crypto::{Secret, random_token, sha256_hex};
use crate::db::models::{
    ApiTokenRow, McpServerRow, MemberRow, OauthGrantRow, UserRow, WorkspaceRow,
};
use crate::db::{self, DbConn, DbTime, DbUuid};
use crate::domain::Context;
use crate::transaction;

/// A workspace visible to the caller, with the caller's role.
pub async fn get(
    ctx: &Context,
    principal: &Principal,
    id: Uuid,
) -> Result<Option<(WorkspaceRow, Role)>> {
    let Some(role) = principal.role_in(id) else {
        return Ok(None);
    };
    let mut conn = ctx.db.conn().await?;
    Ok(db::access::find_workspace(&mut conn, id)
        .await?
        .map(|w| (w, role)))
}

/// The caller's role in a workspace; `None` when they are not a member. A membership names an
/// existing workspace (workspaces are never deleted, and memberships reference them), so this
/// answers whether the workspace exists for the caller without reading it.
pub fn role(principal: &Principal, id: Uuid) -> Option<Role> {
    principal.role_in(id)
}

/// Every workspace the caller belongs to, with the caller's role.
pub async fn mine(ctx: &Context, principal: &Principal) -> Result<Vec<(WorkspaceRow, Role)>> {
    let ids = principal.workspace_ids();
    let mut conn = ctx.db.conn().await?;
    let rows = db::access::workspaces_by_ids(&mut conn, &ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|w| principal.role_in(w.id.0).map(|role| (w, role)))
        .collect())
}

/// Users by id, for the nested fields of objects whose access was checked when they were
/// resolved (one query). Ids not found are absent.
pub async fn users_by_ids(ctx: &Context, ids: &[Uuid]) -> Result<HashMap<Uuid, UserRow>> {
    let mut conn = ctx.db.conn().await?;
    let rows = db::access::users_by_ids(&mut conn, ids).await?;
    Ok(rows.into_iter().map(|r| (r.id.0, r)).collect())
}

/// The calling user.
pub async fn viewer(ctx: &Context, principal: &Principal) -> Result<UserRow> {
    let mut conn = ctx.db.conn().await?;
    db::access::find_user(&mut conn, principal.user_id)
        .await?
        .ok_or(Error::Unauthenticated)
}

/// Create a workspace; the caller becomes its admin. Refused to service accounts: a
/// workspace-scoped one belongs to its workspace only, and instance-wide ones create workspaces
/// through onboarding (`super::onboarding::create_workspace`).
pub async fn create(ctx: &Context, principal: &Principal, name: &str) -> Result<WorkspaceRow> {
    if principal.kind == UserKind::ServiceAccount {
        return Err(Error::Forbidden(
            "a service account creates workspaces with createOnboardedWorkspace".to_owned(),
        ));
    }
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    let workspace = transaction!(conn, {
        let workspace = insert_workspace(&mut conn, &name, principal.user_id).await?;
        audit::record(
            &mut conn,
            workspace.id.0,
            principal.user_id,
            "workspace.create",
            Some(workspace.id.0),
            json!({ "name": name }),
        )
        .await?;
        Ok::<_, Error>(workspace)
    })?;
    // The creator's role in it is a change of their access like any other.
    super::access::publish_change(
        ctx,
        AccessEvent::RoleChanged {
            workspace_id: workspace.id.0,
            user_id: principal.user_id,
            role: Role::Admin,
        },
    );
    Ok(workspace)
}

/// Add a user to a workspace, or change their role (admin role). The user's open sessions
/// stay open and run every later operation with the new role.
pub async fn add_member(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<MemberRow> {
    principal.require(workspace_id, Role::Admin)?;
    if user_id == principal.user_id && role < Role::Admin {
        return Err(bad_input("role", "you cannot lower your own role"));
    }
    let mut conn = ctx.db.conn().await?;
    let member = transaction!(conn, {
        if !db::access::lock_workspace(&mut conn, workspace_id).await? {
            return Err(Error::NotFound);
        }
        let Some(user) = db::access::find_user(&mut conn, user_id).await? else {
            return Err(bad_input("userId", "no such user"));
        };
        if user.kind == UserKind::ServiceAccount {
            return Err(bad_input(
                "userId",
                "a service account belongs to the workspace it was created in",
            ));
        }
        let previous = db::access::find_member(&mut conn, workspace_id, user_id).await?;
        let Some(member) =
            put_member(&mut conn, workspace_id, user_id, role, previous.as_ref()).await?
        else {
            return Err(last_admin());
        };
        audit::record(
            &mut conn,
            workspace_id,
            principal.user_id,
            "workspace.member.add",
            Some(user_id),
            json!({ "role": role.as_str() }),
        )
        .await?;
        Ok::<_, Error>(member)
    })?;
    super::access::publish_change(
        ctx,
        AccessEvent::RoleChanged {
            workspace_id,
            user_id,
            role,
        },
    );
    Ok(member)
}

/// Remove a user from a workspace (admin role); the last admin cannot be removed. The user's
/// open sessions end, on every replica.
pub async fn remove_member(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    principal.require(workspace_id, Role::Admin)?;
    remove_member_by(ctx, principal.user_id, workspace_id, user_id).await
}

/// Remove a user from a workspace on behalf of `actor`, whose authority the caller checked:
/// audited, the member's grants on the workspace's servers withdrawn and revoked, the member's
/// sessions ended on every replica. The last admin cannot be removed.
pub(super) async fn remove_member_by(
    ctx: &Context,
    actor: Uuid,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    let mut conn = ctx.db.conn().await?;
    let withdrawn = transaction!(conn, {
        let role = delete_membership(&mut conn, workspace_id, user_id).await?;
        audit::record(
            &mut conn,
            workspace_id,
            actor,
            "workspace.member.remove",
            Some(user_id),
            json!({ "role": role }),
        )
        .await?;
        let withdrawn = withdraw_grants(&mut conn, workspace_id, user_id, Some(actor)).await?;
        Ok::<_, Error>(withdrawn)
    })?;
    drop(conn);
    super::access::publish_change(
        ctx,
        AccessEvent::MemberRemoved {
            workspace_id,
            user_id,
        },
    );
    revoke_withdrawn(ctx, user_id, withdrawn).await;
    Ok(())
}

/// The grants a member held on a workspace's servers, withdrawn with their membership: deleted
/// (with their pending flows) and audited, inside the caller's transaction. Revoke them at
/// their authorization servers with [`revoke_withdrawn`] once it has committed.
pub(super) async fn withdraw_grants(
    conn: &mut DbConn,
    workspace_id: Uuid,
    user_id: Uuid,
    actor: Option<Uuid>,
) -> Result<Vec<(McpServerRow, OauthGrantRow)>> {
    let grants = db::oauth::user_grants_in_workspace(conn, user_id, workspace_id).await?;
    db::oauth::delete_user_flows_in_workspace(conn, user_id, workspace_id).await?;
    let mut withdrawn = Vec::with_capacity(grants.len());
    for grant in grants {
        let Some(server) = db::servers::find(conn, grant.server_id.0).await? else {
            continue;
        };
        db::oauth::delete_grant(conn, grant.id.0).await?;
        audit::record_as(
            conn,
            workspace_id,
            actor,
            "mcp_server.oauth_revoke",
            Some(server.id.0),
            json!({ "user": user_id, "why": "membership_ended" }),
        )
        .await?;
        withdrawn.push((server, grant));
    }
    Ok(withdrawn)
}

/// Revoke withdrawn grants at their authorization servers (best effort, no connection held)
/// and end the sessions opened with them.
pub(super) async fn revoke_withdrawn(
    ctx: &Context,
    user_id: Uuid,
    withdrawn: Vec<(McpServerRow, OauthGrantRow)>,
) {
    for (server, grant) in &withdrawn {
        revoke::revoke_grant(ctx, server, grant).await;
    }
    if !withdrawn.is_empty() {
        tracing::info!(user.id = %user_id, grants = withdrawn.len(), "grants of a former member revoked");
    }
}

/// Remove a user from a workspace from the command line (no caller to check); the last admin
/// cannot be removed. The change is published like [`remove_member`]'s.
pub async fn remove_member_as_operator(
    ctx: &Context,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    let mut conn = ctx.db.conn().await?;
    let withdrawn = transaction!(conn, {
        delete_membership(&mut conn, workspace_id, user_id)
            .await
            .map_err(|error| match error {
                Error::NotFound => bad_input("user", "is not a member of that workspace"),
                other => other,
            })?;
        let withdrawn = withdraw_grants(&mut conn, workspace_id, user_id, None).await?;
        Ok::<_, Error>(withdrawn)
    })?;
    drop(conn);
    super::access::publish_change(
        ctx,
        AccessEvent::MemberRemoved {
            workspace_id,
            user_id,
        },
    );
    revoke_withdrawn(ctx, user_id, withdrawn).await;
    Ok(())
}

/// Make a user's memberships those an identity provider's claim grants, on a sign-in: granted
/// memberships are added or given the granted role, and every other membership of the user is
/// removed exactly as [`remove_member`] removes one (audited, the user's grants on the
/// workspace's servers withdrawn and revoked, the user's sessions ended). Nobody acts: the
/// audit events name the issuer instead of an actor. Workspaces that do not exist are skipped
/// with a log line; so is a change that would leave a workspace without an admin.
pub async fn apply_granted_memberships(
    ctx: &Context,
    user_id: Uuid,
    granted: &HashMap<Uuid, Role>,
    issuer: &str,
) -> Result<()> {
    let mut conn = ctx.db.conn().await?;
    let held: HashMap<Uuid, Role> = db::access::members_of_user(&mut conn, user_id)
        .await?
        .into_iter()
        .map(|m| (m.workspace_id.0, m.role))
        .collect();
    let mut changed: Vec<(Uuid, Role)> = granted
        .iter()
        .filter(|(workspace, role)| held.get(workspace) != Some(role))
        .map(|(workspace, role)| (*workspace, *role))
        .collect();
    changed.sort();
    for (workspace_id, role) in changed {
        let outcome = transaction!(conn, {
            if !db::access::lock_workspace(&mut conn, workspace_id).await? {
                return Ok::<_, Error>(Some("the workspace does not exist"));
            }
            let previous = db::access::find_member(&mut conn, workspace_id, user_id).await?;
            if put_member(&mut conn, workspace_id, user_id, role, previous.as_ref())
                .await?
                .is_none()
            {
                return Ok(Some("the user is the workspace's last admin"));
            }
            audit::record_as(
                &mut conn,
                workspace_id,
                None,
                "workspace.member.add",
                Some(user_id),
                json!({ "role": role.as_str(), "issuer": issuer }),
            )
            .await?;
            Ok(None)
        })?;
        match outcome {
            Some(why) => tracing::info!(
                workspace.id = %workspace_id, user.id = %user_id, issuer, why,
                "a membership granted by an identity provider was not applied"
            ),
            None => super::access::publish_change(
                ctx,
                AccessEvent::RoleChanged {
                    workspace_id,
                    user_id,
                    role,
                },
            ),
        }
    }
    let mut ended: Vec<Uuid> = held
        .keys()
        .filter(|workspace| !granted.contains_key(workspace))
        .copied()
        .collect();
    ended.sort();
    let mut to_revoke = Vec::new();
    for workspace_id in ended {
        let outcome = transaction!(conn, {
            let role = match delete_membership(&mut conn, workspace_id, user_id).await {
                Ok(role) => role,
                Err(Error::NotFound) => return Ok::<_, Error>(None),
                Err(Error::Conflict { .. }) => return Ok(Some(Err(()))),
                Err(other) => return Err(other),
            };
            audit::record_as(
                &mut conn,
                workspace_id,
                None,
                "workspace.member.remove",
                Some(user_id),
                json!({ "role": role, "issuer": issuer }),
            )
            .await?;
            let withdrawn = withdraw_grants(&mut conn, workspace_id, user_id, None).await?;
            Ok(Some(Ok(withdrawn)))
        })?;
        match outcome {
            None => {}
            Some(Err(())) => tracing::info!(
                workspace.id = %workspace_id, user.id = %user_id, issuer,
                "a membership no longer granted by an identity provider was kept: the user is \
                 the workspace's last admin"
            ),
            Some(Ok(withdrawn)) => {
                super::access::publish_change(
                    ctx,
                    AccessEvent::MemberRemoved {
                        workspace_id,
                        user_id,
                    },
                );
                to_revoke.extend(withdrawn);
            }
        }
    }
    drop(conn);
    revoke_withdrawn(ctx, user_id, to_revoke).await;
    Ok(())
}

/// Delete one membership inside the caller's transaction, keeping the workspace's last admin;
/// returns the role the member had. `NotFound` when there is no such membership.
async fn delete_membership(conn: &mut DbConn, workspace_id: Uuid, user_id: Uuid) -> Result<Role> {
    if !db::access::lock_workspace(conn, workspace_id).await? {
        return Err(Error::NotFound);
    }
    let Some(member) = db::access::find_member(conn, workspace_id, user_id).await? else {
        return Err(Error::NotFound);
    };
    if member.role == Role::Admin && is_last_admin(conn, workspace_id).await? {
        return Err(last_admin());
    }
    db::access::delete_member(conn, workspace_id, user_id).await?;
    Ok(member.role)
}

/// Give `user_id` `role` in a workspace the caller's transaction has locked, `previous` being
/// their membership now; `None`, and nothing written, when that would leave the workspace
/// without an admin.
pub(super) async fn put_member(
    conn: &mut DbConn,
    workspace_id: Uuid,
    user_id: Uuid,
    role: Role,
    previous: Option<&MemberRow>,
) -> Result<Option<MemberRow>> {
    if role < Role::Admin
        && previous.is_some_and(|m| m.role == Role::Admin)
        && is_last_admin(conn, workspace_id).await?
    {
        return Ok(None);
    }
    let member = MemberRow {
        workspace_id: DbUuid(workspace_id),
        user_id: DbUuid(user_id),
        role,
        created_at: DbTime(db::now()),
    };
    db::access::upsert_member(conn, &member).await?;
    Ok(Some(member))
}

pub(super) async fn is_last_admin(conn: &mut DbConn, workspace_id: Uuid) -> Result<bool> {
    let admins =
        db::access::count_members_with_role(conn, workspace_id, Role::Admin.as_str()).await?;
    Ok(admins <= 1)
}

pub(super) fn last_admin() -> Error {
    Error::Conflict {
        message: "a workspace needs an admin: make another member admin first".to_owned(),
        existing_id: None,
    }
}

/// A newly created API token: the plaintext is shown once and never stored.
pub struct NewToken {
    /// The token to give to the user.
    pub token: Secret,
    /// The stored row (hash only).
    pub row: ApiTokenRow,
}

/// Create an API token for the caller.
pub async fn create_token(ctx: &Context, principal: &Principal, name: &str) -> Result<NewToken> {
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    issue_token(&mut conn, principal.user_id, &name).await
}

/// Revoke one of the caller's tokens. Sessions opened with it end, on every replica.
pub async fn revoke_token(ctx: &Context, principal: &Principal, id: Uuid) -> Result<ApiTokenRow> {
    let mut conn = ctx.db.conn().await?;
    if !db::access::revoke_token(&mut conn, id, principal.user_id, DbTime(db::now())).await? {
        return Err(Error::NotFound);
    }
    super::access::publish_change(
        ctx,
        AccessEvent::TokenRevoked {
            user_id: principal.user_id,
            token_id: id,
        },
    );
    let tokens = db::access::tokens_of(&mut conn, principal.user_id).await?;
    tokens
        .into_iter()
        .find(|t| t.id.0 == id)
        .ok_or(Error::NotFound)
}

/// The caller's tokens, newest first.
pub async fn tokens(ctx: &Context, principal: &Principal) -> Result<Vec<ApiTokenRow>> {
    let mut conn = ctx.db.conn().await?;
    Ok(db::access::tokens_of(&mut conn, principal.user_id).await?)
}

/// Insert a workspace with `admin` as its admin (used by the API, the CLI and first start).
pub async fn insert_workspace(conn: &mut DbConn, name: &str, admin: Uuid) -> Result<WorkspaceRow> {
    let now = DbTime(db::now());
    let workspace = WorkspaceRow {
        id: DbUuid(Uuid::now_v7()),
        name: name.to_owned(),
        created_at: now,
    };
    db::access::insert_workspace(conn, &workspace).await?;
    db::access::upsert_member(
        conn,
        &MemberRow {
            workspace_id: workspace.id,
            user_id: DbUuid(admin),
            role: Role::Admin,
            created_at: now,
        },
    )
    .await?;
    Ok(workspace)
}

/// Mint a token for a user (used by the API, the CLI and first start).
pub async fn issue_token(conn: &mut DbConn, user_id: Uuid, name: &str) -> Result<NewToken> {
    let token = Secret::new(format!("{TOKEN_PREFIX}{}", random_token(32)));
    let row = ApiTokenRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(user_id),
        name: name.to_owned(),
        token_hash: sha256_hex(token.expose()),
        prefix: token
            .expose()
            .chars()
            .take(TOKEN_PREFIX.len() + 4)
            .collect(),
        created_at: DbTime(db::now()),
        last_used_at: None,
        revoked_at: None,
    };
    db::access::insert_token(conn, &row).await?;
    Ok(NewToken { token, row })
}

/// Validate a short label (workspace, user and token names).
pub fn validate_label(field: &str, raw: &str) -> Result<String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(bad_input(field, "is required"));
    }
    if text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err(bad_input(field, "must be at most 200 printable characters"));
    }
    Ok(text.to_owned())
}
