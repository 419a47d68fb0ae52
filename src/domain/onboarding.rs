//! Onboarding from a product's backend: service accounts, and the operations they (and instance
//! operators) use to create users, workspaces, memberships and API tokens through the API.
//!
//! Who may onboard ([`Authority`]):
//! - an instance operator (a person granted the privilege with `switchboard admin
//!   grant-operator`, or the first user) or an instance-wide service account: every workspace;
//! - a service account scoped to one workspace: that workspace only, never granting a role
//!   above its own there. Another workspace is `NotFound`, as it is for a non-member;
//! - anyone else: `Forbidden`.
//!
//! Service accounts are users of kind `service_account`; they never sign in with an identity
//! provider, only with API tokens minted for them. A workspace-scoped one is a member of its
//! workspace (its role there is its scope's role) and of no other: member changes refuse
//! service accounts as targets. Only people manage service accounts: an instance operator the
//! instance-wide ones and any, a workspace admin those of their workspace. Tokens minted for
//! users through onboarding are for people who are not operators: a service account cannot
//! mint a token that carries more than onboarding itself grants, and a workspace-scoped one
//! only for members of its workspace who belong to no other workspace and whose role there is
//! not above its own (a token carries all of its user's memberships).
//!
//! Every change is audited with the caller as actor ([`Trail`]): in the workspace it concerns;
//! a user's creation and tokens in the workspace of a workspace-scoped caller, or in the
//! instance's trail and every workspace the user belongs to for an instance-wide caller;
//! instance-wide service accounts in the instance's trail.

use serde_json::json;
use uuid::Uuid;

use super::access::{AccessEvent, Principal, Role, UserKind, publish_change};
use super::admin::ensure_name_free;
use super::workspaces::{
    NewToken, issue_token, last_admin, put_member, remove_member_by, validate_label,
};
use super::{Context, Error, Result, audit, bad_input};
use crate::db::models::{ApiTokenRow, MemberRow, ProvisionedUserRow, UserRow, WorkspaceRow};
use crate::db::{self, DbConn, DbTime, DbUuid};
use crate::transaction;

/// How far a caller may onboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority {
    /// Every workspace (instance operators and instance-wide service accounts).
    Instance,
    /// One workspace, up to a role (workspace-scoped service accounts).
    Workspace {
        /// The workspace.
        workspace_id: Uuid,
        /// The account's role there: the highest it may grant.
        role: Role,
    },
}

impl Authority {
    /// The caller's onboarding authority; `Forbidden` for everyone else.
    pub fn of(principal: &Principal) -> Result<Authority> {
        if principal.operator {
            return Ok(Authority::Instance);
        }
        if principal.kind == UserKind::ServiceAccount
            && let Some(workspace_id) = principal.scope_workspace_id
            && let Some(role) = principal.role_in(workspace_id)
        {
            return Ok(Authority::Workspace { workspace_id, role });
        }
        Err(Error::Forbidden(
            "onboarding needs a service account or an instance operator".to_owned(),
        ))
    }

    /// The highest role the caller may grant in a workspace; `NotFound` outside its scope.
    fn ceiling_in(self, workspace_id: Uuid) -> Result<Role> {
        match self {
            Authority::Instance => Ok(Role::Admin),
            Authority::Workspace {
                workspace_id: own,
                role,
            } if own == workspace_id => Ok(role),
            Authority::Workspace { .. } => Err(Error::NotFound),
        }
    }
}

/// Where an act is audited: workspaces' trails and the instance's.
#[derive(Clone, Debug, Default)]
struct Trail {
    workspaces: Vec<Uuid>,
    instance: bool,
}

impl Trail {
    /// The trail of a service account's own changes: its workspace's, or the instance's for an
    /// instance-wide one.
    fn of_account(account: &UserRow) -> Trail {
        match account.scope_workspace_id {
            Some(workspace_id) => Trail {
                workspaces: vec![workspace_id.0],
                instance: false,
            },
            None => Trail {
                workspaces: Vec::new(),
                instance: true,
            },
        }
    }

    async fn record(
        &self,
        conn: &mut DbConn,
        actor: Uuid,
        action: &str,
        target_id: Uuid,
        details: serde_json::Value,
    ) -> Result<()> {
        for workspace_id in &self.workspaces {
            audit::record(
                conn,
                *workspace_id,
                actor,
                action,
                Some(target_id),
                details.clone(),
            )
            .await?;
        }
        if self.instance {
            audit::record_instance(conn, Some(actor), action, Some(target_id), details).await?;
        }
        Ok(())
    }
}

/// A service account with its role in its workspace (none for instance-wide ones).
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    /// The account.
    pub user: UserRow,
    /// Its role in its workspace.
    pub role: Option<Role>,
}

fn service_accounts_are_for_people() -> Error {
    Error::Forbidden("service accounts cannot manage service accounts".to_owned())
}

/// Require the right to manage the service accounts of `scope` (a workspace, or the
/// instance-wide ones when `None`): an instance operator for both, a workspace admin for their
/// workspace's. Service accounts manage none.
fn require_manager(principal: &Principal, scope: Option<Uuid>) -> Result<()> {
    if principal.kind == UserKind::ServiceAccount {
        return Err(service_accounts_are_for_people());
    }
    if principal.operator {
        return Ok(());
    }
    match scope {
        Some(workspace_id) => principal.require(workspace_id, Role::Admin).map(|_| ()),
        None => Err(Error::Forbidden(
            "instance-wide service accounts are managed by instance operators".to_owned(),
        )),
    }
}

/// Create a service account: scoped to `workspace_id` with `role` there (workspace admins and
/// instance operators), or instance-wide when `None` (instance operators). Names are unique
/// among all users.
pub async fn create_service_account(
    ctx: &Context,
    principal: &Principal,
    name: &str,
    workspace_id: Option<Uuid>,
    role: Role,
) -> Result<ServiceAccount> {
    require_manager(principal, workspace_id)?;
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    let account = transaction!(conn, {
        if let Some(workspace_id) = workspace_id
            && !db::access::lock_workspace(&mut conn, workspace_id).await?
        {
            return Err(Error::NotFound);
        }
        db::access::lock_users(&mut conn).await?;
        ensure_name_free(&mut conn, &name).await?;
        let user = UserRow {
            kind: UserKind::ServiceAccount,
            operator: workspace_id.is_none(),
            scope_workspace_id: workspace_id.map(DbUuid),
            ..UserRow::human(name.clone())
        };
        db::access::insert_user(&mut conn, &user).await?;
        if let Some(workspace_id) = workspace_id {
            db::access::upsert_member(
                &mut conn,
                &MemberRow {
                    workspace_id: DbUuid(workspace_id),
                    user_id: user.id,
                    role,
                    created_at: user.created_at,
                },
            )
            .await?;
        }
        let role = workspace_id.map(|_| role);
        Trail::of_account(&user)
            .record(
                &mut conn,
                principal.user_id,
                "service_account.create",
                user.id.0,
                json!({ "name": name, "role": role.map(Role::as_str) }),
            )
            .await?;
        Ok::<_, Error>(ServiceAccount { role, user })
    })?;
    Ok(account)
}

/// The live service accounts of a workspace, or the instance-wide ones when `None`, oldest
/// first.
pub async fn service_accounts(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Option<Uuid>,
) -> Result<Vec<ServiceAccount>> {
    require_manager(principal, workspace_id)?;
    let mut conn = ctx.db.conn().await?;
    let rows = db::access::service_accounts(&mut conn, workspace_id).await?;
    let mut accounts = Vec::with_capacity(rows.len());
    for user in rows {
        let role = match workspace_id {
            Some(workspace_id) => db::access::find_member(&mut conn, workspace_id, user.id.0)
                .await?
                .map(|m| m.role),
            None => None,
        };
        accounts.push(ServiceAccount { user, role });
    }
    Ok(accounts)
}

/// A live service account the caller may manage; `NotFound` otherwise (or `Forbidden` for a
/// member of its workspace below admin).
async fn managed_account(conn: &mut DbConn, principal: &Principal, id: Uuid) -> Result<UserRow> {
    if principal.kind == UserKind::ServiceAccount {
        return Err(service_accounts_are_for_people());
    }
    let account = db::access::find_user(conn, id)
        .await?
        .filter(|u| u.kind == UserKind::ServiceAccount && u.deleted_at.is_none())
        .ok_or(Error::NotFound)?;
    let scope = account.scope_workspace_id.map(|id| id.0);
    match require_manager(principal, scope) {
        // An instance-wide account is not revealed to workspace admins.
        Err(Error::Forbidden(_)) if scope.is_none() => Err(Error::NotFound),
        other => other.map(|()| account),
    }
}

/// Delete a service account: its tokens are revoked and its membership ends (grants withdrawn,
/// sessions ended, as when a member is removed); the row stays so the audit trail names it.
pub async fn delete_service_account(ctx: &Context, principal: &Principal, id: Uuid) -> Result<()> {
    let mut conn = ctx.db.conn().await?;
    let account = managed_account(&mut conn, principal, id).await?;
    let scope = account.scope_workspace_id.map(|w| w.0);
    let (revoked, withdrawn) = transaction!(conn, {
        let now = DbTime(db::now());
        db::access::mark_deleted(&mut conn, id, now).await?;
        let revoked = db::access::revoke_all_tokens(&mut conn, id, now).await?;
        let mut withdrawn = Vec::new();
        if let Some(workspace_id) = scope {
            db::access::lock_workspace(&mut conn, workspace_id).await?;
            db::access::delete_member(&mut conn, workspace_id, id).await?;
            withdrawn = super::workspaces::withdraw_grants(
                &mut conn,
                workspace_id,
                id,
                Some(principal.user_id),
            )
            .await?;
        }
        Trail::of_account(&account)
            .record(
                &mut conn,
                principal.user_id,
                "service_account.delete",
                id,
                json!({ "name": account.name, "tokens_revoked": revoked.len() }),
            )
            .await?;
        Ok::<_, Error>((revoked, withdrawn))
    })?;
    drop(conn);
    for token_id in revoked {
        publish_change(
            ctx,
            AccessEvent::TokenRevoked {
                user_id: id,
                token_id,
            },
        );
    }
    if let Some(workspace_id) = scope {
        publish_change(
            ctx,
            AccessEvent::MemberRemoved {
                workspace_id,
                user_id: id,
            },
        );
    }
    super::workspaces::revoke_withdrawn(ctx, id, withdrawn).await;
    Ok(())
}

/// Mint an API token for a service account (shown once).
pub async fn create_service_account_token(
    ctx: &Context,
    principal: &Principal,
    id: Uuid,
    name: &str,
) -> Result<NewToken> {
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    let account = managed_account(&mut conn, principal, id).await?;
    issue_recorded(
        &mut conn,
        &Trail::of_account(&account),
        principal.user_id,
        "service_account.token.create",
        id,
        &name,
    )
    .await
}

/// A service account's tokens, newest first (revoked ones included).
pub async fn service_account_tokens(
    ctx: &Context,
    principal: &Principal,
    id: Uuid,
) -> Result<Vec<ApiTokenRow>> {
    let mut conn = ctx.db.conn().await?;
    managed_account(&mut conn, principal, id).await?;
    Ok(db::access::tokens_of(&mut conn, id).await?)
}

/// Revoke a service account's token; sessions opened with it end, on every replica.
pub async fn revoke_service_account_token(
    ctx: &Context,
    principal: &Principal,
    id: Uuid,
    token_id: Uuid,
) -> Result<ApiTokenRow> {
    let mut conn = ctx.db.conn().await?;
    let account = managed_account(&mut conn, principal, id).await?;
    revoke_user_token(
        ctx,
        &mut conn,
        principal.user_id,
        &Trail::of_account(&account),
        id,
        token_id,
        "service_account.token.revoke",
    )
    .await
}

/// A user, looked up by an onboarding caller: any user for instance-wide callers, members of
/// its workspace for a workspace-scoped one (`NotFound` otherwise).
pub async fn user(ctx: &Context, principal: &Principal, id: Uuid) -> Result<UserRow> {
    let authority = Authority::of(principal)?;
    let mut conn = ctx.db.conn().await?;
    let user = db::access::find_user(&mut conn, id)
        .await?
        .ok_or(Error::NotFound)?;
    visible(&mut conn, authority, user).await
}

/// The user an identity provider's issuer and subject name, looked up like [`user`].
pub async fn user_by_identity(
    ctx: &Context,
    principal: &Principal,
    issuer: &str,
    subject: &str,
) -> Result<UserRow> {
    let authority = Authority::of(principal)?;
    let mut conn = ctx.db.conn().await?;
    let user = db::access::find_user_by_identity(&mut conn, issuer, subject)
        .await?
        .ok_or(Error::NotFound)?;
    visible(&mut conn, authority, user).await
}

async fn visible(conn: &mut DbConn, authority: Authority, user: UserRow) -> Result<UserRow> {
    match authority {
        Authority::Instance => Ok(user),
        Authority::Workspace { workspace_id, .. } => {
            db::access::find_member(conn, workspace_id, user.id.0)
                .await?
                .ok_or(Error::NotFound)?;
            Ok(user)
        }
    }
}

/// Longest issuer or subject accepted.
const MAX_IDENTITY_CHARS: usize = 1000;

fn identity_part(field: &str, raw: &str) -> Result<String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(bad_input(
            field,
            "is required with the other half of the identity",
        ));
    }
    if text.chars().count() > MAX_IDENTITY_CHARS || text.chars().any(char::is_control) {
        return Err(bad_input(
            field,
            format!("must be at most {MAX_IDENTITY_CHARS} printable characters"),
        ));
    }
    Ok(text.to_owned())
}

/// Create a person. A name another user has (trimmed, in any case) is a conflict; so is an
/// identity (issuer and subject) another user has. With an identity, a later token of that
/// provider's subject signs in as this user.
pub async fn create_user(
    ctx: &Context,
    principal: &Principal,
    name: &str,
    issuer: Option<&str>,
    subject: Option<&str>,
) -> Result<UserRow> {
    let authority = Authority::of(principal)?;
    let name = validate_label("name", name)?;
    let (issuer, subject) = match (issuer, subject) {
        (None, None) => (None, None),
        (issuer, subject) => (
            Some(identity_part("issuer", issuer.unwrap_or_default())?),
            Some(identity_part("subject", subject.unwrap_or_default())?),
        ),
    };
    let mut conn = ctx.db.conn().await?;
    let user = transaction!(conn, {
        db::access::lock_users(&mut conn).await?;
        ensure_name_free(&mut conn, &name).await?;
        if let (Some(issuer), Some(subject)) = (&issuer, &subject)
            && let Some(taken) =
                db::access::find_user_by_identity(&mut conn, issuer, subject).await?
        {
            return Err(Error::Conflict {
                message: "a user with that issuer and subject already exists".to_owned(),
                existing_id: Some(taken.id.0),
            });
        }
        let user = UserRow::human(name.clone());
        db::access::insert_provisioned_user(
            &mut conn,
            &ProvisionedUserRow {
                id: user.id,
                name: user.name.clone(),
                created_at: user.created_at,
                issuer: issuer.clone(),
                subject: subject.clone(),
            },
        )
        .await?;
        let trail = match authority {
            Authority::Workspace { workspace_id, .. } => Trail {
                workspaces: vec![workspace_id],
                instance: false,
            },
            Authority::Instance => Trail {
                workspaces: Vec::new(),
                instance: true,
            },
        };
        trail
            .record(
                &mut conn,
                principal.user_id,
                "user.create",
                user.id.0,
                json!({ "name": name, "issuer": issuer }),
            )
            .await?;
        Ok::<_, Error>(user)
    })?;
    Ok(user)
}

/// Create a workspace (instance-wide callers only), with `admin` as its first admin, or with no
/// member at all, managed by the caller through onboarding.
pub async fn create_workspace(
    ctx: &Context,
    principal: &Principal,
    name: &str,
    admin: Option<Uuid>,
) -> Result<WorkspaceRow> {
    if Authority::of(principal)? != Authority::Instance {
        return Err(Error::Forbidden(
            "creating workspaces needs an instance-wide service account or an instance operator"
                .to_owned(),
        ));
    }
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    let workspace = transaction!(conn, {
        if let Some(admin) = admin {
            person(&mut conn, "adminUserId", admin).await?;
        }
        let now = DbTime(db::now());
        let workspace = WorkspaceRow {
            id: DbUuid(Uuid::now_v7()),
            name: name.clone(),
            created_at: now,
        };
        db::access::insert_workspace(&mut conn, &workspace).await?;
        if let Some(admin) = admin {
            db::access::upsert_member(
                &mut conn,
                &MemberRow {
                    workspace_id: workspace.id,
                    user_id: DbUuid(admin),
                    role: Role::Admin,
                    created_at: now,
                },
            )
            .await?;
        }
        audit::record(
            &mut conn,
            workspace.id.0,
            principal.user_id,
            "workspace.create",
            Some(workspace.id.0),
            json!({ "name": name, "admin": admin }),
        )
        .await?;
        Ok::<_, Error>(workspace)
    })?;
    if let Some(admin) = admin {
        publish_change(
            ctx,
            AccessEvent::RoleChanged {
                workspace_id: workspace.id.0,
                user_id: admin,
                role: Role::Admin,
            },
        );
    }
    Ok(workspace)
}

/// A person (not a service account, not deleted); bad input on `field` otherwise.
async fn person(conn: &mut DbConn, field: &str, id: Uuid) -> Result<UserRow> {
    match db::access::find_user(conn, id).await? {
        Some(user) if user.kind == UserKind::Human => Ok(user),
        Some(_) => Err(bad_input(
            field,
            "service accounts are managed with the service account operations",
        )),
        None => Err(bad_input(field, "no such user")),
    }
}

fn above_own_role(ceiling: Role) -> Error {
    Error::Forbidden(format!(
        "this service account may grant and change roles up to {ceiling}"
    ))
}

/// Add a person to a workspace or change their role, within the caller's scope and never above
/// the caller's own role there. The workspace keeps an admin if it has one.
pub async fn set_membership(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<MemberRow> {
    let ceiling = Authority::of(principal)?.ceiling_in(workspace_id)?;
    if role > ceiling {
        return Err(above_own_role(ceiling));
    }
    if user_id == principal.user_id {
        return Err(bad_input("userId", "you cannot change your own membership"));
    }
    let mut conn = ctx.db.conn().await?;
    let member = transaction!(conn, {
        if !db::access::lock_workspace(&mut conn, workspace_id).await? {
            return Err(Error::NotFound);
        }
        person(&mut conn, "userId", user_id).await?;
        let previous = db::access::find_member(&mut conn, workspace_id, user_id).await?;
        if previous.as_ref().is_some_and(|m| m.role > ceiling) {
            return Err(above_own_role(ceiling));
        }
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
    publish_change(
        ctx,
        AccessEvent::RoleChanged {
            workspace_id,
            user_id,
            role,
        },
    );
    Ok(member)
}

/// Remove a person from a workspace within the caller's scope (never one whose role is above
/// the caller's own), exactly as `removeWorkspaceMember` does: audited, the member's grants
/// withdrawn and revoked, their sessions ended. The last admin cannot be removed.
pub async fn remove_membership(
    ctx: &Context,
    principal: &Principal,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    let ceiling = Authority::of(principal)?.ceiling_in(workspace_id)?;
    if user_id == principal.user_id {
        return Err(bad_input("userId", "you cannot change your own membership"));
    }
    let mut conn = ctx.db.conn().await?;
    if db::access::find_workspace(&mut conn, workspace_id)
        .await?
        .is_none()
    {
        return Err(Error::NotFound);
    }
    let member = db::access::find_member(&mut conn, workspace_id, user_id)
        .await?
        .ok_or(Error::NotFound)?;
    person(&mut conn, "userId", user_id).await?;
    if member.role > ceiling {
        return Err(above_own_role(ceiling));
    }
    drop(conn);
    remove_member_by(ctx, principal.user_id, workspace_id, user_id).await
}

/// The person whose tokens an onboarding caller manages, with the workspaces its changes are
/// audited in: for a workspace-scoped caller, a member of its workspace (`NotFound` otherwise)
/// whose role there is not above the caller's and who belongs to no other workspace; never a
/// service account or an instance operator (`Forbidden`).
async fn token_holder(
    conn: &mut DbConn,
    authority: Authority,
    user_id: Uuid,
) -> Result<(UserRow, Trail)> {
    let user = db::access::find_user(conn, user_id)
        .await?
        .ok_or(Error::NotFound)?;
    let trail = match authority {
        Authority::Workspace { workspace_id, role } => {
            let member = db::access::find_member(conn, workspace_id, user_id)
                .await?
                .ok_or(Error::NotFound)?;
            // A token carries every membership of its user: one for a member above the
            // account's own role would lift the account above it.
            if member.role > role {
                return Err(above_own_role(role));
            }
            // Nor may it reach into other workspaces through a user who belongs to them too.
            let elsewhere = db::access::members_of_user(conn, user_id)
                .await?
                .iter()
                .any(|m| m.workspace_id.0 != workspace_id);
            if elsewhere {
                return Err(Error::Forbidden(
                    "the user belongs to other workspaces too: their tokens are managed by an \
                     instance operator or an instance-wide service account"
                        .to_owned(),
                ));
            }
            Trail {
                workspaces: vec![workspace_id],
                instance: false,
            }
        }
        Authority::Instance => Trail {
            workspaces: db::access::members_of_user(conn, user_id)
                .await?
                .into_iter()
                .map(|m| m.workspace_id.0)
                .collect(),
            instance: true,
        },
    };
    if user.kind != UserKind::Human || user.operator {
        return Err(Error::Forbidden(
            "tokens are minted here only for people who are not instance operators".to_owned(),
        ));
    }
    Ok((user, trail))
}

/// Mint an API token for a person within the caller's scope (shown once).
pub async fn create_user_token(
    ctx: &Context,
    principal: &Principal,
    user_id: Uuid,
    name: &str,
) -> Result<NewToken> {
    let authority = Authority::of(principal)?;
    let name = validate_label("name", name)?;
    let mut conn = ctx.db.conn().await?;
    let (_, trail) = token_holder(&mut conn, authority, user_id).await?;
    issue_recorded(
        &mut conn,
        &trail,
        principal.user_id,
        "user.token.create",
        user_id,
        &name,
    )
    .await
}

/// Mint a token for `user_id` and record it on `trail` as `action` by `actor`, together.
async fn issue_recorded(
    conn: &mut DbConn,
    trail: &Trail,
    actor: Uuid,
    action: &str,
    user_id: Uuid,
    name: &str,
) -> Result<NewToken> {
    transaction!(conn, {
        let token = issue_token(conn, user_id, name).await?;
        trail
            .record(
                conn,
                actor,
                action,
                user_id,
                json!({ "token": token.row.id.0, "name": name }),
            )
            .await?;
        Ok::<_, Error>(token)
    })
}

/// Revoke a person's token within the caller's scope; sessions opened with it end, on every
/// replica.
pub async fn revoke_person_token(
    ctx: &Context,
    principal: &Principal,
    user_id: Uuid,
    token_id: Uuid,
) -> Result<ApiTokenRow> {
    let authority = Authority::of(principal)?;
    let mut conn = ctx.db.conn().await?;
    let (_, trail) = token_holder(&mut conn, authority, user_id).await?;
    revoke_user_token(
        ctx,
        &mut conn,
        principal.user_id,
        &trail,
        user_id,
        token_id,
        "user.token.revoke",
    )
    .await
}

/// Revoke one live token of `user_id` (`NotFound` when it has no such live token), audited in
/// `trail`, and publish the change.
async fn revoke_user_token(
    ctx: &Context,
    conn: &mut DbConn,
    actor: Uuid,
    trail: &Trail,
    user_id: Uuid,
    token_id: Uuid,
    action: &str,
) -> Result<ApiTokenRow> {
    transaction!(conn, {
        if !db::access::revoke_token(conn, token_id, user_id, DbTime(db::now())).await? {
            return Err(Error::NotFound);
        }
        trail
            .record(conn, actor, action, user_id, json!({ "token": token_id }))
            .await?;
        Ok::<_, Error>(())
    })?;
    publish_change(ctx, AccessEvent::TokenRevoked { user_id, token_id });
    db::access::tokens_of(conn, user_id)
        .await?
        .into_iter()
        .find(|t| t.id.0 == token_id)
        .ok_or(Error::NotFound)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::access::Credential;

    fn principal(
        kind: UserKind,
        operator: bool,
        scope: Option<Uuid>,
        role: Option<Role>,
    ) -> Principal {
        Principal {
            user_id: Uuid::now_v7(),
            credential: Credential::ApiToken {
                token_id: Uuid::now_v7(),
            },
            memberships: scope
                .zip(role)
                .map(|(w, r)| HashMap::from([(w, r)]))
                .unwrap_or_default(),
            kind,
            operator,
            scope_workspace_id: scope,
        }
    }

    #[test]
    fn authority_follows_the_kind_the_privilege_and_the_scope() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let cases = [
            // kind, operator, scope, role in scope, authority, ceiling in A, ceiling in B
            (
                UserKind::Human,
                true,
                None,
                None,
                Some(Authority::Instance),
                Some(Role::Admin),
                Some(Role::Admin),
            ),
            (
                UserKind::ServiceAccount,
                true,
                None,
                None,
                Some(Authority::Instance),
                Some(Role::Admin),
                Some(Role::Admin),
            ),
            (
                UserKind::ServiceAccount,
                false,
                Some(a),
                Some(Role::Editor),
                Some(Authority::Workspace {
                    workspace_id: a,
                    role: Role::Editor,
                }),
                Some(Role::Editor),
                None,
            ),
            // A scoped account whose membership was removed has no authority left.
            (
                UserKind::ServiceAccount,
                false,
                Some(a),
                None,
                None,
                None,
                None,
            ),
            // People who are members, even admins, have none.
            (
                UserKind::Human,
                false,
                Some(a),
                Some(Role::Admin),
                None,
                None,
                None,
            ),
        ];
        for (kind, operator, scope, role, authority, in_a, in_b) in cases {
            let p = principal(kind, operator, scope, role);
            match (Authority::of(&p), authority) {
                (Ok(got), Some(want)) => {
                    assert_eq!(got, want);
                    assert_eq!(got.ceiling_in(a).ok(), in_a);
                    assert_eq!(got.ceiling_in(b).ok(), in_b);
                    if in_b.is_none() {
                        assert!(matches!(got.ceiling_in(b), Err(Error::NotFound)));
                    }
                }
                (Err(Error::Forbidden(_)), None) => {}
                (got, want) => panic!("{kind:?} {operator} {scope:?}: {got:?} != {want:?}"),
            }
        }
    }
}
