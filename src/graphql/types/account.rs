//! Users and their API tokens.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::super::error::{Result, principal};
use super::WorkspaceRole;
use crate::app::AppHandle;
use crate::db::models::{ApiTokenRow, UserRow, WorkspaceRow};
use crate::domain::access::{Credential, Principal};
use crate::domain::onboarding;

/// A user.
pub struct User(pub UserRow);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// A person or a service account.
    async fn kind(&self) -> UserKind {
        self.0.kind.into()
    }
    /// Whether the user may onboard users, workspaces, memberships and tokens in every
    /// workspace (instance operators and instance-wide service accounts).
    async fn instance_wide(&self) -> bool {
        self.0.operator
    }
    /// For a service account scoped to one workspace, that workspace's id; null for
    /// instance-wide service accounts and people.
    async fn scope_workspace_id(&self) -> Option<ID> {
        self.0.scope_workspace_id.map(|id| ID(id.0.to_string()))
    }
    /// How the caller authenticated this request: set on the caller's own user (`viewer`),
    /// null on every other user.
    async fn authenticated_by(&self, ctx: &Context<'_>) -> Option<Authentication> {
        let principal = ctx.data_opt::<Principal>()?;
        (principal.user_id == self.0.id.0).then(|| Authentication::of(principal))
    }
}

/// What a user is.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::db::types::UserKind")]
pub enum UserKind {
    /// A person.
    Human,
    /// A non-human account a product's backend acts with, through API tokens.
    ServiceAccount,
}

/// A service account: scoped to one workspace with a role there, or instance-wide.
pub struct ServiceAccount(pub onboarding::ServiceAccount);

#[Object]
impl ServiceAccount {
    async fn id(&self) -> ID {
        ID(self.0.user.id.0.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.user.name
    }
    /// The workspace it acts in; null when instance-wide.
    async fn workspace_id(&self) -> Option<ID> {
        self.0
            .user
            .scope_workspace_id
            .map(|id| ID(id.0.to_string()))
    }
    /// Its role in its workspace, the highest it may grant there; null when instance-wide.
    async fn role(&self) -> Option<WorkspaceRole> {
        self.0.role.map(Into::into)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.user.created_at.0
    }
    /// The account as a user.
    async fn user(&self) -> User {
        User(self.0.user.clone())
    }
    /// Its API tokens, newest first (revoked ones included); the tokens themselves are never
    /// shown again.
    async fn tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiToken>> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        Ok(
            onboarding::service_account_tokens(app, principal, self.0.user.id.0)
                .await?
                .into_iter()
                .map(ApiToken)
                .collect(),
        )
    }
}

/// A workspace created through onboarding.
pub struct OnboardedWorkspace(pub WorkspaceRow);

#[Object]
impl OnboardedWorkspace {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }
}

/// The kind of credential a request was authenticated with.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthenticationMethod {
    /// One of Switchboard's own API tokens.
    ApiToken,
    /// A bearer JWT from a trusted identity provider.
    IdentityProvider,
}

/// How a request was authenticated.
#[derive(SimpleObject, Clone, Debug)]
pub struct Authentication {
    /// The kind of credential.
    pub method: AuthenticationMethod,
    /// The API token's id, when one was used.
    pub api_token_id: Option<ID>,
    /// The identity provider's issuer, when one of its tokens was used.
    pub issuer: Option<String>,
    /// When the credential expires (identity provider tokens); null for API tokens, which
    /// last until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Authentication {
    fn of(principal: &Principal) -> Authentication {
        match &principal.credential {
            Credential::ApiToken { token_id } => Authentication {
                method: AuthenticationMethod::ApiToken,
                api_token_id: Some(ID(token_id.to_string())),
                issuer: None,
                expires_at: None,
            },
            Credential::IdentityProvider { issuer, expires_at } => Authentication {
                method: AuthenticationMethod::IdentityProvider,
                api_token_id: None,
                issuer: Some(issuer.clone()),
                expires_at: Some(*expires_at),
            },
        }
    }
}

/// An API token; the token itself is shown only once, at creation.
pub struct ApiToken(pub ApiTokenRow);

#[Object]
impl ApiToken {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The first characters of the token, to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at.map(|t| t.0)
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at.map(|t| t.0)
    }
}
