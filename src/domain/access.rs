//! Principals, roles and workspace scoping.
//!
//! A request is authenticated once, from its API token or its identity provider's JWT (see
//! [`super::identity`]), into a [`Principal`] that says how the caller authenticated
//! ([`Credential`]) and carries the caller's memberships. Every operation on a workspace
//! object first resolves the object, then asks the principal for the needed role in the
//! object's workspace: a caller who is not a member gets `NotFound` (the object's existence is
//! not revealed), a member with too low a role gets `Forbidden`.
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

/// How a caller authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// With one of Switchboard's own API tokens.
    ApiToken {
        /// The token.
        token_id: Uuid,
    },
    /// With a bearer JWT from a trusted identity provider.
    IdentityProvider {
        /// The provider's issuer.
        issuer: String,
        /// When the token expires.
        expires_at: chrono::DateTime<chrono::Utc>,
    },
}

/// What a user is.
pub use crate::db::types::UserKind;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user.
    pub user_id: Uuid,
    /// How the caller authenticated.
    pub credential: Credential,
    /// Role per workspace, read when the request was authenticated.
    pub memberships: HashMap<Uuid, Role>,
    /// A person or a service account.
    pub kind: UserKind,
    /// Whether the user holds the instance-wide privilege (see [`super::onboarding`]).
    pub operator: bool,
    /// The one workspace a service account is scoped to (none for instance-wide ones).
    pub scope_workspace_id: Option<Uuid>,
}

impl Principal {
    /// The principal of a user read from the database.
    pub fn of(
        user: &crate::db::models::UserRow,
        credential: Credential,
        memberships: HashMap<Uuid, Role>,
    ) -> Principal {
        Principal {
            user_id: user.id.0,
            credential,
            memberships,
            kind: user.kind,
            operator: user.operator,
            scope_workspace_id: user.scope_workspace_id.map(|id| id.0),
        }
    }

    /// The API token used, if the caller authenticated with one.
    pub fn token_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::ApiToken { token_id } => Some(token_id),
            Credential::IdentityProvider { .. } => None,
        }
    }

    /// When the credential stops being valid, if it expires (identity tokens do; API tokens
    /// last until revoked).
    pub fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.credential {
            Credential::ApiToken { .. } => None,
            Credential::IdentityProvider { expires_at, .. } => Some(expires_at),
        }
    }

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

/// How long a cached principal is used without reading it again: the backstop for a change
/// that no event announced (an operator's command on another process of a SQLite deployment).
pub const PRINCIPAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// Principals cached at most; past that the cache starts over.
const PRINCIPALS_KEPT: usize = 10_000;

/// Authenticated principals by token hash, so a request costs no database read for its token.
///
/// Invariants:
/// - An entry is used for at most [`PRINCIPAL_MAX_AGE`] after it was read, and never past the
///   expiry of the token it was read for (identity tokens).
/// - Every access change drops what it concerns before it is published ([`publish_change`]
///   on this process; the `principal_cache` service for the other replicas' changes, relayed
///   through PostgreSQL): a revoked token, or every token of a user whose membership changed.
///   Changes that may have been missed (`Recheck`) drop everything.
/// - Only the token's hash is kept, never the token.
#[derive(Default)]
pub struct PrincipalCache {
    entries: std::sync::Mutex<HashMap<String, CachedPrincipal>>,
}

struct CachedPrincipal {
    principal: Principal,
    read_at: std::time::Instant,
    /// When the token expires, if it does.
    expires: Option<std::time::Instant>,
    last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl CachedPrincipal {
    fn usable(&self) -> bool {
        self.read_at.elapsed() < PRINCIPAL_MAX_AGE
            && self
                .expires
                .is_none_or(|expires| std::time::Instant::now() < expires)
    }
}

impl PrincipalCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedPrincipal>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, hash: &str) -> Option<(Principal, Option<chrono::DateTime<chrono::Utc>>)> {
        let entries = self.entries();
        let cached = entries.get(hash)?;
        cached
            .usable()
            .then(|| (cached.principal.clone(), cached.last_used_at))
    }

    fn put(
        &self,
        hash: String,
        principal: Principal,
        expires: Option<std::time::Instant>,
        last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let mut entries = self.entries();
        if entries.len() >= PRINCIPALS_KEPT {
            entries.retain(|_, cached| cached.usable());
            if entries.len() >= PRINCIPALS_KEPT {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            CachedPrincipal {
                principal,
                read_at: std::time::Instant::now(),
                expires,
                last_used_at,
            },
        );
    }

    fn forget_hash(&self, hash: &str) {
        self.entries().remove(hash);
    }

    fn touched(&self, hash: &str, at: chrono::DateTime<chrono::Utc>) {
        if let Some(cached) = self.entries().get_mut(hash) {
            cached.last_used_at = Some(at);
        }
    }

    /// Drop what an access change concerns; `None` (changes may have been missed) drops all.
    pub fn forget(&self, change: Option<&AccessEvent>) {
        let mut entries = self.entries();
        match change {
            Some(AccessEvent::TokenRevoked { token_id, .. }) => {
                entries.retain(|_, cached| cached.principal.token_id() != Some(*token_id));
            }
            Some(change) => {
                let user_id = change.user_id();
                entries.retain(|_, cached| cached.principal.user_id != user_id);
            }
            None => entries.clear(),
        }
    }

    /// How many principals are cached.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

/// Publish an access change: this process's cached principals it concerns go first, so the
/// next request here is checked against the database; the other replicas drop theirs when the
/// change reaches them.
pub fn publish_change(ctx: &Context, change: AccessEvent) {
    ctx.principals.forget(Some(&change));
    ctx.events.publish_access(change);
}

/// Follow the access changes of every replica into the principal cache, until the bus closes.
/// A subscriber that fell behind, or a (re)start, drops everything.
pub async fn follow_changes(
    principals: &PrincipalCache,
    mut changes: tokio::sync::broadcast::Receiver<AccessSignal>,
) {
    use tokio::sync::broadcast::error::RecvError;
    principals.forget(None);
    loop {
        match changes.recv().await {
            Ok(AccessSignal::Changed(change)) => principals.forget(Some(&change)),
            Ok(AccessSignal::Recheck) | Err(RecvError::Lagged(_)) => principals.forget(None),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Authenticate a bearer token: an API token (`sbt_…`) that is live, or, when identity
/// providers are configured, any other token as a JWT of one of them (see
/// [`super::identity`]). `Unauthenticated` otherwise. The principal is cached (see
/// [`PrincipalCache`]).
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Principal> {
    authenticate_with(ctx, token, true).await
}

/// [`authenticate`] against the database whatever is cached (and caching the answer): what a
/// long-lived session uses before each operation, so a change no event announced still stops
/// it.
pub async fn authenticate_fresh(ctx: &Context, token: &str) -> Result<Principal> {
    authenticate_with(ctx, token, false).await
}

async fn authenticate_with(ctx: &Context, token: &str, cached: bool) -> Result<Principal> {
    if !token.starts_with(TOKEN_PREFIX) {
        if ctx.identity.is_configured() {
            return authenticate_identity(ctx, token, cached).await;
        }
        return Err(Error::Unauthenticated);
    }
    if token.len() > 256 {
        return Err(Error::Unauthenticated);
    }
    let hash = sha256_hex(token);
    let now = db::now();
    if cached && let Some((principal, last_used_at)) = ctx.principals.get(&hash) {
        if last_used_at.is_none_or(|at| now - at > TOUCH_INTERVAL) {
            let mut conn = ctx.db.conn().await?;
            if let Some(token_id) = principal.token_id() {
                db::access::touch_token(&mut conn, token_id, DbTime(now)).await?;
            }
            ctx.principals.touched(&hash, now);
        }
        return Ok(principal);
    }
    let mut conn = ctx.db.conn().await?;
    let Some((token_row, user, members)) =
        db::access::find_live_token_with_memberships(&mut conn, &hash).await?
    else {
        ctx.principals.forget_hash(&hash);
        return Err(Error::Unauthenticated);
    };
    let memberships = members
        .into_iter()
        .map(|m| (m.workspace_id.0, m.role))
        .collect();
    let mut last_used_at = token_row.last_used_at.map(|t| t.0);
    if last_used_at.is_none_or(|at| now - at > TOUCH_INTERVAL) {
        db::access::touch_token(&mut conn, token_row.id.0, DbTime(now)).await?;
        last_used_at = Some(now);
    }
    let principal = Principal::of(
        &user,
        Credential::ApiToken {
            token_id: token_row.id.0,
        },
        memberships,
    );
    ctx.principals
        .put(hash, principal.clone(), None, last_used_at);
    Ok(principal)
}

/// Authenticate a JWT of a configured identity provider: verify it, sign its user in (see
/// [`super::identity::sign_in`]) and read the user's memberships. Cached by the token's hash,
/// never past the token's expiry.
async fn authenticate_identity(ctx: &Context, token: &str, cached: bool) -> Result<Principal> {
    if token.len() > super::identity::jwt::MAX_TOKEN_BYTES {
        return Err(Error::Unauthenticated);
    }
    let hash = sha256_hex(token);
    if cached && let Some((principal, _)) = ctx.principals.get(&hash) {
        return Ok(principal);
    }
    let now = db::now();
    let verified = match ctx.identity.verify(&ctx.http, token, now.timestamp()).await {
        Ok(verified) => verified,
        Err(error) => {
            ctx.principals.forget_hash(&hash);
            super::identity::log_refusal(&error);
            return Err(Error::Unauthenticated);
        }
    };
    let user_id = super::identity::sign_in(ctx, token, &verified, now.timestamp()).await?;
    let mut conn = ctx.db.conn().await?;
    let user = db::access::find_user(&mut conn, user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    let memberships = db::access::members_of_user(&mut conn, user_id)
        .await?
        .into_iter()
        .map(|m| (m.workspace_id.0, m.role))
        .collect();
    let expires_at = chrono::DateTime::from_timestamp(verified.identity.expires_at, 0)
        .ok_or(Error::Unauthenticated)?;
    let principal = Principal::of(
        &user,
        Credential::IdentityProvider {
            issuer: verified.provider.issuer.clone(),
            expires_at,
        },
        memberships,
    );
    let left = (expires_at - now).to_std().unwrap_or_default();
    if !left.is_zero() {
        let expires = std::time::Instant::now().checked_add(left);
        ctx.principals.put(hash, principal.clone(), expires, None);
    }
    Ok(principal)
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
            credential: Credential::ApiToken {
                token_id: Uuid::now_v7(),
            },
            memberships: HashMap::from([(ws, Role::Editor)]),
            kind: UserKind::Human,
            operator: false,
            scope_workspace_id: None,
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
    fn access_changes_drop_exactly_what_they_concern() {
        let cache = PrincipalCache::default();
        let (ana, bo) = (Uuid::now_v7(), Uuid::now_v7());
        let ws = Uuid::now_v7();
        let principal = |user_id| Principal {
            user_id,
            credential: Credential::ApiToken {
                token_id: Uuid::now_v7(),
            },
            memberships: HashMap::from([(ws, Role::Viewer)]),
            kind: UserKind::Human,
            operator: false,
            scope_workspace_id: None,
        };
        let (ana1, ana2, bo1) = (principal(ana), principal(ana), principal(bo));
        let ana_jwt = Principal {
            credential: Credential::IdentityProvider {
                issuer: "https://id.example.com".into(),
                expires_at: chrono::Utc::now(),
            },
            ..principal(ana)
        };
        cache.put("a1".into(), ana1.clone(), None, None);
        cache.put("a2".into(), ana2, None, None);
        cache.put("b1".into(), bo1, None, None);
        cache.put("a3".into(), ana_jwt, Some(std::time::Instant::now()), None);
        assert_eq!(cache.len(), 4);
        assert!(cache.get("a3").is_none(), "never past the token's expiry");
        assert_eq!(cache.get("a1").unwrap().0.token_id(), ana1.token_id());

        cache.forget(Some(&AccessEvent::TokenRevoked {
            user_id: ana,
            token_id: ana1.token_id().unwrap(),
        }));
        assert!(cache.get("a1").is_none(), "the revoked token");
        assert!(cache.get("a2").is_some() && cache.get("b1").is_some());

        cache.forget(Some(&AccessEvent::MemberRemoved {
            workspace_id: ws,
            user_id: bo,
        }));
        assert!(
            cache.get("b1").is_none(),
            "every token of the removed member"
        );
        assert!(cache.get("a2").is_some());

        cache.forget(None);
        assert_eq!(cache.len(), 0, "missed changes drop everything");
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
