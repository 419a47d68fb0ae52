//! Mutation root and its inputs.

use async_graphql::{Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject};

use super::enums::McpInputAction;
use super::error::{ApiError, Result, parse_id, principal};
use super::types::{
    ApiToken, McpAuthType, McpCredentialMode, McpServer, McpTransport, OnboardedWorkspace,
    ServiceAccount, User, Workspace, WorkspaceMember, WorkspaceRole,
};
use crate::app::AppHandle;
use crate::crypto::Secret;
use crate::domain::access::Role;
use crate::domain::mcp::calls::{self, CallOutcome, UnansweredInput};
use crate::domain::mcp::input::{Answer, Ask};
use crate::domain::oauth::flow;
use crate::domain::servers::{self, HeaderInput as DomainHeader, NewServer, Patch, ServerChanges};
use crate::domain::{onboarding, workspaces};

/// A static header sent to an MCP server. The value is stored encrypted and never returned.
#[derive(InputObject)]
pub struct HeaderInput {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// Input of `createMcpServer`.
#[derive(InputObject)]
pub struct CreateMcpServerInput {
    /// Workspace to register the server in.
    pub workspace_id: ID,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// MCP endpoint (https, or http on loopback).
    pub url: String,
    /// Transport (default STREAMABLE_HTTP).
    pub transport: Option<McpTransport>,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// Request timeout in milliseconds (1000–300000, default 30000).
    pub timeout_ms: Option<i32>,
    /// Connection retries (0–10, default 3).
    pub retries: Option<i32>,
    /// Auth type; inferred when absent.
    pub auth_type: Option<McpAuthType>,
    /// Static headers.
    pub headers: Option<Vec<HeaderInput>>,
    /// Pre-registered OAuth client id (`""` means none).
    pub oauth_client_id: Option<String>,
    /// Pre-registered OAuth client secret (`""` means none).
    pub oauth_client_secret: Option<String>,
    /// Accept an authorization server that omits `code_challenge_methods_supported` (some
    /// large providers do, while supporting PKCE S256). Default false.
    pub oauth_lenient_pkce: Option<bool>,
    /// Whose OAuth credentials reach the server. Default `SHARED`; `PER_USER` needs a server
    /// that uses OAuth (or whose auth type is not known yet); `CLIENT_CREDENTIALS` also needs
    /// `oauthClientId` with `oauthClientSecret` or `oauthClientKey`.
    pub credentials: Option<McpCredentialMode>,
    /// A machine client's private key, PEM (PKCS#8, PKCS#1 or SEC1; RSA of 2048 bits or more,
    /// or P-256), for `private_key_jwt` with `CLIENT_CREDENTIALS`. Write-only: it is sealed and
    /// never returned.
    pub oauth_client_key: Option<String>,
}

/// Input of `updateMcpServer`: an absent field is unchanged; `null` (or `""`) clears.
#[derive(InputObject)]
pub struct UpdateMcpServerInput {
    /// Display name.
    pub name: MaybeUndefined<String>,
    /// Free text.
    pub description: MaybeUndefined<String>,
    /// MCP endpoint. Moving it to another origin (scheme, host or port) drops the stored
    /// header values and the OAuth client id and secret, unless this input sets them again.
    pub url: MaybeUndefined<String>,
    /// Transport.
    pub transport: MaybeUndefined<McpTransport>,
    /// Enabled.
    pub enabled: MaybeUndefined<bool>,
    /// Request timeout in milliseconds.
    pub timeout_ms: MaybeUndefined<i32>,
    /// Connection retries.
    pub retries: MaybeUndefined<i32>,
    /// Auth type.
    pub auth_type: MaybeUndefined<McpAuthType>,
    /// Static headers (replace all; `null` or `[]` removes them).
    pub headers: MaybeUndefined<Vec<HeaderInput>>,
    /// Pre-registered OAuth client id.
    pub oauth_client_id: MaybeUndefined<String>,
    /// Pre-registered OAuth client secret.
    pub oauth_client_secret: MaybeUndefined<String>,
    /// Accept an authorization server that omits `code_challenge_methods_supported`.
    pub oauth_lenient_pkce: MaybeUndefined<bool>,
    /// Whose OAuth credentials reach the server. Changing it revokes and removes the grants
    /// the old mode held.
    pub credentials: MaybeUndefined<McpCredentialMode>,
    /// A machine client's private key, PEM. Write-only; `null` or `""` removes it.
    pub oauth_client_key: MaybeUndefined<String>,
}

/// Result of `createMcpServer`.
#[derive(SimpleObject)]
pub struct CreateMcpServerPayload {
    /// The server.
    pub server: McpServer,
    /// The auth type that was given or detected (`UNDETECTED` when the server could not be
    /// asked; see `detection`).
    pub auth_type: McpAuthType,
    /// What detection found when the server was asked (`oauth_challenge`, `unreachable`,
    /// `unexpected_status_503`, …); null when the input decided the auth type.
    pub detection: Option<String>,
}

/// Result of `detectMcpServerAuth`.
#[derive(SimpleObject)]
pub struct DetectMcpServerAuthPayload {
    /// The server as stored after detection.
    pub server: McpServer,
    /// What detection found (`oauth_challenge`, `no_auth_required`, `unreachable`, …).
    pub detection: String,
}

/// Whether `startMcpOauth` needs the browser.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum McpOauthStartStatus {
    /// Open `authorizationUrl`.
    Redirect,
    /// The stored grant still works; nothing to do.
    AlreadyAuthorized,
}

/// Result of `startMcpOauth`.
#[derive(SimpleObject)]
pub struct StartMcpOauthPayload {
    /// What to do next.
    pub status: McpOauthStartStatus,
    /// The URL to open in a popup (Switchboard's own begin link), for `REDIRECT`.
    pub authorization_url: Option<String>,
    /// When the flow expires, for `REDIRECT`.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The result of a tool call, as the server sent it: the tool's answer, or what the server
/// needs from the user before the tool can run.
#[derive(SimpleObject)]
pub struct McpToolResult {
    /// Whether the tool ran, or the server asks for input first.
    pub status: McpToolCallStatus,
    /// Content blocks (`{"type": "text", "text": …}` and the like). Empty while input is
    /// required.
    pub content: Vec<Json<serde_json::Value>>,
    /// Structured result, when the tool returns one.
    pub structured_content: Option<Json<serde_json::Value>>,
    /// The tool ran and reported a failure.
    pub is_error: bool,
    /// What the server asks (`INPUT_REQUIRED`): answer every one with `continueMcpToolCall`.
    pub input_requests: Vec<McpInputRequest>,
    /// Pass to `continueMcpToolCall` with the answers (`INPUT_REQUIRED`). Opaque; only the
    /// caller can use it, until `continuationExpiresAt`.
    pub continuation: Option<String>,
    /// When the continuation stops working.
    pub continuation_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Input the server asked for while the tool ran and could not get (`COMPLETE`): a server
    /// of an earlier revision asks in the middle of a call, where nobody can answer, so each
    /// request was answered `cancel` and the result is what the tool did without it.
    pub unanswered_input: Vec<McpUnansweredInput>,
}

/// Input a server asked for during a call and did not get.
#[derive(SimpleObject)]
pub struct McpUnansweredInput {
    pub mode: McpInputMode,
    /// What the server said to the user, as sent (at most 2,000 characters).
    pub message: String,
    /// The page the server wanted opened (`URL`), when it is a web URL.
    pub url: Option<String>,
}

/// Whether a tool call completed.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum McpToolCallStatus {
    /// The tool ran (its own failure included: see `isError`).
    Complete,
    /// The server needs input from the user before the tool can run or go on.
    InputRequired,
}

/// How a server asks for input.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum McpInputMode {
    /// A form: show `message` and fields per `requestedSchema`; answer with its content.
    Form,
    /// A web page: show the full `url` and let the user choose to open it; `ACCEPT` means
    /// they agreed to. The server learns the outcome when the call continues.
    Url,
}

/// One thing a server asks the user for during a tool call.
#[derive(SimpleObject)]
pub struct McpInputRequest {
    /// The key to answer under.
    pub key: String,
    pub mode: McpInputMode,
    /// What the server says to the user, as sent.
    pub message: String,
    /// JSON Schema of the form (`FORM`): an object of flat properties of type string, number,
    /// integer, boolean, or an array of choices.
    pub requested_schema: Option<Json<serde_json::Value>>,
    /// The page to open (`URL`).
    pub url: Option<String>,
}

/// The user's answer to one input request.
#[derive(InputObject)]
pub struct McpInputResponseInput {
    /// The request's key.
    pub key: String,
    pub action: McpInputAction,
    /// The form's content, only with `ACCEPT` on a `FORM` request.
    pub content: Option<Json<serde_json::Value>>,
}

impl From<CallOutcome> for McpToolResult {
    fn from(outcome: CallOutcome) -> Self {
        match outcome {
            CallOutcome::Complete(outcome) => McpToolResult {
                status: McpToolCallStatus::Complete,
                content: outcome.content.into_iter().map(Json).collect(),
                structured_content: outcome.structured_content.map(Json),
                is_error: outcome.is_error,
                input_requests: Vec::new(),
                continuation: None,
                continuation_expires_at: None,
                unanswered_input: outcome
                    .unanswered
                    .into_iter()
                    .map(|asked| match asked {
                        UnansweredInput::Form { message } => McpUnansweredInput {
                            mode: McpInputMode::Form,
                            message,
                            url: None,
                        },
                        UnansweredInput::Url { message, url } => McpUnansweredInput {
                            mode: McpInputMode::Url,
                            message,
                            url,
                        },
                    })
                    .collect(),
            },
            CallOutcome::InputRequired(pending) => McpToolResult {
                status: McpToolCallStatus::InputRequired,
                content: Vec::new(),
                structured_content: None,
                is_error: false,
                input_requests: pending
                    .asks
                    .into_iter()
                    .map(|ask| match ask {
                        Ask::Form {
                            key,
                            message,
                            schema,
                        } => McpInputRequest {
                            key,
                            mode: McpInputMode::Form,
                            message,
                            requested_schema: Some(Json(schema)),
                            url: None,
                        },
                        Ask::Url { key, message, url } => McpInputRequest {
                            key,
                            mode: McpInputMode::Url,
                            message,
                            requested_schema: None,
                            url: Some(url),
                        },
                    })
                    .collect(),
                continuation: Some(pending.continuation),
                continuation_expires_at: Some(pending.expires_at),
                unanswered_input: Vec::new(),
            },
        }
    }
}

/// Input of `createServiceAccount`.
#[derive(InputObject)]
pub struct CreateServiceAccountInput {
    /// Display name (unique among users, whatever the case).
    pub name: String,
    /// The workspace it acts in (its admins and instance operators create it); absent for an
    /// instance-wide account (instance operators only).
    pub workspace_id: Option<ID>,
    /// Its role in its workspace: the highest role it may grant there. Default VIEWER;
    /// ignored for instance-wide accounts.
    pub role: Option<WorkspaceRole>,
}

/// Input of `createUser`.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// Display name (unique among users, whatever the case).
    pub name: String,
    /// An identity provider's issuer; with `subject`, a later token of that subject signs in
    /// as this user.
    pub issuer: Option<String>,
    /// The user's subject at `issuer`.
    pub subject: Option<String>,
}

/// Input of `createOnboardedWorkspace`.
#[derive(InputObject)]
pub struct CreateOnboardedWorkspaceInput {
    /// Display name.
    pub name: String,
    /// Its first admin (a person); absent for none, the workspace then being managed through
    /// onboarding.
    pub admin_user_id: Option<ID>,
}

/// Result of `createApiToken`.
#[derive(SimpleObject)]
pub struct CreateApiTokenPayload {
    /// The token: shown this once, store it now.
    pub token: String,
    /// The stored token.
    pub api_token: ApiToken,
}

fn patch<T>(value: MaybeUndefined<T>) -> Patch<T> {
    match value {
        MaybeUndefined::Undefined => Patch::Unchanged,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(v) => Patch::Set(v),
    }
}

/// `""` clears a nullable text field, like `null`.
fn text_patch(value: MaybeUndefined<String>) -> Patch<String> {
    match patch(value) {
        Patch::Set(text) if text.trim().is_empty() => Patch::Clear,
        other => other,
    }
}

fn headers(list: Vec<HeaderInput>) -> Vec<DomainHeader> {
    list.into_iter()
        .map(|h| DomainHeader {
            name: h.name,
            value: Secret::new(h.value),
        })
        .collect()
}

/// Mutations.
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Create a workspace; the caller becomes its admin. Refused to service accounts
    /// (`FORBIDDEN`): they use `createOnboardedWorkspace`.
    async fn create_workspace(&self, ctx: &Context<'_>, name: String) -> Result<Workspace> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let row = workspaces::create(app, principal, &name).await?;
        Ok(Workspace::read(row, Role::Admin))
    }

    /// Add a user to a workspace or change their role (admin). The last admin of a workspace
    /// cannot be demoted (`CONFLICT`). The user's open WebSocket connections stay open; every
    /// operation they start afterwards runs with the new role.
    async fn add_workspace_member(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
        role: WorkspaceRole,
    ) -> Result<WorkspaceMember> {
        let principal = principal(ctx)?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let user = parse_id("userId", &user_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let member = workspaces::add_member(app, principal, workspace, user, role.into()).await?;
        Ok(WorkspaceMember {
            user_id: ID(member.user_id.0.to_string()),
            workspace_id: ID(member.workspace_id.0.to_string()),
            role,
        })
    }

    /// Remove a user from a workspace (admin). Returns the user's id. The last admin of a
    /// workspace cannot be removed (`CONFLICT`). The user's open WebSocket connections close
    /// with 4403, on every replica.
    async fn remove_workspace_member(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
    ) -> Result<ID> {
        let principal = principal(ctx)?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let user = parse_id("userId", &user_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        workspaces::remove_member(app, principal, workspace, user).await?;
        Ok(ID(user.to_string()))
    }

    /// Create a service account: scoped to a workspace (its admins and instance operators) or
    /// instance-wide (instance operators). Service accounts cannot create service accounts.
    async fn create_service_account(
        &self,
        ctx: &Context<'_>,
        input: CreateServiceAccountInput,
    ) -> Result<ServiceAccount> {
        let principal = principal(ctx)?;
        let workspace = input
            .workspace_id
            .as_ref()
            .map(|id| parse_id("workspaceId", id))
            .transpose()?;
        let role = input.role.map_or(Role::Viewer, Into::into);
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::create_service_account(app, principal, &input.name, workspace, role)
            .await
            .map_err(ApiError::from)
            .map(ServiceAccount)
    }

    /// Delete a service account: its tokens are revoked (its WebSocket connections close with
    /// 4403) and its membership ends. Returns its id.
    async fn delete_service_account(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let principal = principal(ctx)?;
        let account = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::delete_service_account(app, principal, account).await?;
        Ok(id)
    }

    /// Create an API token for a service account. The token is returned this once.
    async fn create_service_account_token(
        &self,
        ctx: &Context<'_>,
        service_account_id: ID,
        name: String,
    ) -> Result<CreateApiTokenPayload> {
        let principal = principal(ctx)?;
        let account = parse_id("serviceAccountId", &service_account_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let created =
            onboarding::create_service_account_token(app, principal, account, &name).await?;
        Ok(CreateApiTokenPayload {
            token: created.token.into_inner(),
            api_token: ApiToken(created.row),
        })
    }

    /// Revoke a service account's API token. WebSocket connections opened with it close with
    /// 4403, on every replica.
    async fn revoke_service_account_token(
        &self,
        ctx: &Context<'_>,
        service_account_id: ID,
        id: ID,
    ) -> Result<ApiToken> {
        let principal = principal(ctx)?;
        let account = parse_id("serviceAccountId", &service_account_id)?;
        let token = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::revoke_service_account_token(app, principal, account, token)
            .await
            .map_err(ApiError::from)
            .map(ApiToken)
    }

    /// Onboarding: create a person (service accounts and instance operators).
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<User> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::create_user(
            app,
            principal,
            &input.name,
            input.issuer.as_deref(),
            input.subject.as_deref(),
        )
        .await
        .map_err(ApiError::from)
        .map(User)
    }

    /// Onboarding: create a workspace with a person as its first admin, or with no member
    /// (instance-wide service accounts and instance operators).
    async fn create_onboarded_workspace(
        &self,
        ctx: &Context<'_>,
        input: CreateOnboardedWorkspaceInput,
    ) -> Result<OnboardedWorkspace> {
        let principal = principal(ctx)?;
        let admin = input
            .admin_user_id
            .as_ref()
            .map(|id| parse_id("adminUserId", id))
            .transpose()?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::create_workspace(app, principal, &input.name, admin)
            .await
            .map_err(ApiError::from)
            .map(OnboardedWorkspace)
    }

    /// Onboarding: add a person to a workspace or change their role, within the caller's
    /// scope and never above its own role there. The last admin cannot be demoted
    /// (`CONFLICT`).
    async fn set_workspace_membership(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
        role: WorkspaceRole,
    ) -> Result<WorkspaceMember> {
        let principal = principal(ctx)?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let user = parse_id("userId", &user_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let member =
            onboarding::set_membership(app, principal, workspace, user, role.into()).await?;
        Ok(WorkspaceMember {
            user_id: ID(member.user_id.0.to_string()),
            workspace_id: ID(member.workspace_id.0.to_string()),
            role,
        })
    }

    /// Onboarding: remove a person from a workspace within the caller's scope, as
    /// `removeWorkspaceMember` does (their WebSocket connections close with 4403, their grants
    /// are revoked). Returns the user's id.
    async fn remove_workspace_membership(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
    ) -> Result<ID> {
        let principal = principal(ctx)?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let user = parse_id("userId", &user_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::remove_membership(app, principal, workspace, user).await?;
        Ok(user_id)
    }

    /// Onboarding: create an API token for a person within the caller's scope (never for a
    /// service account or an instance operator). The token is returned this once.
    async fn create_user_api_token(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        name: String,
    ) -> Result<CreateApiTokenPayload> {
        let principal = principal(ctx)?;
        let user = parse_id("userId", &user_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let created = onboarding::create_user_token(app, principal, user, &name).await?;
        Ok(CreateApiTokenPayload {
            token: created.token.into_inner(),
            api_token: ApiToken(created.row),
        })
    }

    /// Onboarding: revoke a person's API token within the caller's scope. WebSocket
    /// connections opened with it close with 4403, on every replica.
    async fn revoke_user_api_token(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        id: ID,
    ) -> Result<ApiToken> {
        let principal = principal(ctx)?;
        let user = parse_id("userId", &user_id)?;
        let token = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        onboarding::revoke_person_token(app, principal, user, token)
            .await
            .map_err(ApiError::from)
            .map(ApiToken)
    }

    /// Create an API token for the caller. The token is returned this once.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<CreateApiTokenPayload> {
        let principal = principal(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let created = workspaces::create_token(app, principal, &name).await?;
        Ok(CreateApiTokenPayload {
            token: created.token.into_inner(),
            api_token: ApiToken(created.row),
        })
    }

    /// Revoke one of the caller's API tokens. WebSocket connections opened with it close with
    /// 4403, on every replica.
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> Result<ApiToken> {
        let principal = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        workspaces::revoke_token(app, principal, id)
            .await
            .map_err(ApiError::from)
            .map(ApiToken)
    }

    /// Register an MCP server (editor). `CONFLICT` with `extensions.quota` when the workspace
    /// already has as many servers as it may have.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn create_mcp_server(
        &self,
        ctx: &Context<'_>,
        input: CreateMcpServerInput,
    ) -> Result<CreateMcpServerPayload> {
        let (principal, outbound) = super::outbound(ctx)?;
        let workspace_id = parse_id("workspaceId", &input.workspace_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let created = Box::pin(servers::create(
            app,
            principal,
            outbound,
            workspace_id,
            NewServer {
                name: input.name,
                description: input.description,
                url: input.url,
                transport: input.transport.map(Into::into),
                enabled: input.enabled,
                timeout_ms: input.timeout_ms,
                retries: input.retries,
                auth_type: input.auth_type.map(Into::into),
                headers: input.headers.map(headers),
                oauth_client_id: input.oauth_client_id,
                oauth_client_secret: input.oauth_client_secret.map(Secret::new),
                oauth_lenient_pkce: input.oauth_lenient_pkce,
                credentials: input.credentials.map(Into::into),
                oauth_client_key: input.oauth_client_key.map(Secret::new),
            },
        ))
        .await?;
        Ok(CreateMcpServerPayload {
            server: McpServer::single(created.server),
            auth_type: created.auth_type.into(),
            detection: created.detection,
        })
    }

    /// Change an MCP server (editor). Absent fields are unchanged; `null` or `""` clears.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn update_mcp_server(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateMcpServerInput,
    ) -> Result<McpServer> {
        let (principal, outbound) = super::outbound(ctx)?;
        let id = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let changes = ServerChanges {
            name: patch(input.name),
            description: text_patch(input.description),
            url: patch(input.url),
            transport: patch(input.transport).map(Into::into),
            enabled: patch(input.enabled),
            timeout_ms: patch(input.timeout_ms),
            retries: patch(input.retries),
            auth_type: patch(input.auth_type).map(Into::into),
            headers: match patch(input.headers) {
                Patch::Set(list) if list.is_empty() => Patch::Clear,
                other => other.map(headers),
            },
            oauth_client_id: text_patch(input.oauth_client_id),
            oauth_client_secret: match patch(input.oauth_client_secret) {
                Patch::Set(secret) if secret.is_empty() => Patch::Clear,
                other => other.map(Secret::new),
            },
            oauth_lenient_pkce: patch(input.oauth_lenient_pkce),
            credentials: patch(input.credentials).map(Into::into),
            oauth_client_key: match patch(input.oauth_client_key) {
                Patch::Set(key) if key.trim().is_empty() => Patch::Clear,
                other => other.map(Secret::new),
            },
        };
        Box::pin(servers::update(app, principal, outbound, id, changes))
            .await
            .map_err(ApiError::from)
            .map(McpServer::single)
    }

    /// Start the OAuth flow for a server (editor). Open `authorizationUrl` in a popup; the
    /// callback page reports back with `postMessage` and the status subscription.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn start_mcp_oauth(
        &self,
        ctx: &Context<'_>,
        server_id: ID,
    ) -> Result<StartMcpOauthPayload> {
        let (principal, outbound) = super::outbound(ctx)?;
        let server_id = parse_id("serverId", &server_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        Ok(
            match Box::pin(flow::start(app, principal, outbound, server_id, None)).await? {
                flow::Started::Redirect {
                    authorization_url,
                    expires_at,
                    ..
                } => StartMcpOauthPayload {
                    status: McpOauthStartStatus::Redirect,
                    authorization_url: Some(authorization_url),
                    expires_at: Some(expires_at),
                },
                flow::Started::AlreadyAuthorized => StartMcpOauthPayload {
                    status: McpOauthStartStatus::AlreadyAuthorized,
                    authorization_url: None,
                    expires_at: None,
                },
            },
        )
    }

    /// Complete a flow from an app that hosts its own callback page. Only the user who
    /// started the flow can complete it.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn complete_mcp_oauth(
        &self,
        ctx: &Context<'_>,
        state: String,
        code: String,
        iss: Option<String>,
    ) -> Result<McpServer> {
        let (principal, outbound) = super::outbound(ctx)?;
        outbound.complete_own_flow();
        let app = ctx.data_unchecked::<AppHandle>();
        let params = flow::CallbackParams {
            code: Some(code),
            state: Some(state),
            iss,
            error: None,
        };
        match Box::pin(flow::complete(app, params, flow::Binding::User(principal))).await {
            Ok(row) => Ok(McpServer::single(row)),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Revoke and remove OAuth grants of a server. Without arguments: the shared grant
    /// (editor), or on a `PER_USER` server the caller's own (any member). `userId`: that
    /// member's own grant on a `PER_USER` server (admin). `all: true`: every grant of the
    /// server (admin on a `PER_USER` server, editor otherwise).
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn disconnect_mcp_oauth(
        &self,
        ctx: &Context<'_>,
        server_id: ID,
        user_id: Option<ID>,
        all: Option<bool>,
    ) -> Result<McpServer> {
        let (principal, outbound) = super::outbound(ctx)?;
        let server_id = parse_id("serverId", &server_id)?;
        let which = match (user_id, all.unwrap_or(false)) {
            (Some(_), true) => {
                return Err(ApiError::from(crate::domain::bad_input(
                    "all",
                    "give either userId or all, not both",
                )));
            }
            (Some(user), false) => flow::Disconnect::User(parse_id("userId", &user)?),
            (None, true) => flow::Disconnect::All,
            (None, false) => flow::Disconnect::Mine,
        };
        let app = ctx.data_unchecked::<AppHandle>();
        Box::pin(flow::disconnect(app, principal, outbound, server_id, which))
            .await
            .map_err(ApiError::from)
            .map(McpServer::single)
    }

    /// Reconnect to a server, list its tools and store them (editor). A listing over the
    /// tools or bytes quota is `UPSTREAM_ERROR` with `extensions.quota`, stores nothing and is
    /// shown in the server's `statusReason` and `lastError`.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn refresh_mcp_server(&self, ctx: &Context<'_>, id: ID) -> Result<McpServer> {
        let (_, outbound) = super::outbound(ctx)?;
        let id = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        Box::pin(calls::refresh_server(app, outbound, id))
            .await
            .map_err(ApiError::from)
            .map(McpServer::single)
    }

    /// Ask a server again how it authenticates (editor) and store the answer. A new auth type
    /// starts the server over (its grant is revoked and removed); an answer that cannot tell
    /// leaves a known auth type as it is. `SERVER_DISABLED` for a disabled server.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn detect_mcp_server_auth(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<DetectMcpServerAuthPayload> {
        let (principal, outbound) = super::outbound(ctx)?;
        let id = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let detected = Box::pin(servers::detect(app, principal, outbound, id)).await?;
        Ok(DetectMcpServerAuthPayload {
            server: McpServer::single(detected.server),
            detection: detected.detection,
        })
    }

    /// Call a tool of a server (viewer). `arguments` must be a JSON object.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn call_mcp_tool(
        &self,
        ctx: &Context<'_>,
        server_id: ID,
        name: String,
        arguments: Option<Json<serde_json::Value>>,
    ) -> Result<McpToolResult> {
        let (_, outbound) = super::outbound(ctx)?;
        let server_id = parse_id("serverId", &server_id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        // Boxed: a call's future is large, and the executor moves each field's future.
        let call = calls::call_tool(app, outbound, server_id, &name, arguments.map(|a| a.0));
        let outcome = Box::pin(call).await?;
        Ok(outcome.into())
    }

    /// Continue a tool call that came back `INPUT_REQUIRED`, with an answer to every input
    /// request (viewer; only the caller the continuation was issued to, before it expires).
    /// The server gets the call again with the answers, and may ask again.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn continue_mcp_tool_call(
        &self,
        ctx: &Context<'_>,
        continuation: String,
        #[graphql(validator(max_items = 16))] responses: Vec<McpInputResponseInput>,
    ) -> Result<McpToolResult> {
        let (_, outbound) = super::outbound(ctx)?;
        let app = ctx.data_unchecked::<AppHandle>();
        let answers = responses
            .into_iter()
            .map(|response| Answer {
                key: response.key,
                action: response.action.into(),
                content: response.content.map(|content| content.0),
            })
            .collect();
        let outcome = Box::pin(calls::continue_call(app, outbound, &continuation, answers)).await?;
        Ok(outcome.into())
    }

    /// Delete an MCP server (admin). Returns its id.
    /// Outbound: counts against the request's budget and the rate limits.
    #[graphql(complexity = "super::OUTBOUND_COMPLEXITY + child_complexity")]
    async fn delete_mcp_server(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let (principal, outbound) = super::outbound(ctx)?;
        let id = parse_id("id", &id)?;
        let app = ctx.data_unchecked::<AppHandle>();
        Box::pin(servers::delete(app, principal, outbound, id))
            .await
            .map_err(ApiError::from)
            .map(|id| ID(id.to_string()))
    }
}
