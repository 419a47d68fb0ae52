//! Principals, roles and workspace scoping.
//!
//! A request is authenticated once, from its API token, into a [`Principal`] that carries the
//! caller's memberships. Every operation on a workspace object first resolves the object, then
//! asks the principal for the needed role in the object's workspace: a caller who is not a
//! member gets `NotFound` (the object's existence is not revealed), a member with too low a
//! role gets `Forbidden`.
//!
//! Long-lived sessions (WebSocket sockets) authenticate again, with [`authenticate`], for every
//! operation they start, and follow [`AccessEvent`]s: a revoked token or a lost membership ends
//! them on every replica, so a session never outlives the credentials it was opened with.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Error, Result};
use crate::crypto::sha256_hex;
use crate::db::{self, DbTime};
use crate::domain::Context;

/// A role in a workspace, in increasing order of power.
pub use crate::db::types::Role;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user.
    pub user_id: Uuid,
    /// The token used.
    pub token_id: Uuid,
    /// Role per workspace, read when the request was authenticated.
    pub memberships: HashMap<Uuid, Role>,
}

impl Principal {
    /// The caller's role in a workspace, if a member.
    pub fn role_in(&self, workspace_id: Uuid) -> Option<Role> {
        self.memberships.get(&workspace_id).copied()
    }

    /// Require at least `needed` in the workspace: `NotFound` for non-members (nothing about
    /// the workspace is revealed), `Forbidden` for members with a lower role.
    pub fn require(&self, workspace_id: Uuid, needed: Role) -> Result<Role> {
        match self.role_in(workspace_id) {
            None => Err(Error::NotFound),
            Some(role) if role >= needed => Ok(role),
            Some(role) => Err(Error::Forbidden(format!(
                "this needs the {needed} role; you are {role} in this workspace"
            ))),
        }
    }

    /// Workspaces the caller belongs to.
    pub fn workspace_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.memberships.keys().copied().collect();
        ids.sort();
        ids
    }
}

/// A change of who may do what, published (after it commits) to every replica so that open
/// sessions follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccessEvent {
    /// An API token was revoked: sessions opened with it end.
    TokenRevoked {
        /// The token's user.
        user_id: Uuid,
        /// The token.
        token_id: Uuid,
    },
    /// A user left a workspace: the user's sessions end.
    MemberRemoved {
        /// The workspace.
        workspace_id: Uuid,
        /// The former member.
        user_id: Uuid,
    },
    /// A user joined a workspace or got another role in it: the user's sessions stay open and
    /// every operation they start from then on runs with the new role.
    RoleChanged {
        /// The workspace.
        workspace_id: Uuid,
        /// The member.
        user_id: Uuid,
        /// The role now.
        role: Role,
    },
}

impl AccessEvent {
    /// The user the change concerns.
    pub fn user_id(&self) -> Uuid {
        match self {
            AccessEvent::TokenRevoked { user_id, .. }
            | AccessEvent::MemberRemoved { user_id, .. }
            | AccessEvent::RoleChanged { user_id, .. } => *user_id,
        }
    }
}

/// What subscribers of access changes receive: one change, or `Recheck` when changes may have
/// been missed (check every open session against the database again).
pub type AccessSignal = crate::events::Signal<AccessEvent>;

/// Prefix of every API token, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "sbt_";

/// How often `last_used_at` is written for a busy token: once a minute is enough to show
/// activity and keeps reads from turning into writes.
const TOUCH_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Extract the token from an `Authorization` header value (`Bearer <token>`).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticate an API token: `Unauthenticated` unless it is a live token.
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Principal> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 256 {
        return Err(Error::Unauthenticated);
    }
    let hash = sha256_hex(token);
    let mut conn = ctx.db.conn().await?;
    let Some((token_row, user, members)) =
        db::access::find_live_token_with_memberships(&mut conn, &hash).await?
    else {
        return Err(Error::Unauthenticated);
    };
    let memberships = members
        .into_iter()
        .map(|m| (m.workspace_id.0, m.role))
        .collect();
    let now = db::now();
    if token_row
        .last_used_at
        .is_none_or(|at| now - at.0 > TOUCH_INTERVAL)
    {
        db::access::touch_token(&mut conn, token_row.id.0, DbTime(now)).await?;
    }
    Ok(Principal {
        user_id: user.id.0,
        token_id: token_row.id.0,
        memberships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Editor && Role::Editor > Role::Viewer);
        let ws = Uuid::now_v7();
        let principal = Principal {
            user_id: Uuid::now_v7(),
            token_id: Uuid::now_v7(),
            memberships: HashMap::from([(ws, Role::Editor)]),
        };
        assert!(principal.require(ws, Role::Viewer).is_ok());
        assert!(principal.require(ws, Role::Editor).is_ok());
        assert!(matches!(
            principal.require(ws, Role::Admin),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            principal.require(Uuid::now_v7(), Role::Viewer),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
