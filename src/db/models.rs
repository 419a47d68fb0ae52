//! Row types: exactly what a table holds. Sealed columns hold ciphertext only.

use diesel::prelude::*;

use super::schema::*;
use super::types::{
    AuthStatus, AuthType, ConnectionStatus, CredentialMode, DbTime, DbUuid, RegistrationKind, Role,
    StatusReason, Transport, UserKind,
};

/// A workspace.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = workspaces, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct WorkspaceRow {
    /// Id.
    pub id: DbUuid,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: DbTime,
}

/// A user.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct UserRow {
    /// Id.
    pub id: DbUuid,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: DbTime,
    /// A person or a service account.
    pub kind: UserKind,
    /// Holds the instance-wide privilege: onboarding (users, workspaces, memberships, tokens)
    /// in every workspace.
    pub operator: bool,
    /// The one workspace a service account acts in; null for instance-wide service accounts
    /// and for people.
    pub scope_workspace_id: Option<DbUuid>,
    /// When a service account was deleted (its tokens are revoked; the row stays for the
    /// audit trail).
    pub deleted_at: Option<DbTime>,
}

impl UserRow {
    /// A person, as the command line, first start and the API create them.
    pub fn human(name: String) -> UserRow {
        UserRow {
            id: DbUuid(uuid::Uuid::now_v7()),
            name,
            created_at: DbTime(crate::db::now()),
            kind: UserKind::Human,
            operator: false,
            scope_workspace_id: None,
            deleted_at: None,
        }
    }
}

/// A user signed in from an identity provider, as first inserted: the issuer and subject
/// name them for good (unique together).
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ProvisionedUserRow {
    /// Id.
    pub id: DbUuid,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: DbTime,
    /// The provider's issuer.
    pub issuer: Option<String>,
    /// The subject at that issuer.
    pub subject: Option<String>,
}

/// A user's role in a workspace.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = workspace_members, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MemberRow {
    /// Workspace.
    pub workspace_id: DbUuid,
    /// Member.
    pub user_id: DbUuid,
    /// `viewer`, `editor` or `admin`.
    pub role: Role,
    /// When the membership was created.
    pub created_at: DbTime,
}

/// An API token; only the SHA-256 of the token is stored.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = api_tokens, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ApiTokenRow {
    /// Id.
    pub id: DbUuid,
    /// Owner.
    pub user_id: DbUuid,
    /// Label chosen by the owner.
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub token_hash: String,
    /// The first characters of the token, for recognising it in lists.
    pub prefix: String,
    /// Creation time.
    pub created_at: DbTime,
    /// Last successful authentication (updated at most once a minute).
    pub last_used_at: Option<DbTime>,
    /// Set when revoked; a revoked token never authenticates again.
    pub revoked_at: Option<DbTime>,
}

/// A registered MCP server.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq)]
#[diesel(table_name = mcp_servers, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_null = true)]
pub struct McpServerRow {
    /// Id.
    pub id: DbUuid,
    /// Owning workspace.
    pub workspace_id: DbUuid,
    /// Creator, if still a user.
    pub created_by: Option<DbUuid>,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The MCP endpoint as entered.
    pub url: String,
    /// The URL in the form used for the per-workspace uniqueness check.
    pub normalized_url: String,
    /// `streamable_http` or `sse`.
    pub transport: Transport,
    /// Disabled servers are neither checked nor called.
    pub enabled: bool,
    /// Per-request timeout.
    pub timeout_ms: i32,
    /// Retries of failed connection attempts.
    pub retries: i32,
    /// `none`, `headers` or `oauth`.
    pub auth_type: AuthType,
    /// JSON array of the static header names (names are not secret).
    pub header_names: String,
    /// Sealed JSON object of the static headers, names and values.
    pub headers_sealed: Option<String>,
    /// Pre-registered OAuth client id.
    pub oauth_client_id: Option<String>,
    /// Sealed pre-registered OAuth client secret.
    pub oauth_client_secret_sealed: Option<String>,
    /// `connected`, `disconnected` or `error`.
    pub connection_status: ConnectionStatus,
    /// `not_required`, `authorized`, `authorization_required`, … (see the domain).
    pub auth_status: AuthStatus,
    /// Machine-readable reason of the last status change.
    pub status_reason: Option<StatusReason>,
    /// Safe, human-readable text of the last failure.
    pub last_error: Option<String>,
    /// Last successful connection.
    pub last_connected_at: Option<DbTime>,
    /// Failed checks in a row.
    pub consecutive_failures: i32,
    /// Number of tools in the stored catalogue.
    pub tool_count: i32,
    /// When the catalogue was last listed.
    pub tools_refreshed_at: Option<DbTime>,
    /// Creation time.
    pub created_at: DbTime,
    /// Last change.
    pub updated_at: DbTime,
    /// Accept an authorization server that omits `code_challenge_methods_supported`.
    pub oauth_lenient_pkce: bool,
    /// When a replica last claimed the server for a health check.
    pub health_checked_at: Option<DbTime>,
    /// The authorization server (issuer) the pre-registered client was first used with; the
    /// client is never sent to another one.
    pub oauth_client_issuer: Option<String>,
    /// Whose credentials reach it: the workspace's shared grant or each member's own.
    pub credential_mode: CredentialMode,
    /// A machine client's private key (PEM) for `private_key_jwt`, sealed.
    pub oauth_client_key_sealed: Option<String>,
    /// On a per-user server, the member whose listing is the server's catalogue.
    pub tools_listed_by: Option<DbUuid>,
    /// The MCP protocol revision last negotiated with the server.
    pub protocol_version: Option<String>,
    /// Until when the server said its catalogue stays fresh (its listing's `ttlMs`).
    pub tools_fresh_until: Option<DbTime>,
}

/// What the API shows of a grant: none of its sealed values or discovered metadata, which
/// are most of a grant row's bytes and never leave the server.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = mcp_oauth_grants, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct GrantSummary {
    /// Id.
    pub id: DbUuid,
    /// The server this grant belongs to.
    pub server_id: DbUuid,
    /// The user holding it; `None` for the workspace's shared grant.
    pub user_id: Option<DbUuid>,
    /// Authorization server issuer.
    pub issuer: Option<String>,
    /// How the client that obtained it was registered.
    pub registration_kind: Option<RegistrationKind>,
    /// Whether tokens are stored.
    #[diesel(select_expression = mcp_oauth_grants::tokens_sealed.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<mcp_oauth_grants::tokens_sealed>)]
    pub has_tokens: bool,
    /// Absolute access-token expiry.
    pub access_expires_at: Option<DbTime>,
    /// Space-separated scopes granted.
    pub granted_scopes: Option<String>,
    /// Last token save.
    pub last_refreshed_at: Option<DbTime>,
    /// Who completed the last authorization.
    pub authorized_by: Option<DbUuid>,
    /// When it was first stored.
    pub created_at: DbTime,
}

/// An OAuth grant: what a completed authorization produced, held by the workspace (shared) or
/// by one user. Pending flows live in [`FlowRow`] and replace a grant only when they succeed;
/// the client registration it was obtained with lives in [`RegistrationRow`].
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = mcp_oauth_grants, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_null = true)]
pub struct OauthGrantRow {
    /// Id.
    pub id: DbUuid,
    /// The server this grant belongs to.
    pub server_id: DbUuid,
    /// The user holding it; `None` for the workspace's shared grant.
    pub user_id: Option<DbUuid>,
    /// Authorization server issuer that issued the tokens.
    pub issuer: Option<String>,
    /// The protected resource sent as `resource`.
    pub resource: Option<String>,
    /// How the client that obtained it was registered.
    pub registration_kind: Option<RegistrationKind>,
    /// Sealed token set.
    pub tokens_sealed: Option<String>,
    /// Absolute access-token expiry.
    pub access_expires_at: Option<DbTime>,
    /// Space-separated scopes granted.
    pub granted_scopes: Option<String>,
    /// Bumped on every token save; compare-and-swap guard.
    pub token_generation: i64,
    /// Last token save.
    pub last_refreshed_at: Option<DbTime>,
    /// Who completed the last authorization.
    pub authorized_by: Option<DbUuid>,
    /// Scopes to ask for when authorizing again (what was asked, plus step-up scopes).
    pub requested_scopes: Option<String>,
    /// JSON of the issuing authorization server's endpoints, as discovered.
    pub authorization_server: Option<String>,
    /// Who holds the refresh lease (a random id per refresh attempt).
    pub refresh_lease_owner: Option<String>,
    /// When the refresh lease lapses.
    pub refresh_lease_until: Option<DbTime>,
    /// Creation time.
    pub created_at: DbTime,
    /// Last change.
    pub updated_at: DbTime,
}

impl OauthGrantRow {
    /// A grant with nothing in it yet, for `server_id` held by `user_id` (`None`: the
    /// workspace). A new grant gets a fresh id.
    pub fn empty(server_id: DbUuid, user_id: Option<DbUuid>, now: DbTime) -> Self {
        OauthGrantRow {
            id: DbUuid(uuid::Uuid::now_v7()),
            server_id,
            user_id,
            issuer: None,
            resource: None,
            registration_kind: None,
            tokens_sealed: None,
            access_expires_at: None,
            granted_scopes: None,
            token_generation: 0,
            last_refreshed_at: None,
            authorized_by: None,
            requested_scopes: None,
            authorization_server: None,
            refresh_lease_owner: None,
            refresh_lease_until: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A client registration with one authorization server, for one server. Every grant of the
/// server with that issuer is obtained and refreshed with it; it is never used with another
/// issuer.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = mcp_oauth_registrations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_null = true)]
pub struct RegistrationRow {
    /// Id.
    pub id: DbUuid,
    /// The server it was made for.
    pub server_id: DbUuid,
    /// The authorization server it is bound to.
    pub issuer: String,
    /// How the client was registered.
    pub kind: RegistrationKind,
    /// Sealed client information (id, secret, redirect URI) for dynamic and metadata-document
    /// clients; a pre-registered client's secret stays on the server row.
    pub client_information_sealed: Option<String>,
    /// How the client authenticates at the token endpoint, when known.
    pub token_endpoint_auth_method: Option<String>,
    /// Creation time.
    pub created_at: DbTime,
    /// Last change.
    pub updated_at: DbTime,
}

/// A pending authorization: everything the callback needs to finish it, and the discovered
/// metadata and registration that become the grant's only when the code exchange succeeds.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = mcp_oauth_flows, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct FlowRow {
    /// Id.
    pub id: DbUuid,
    /// The server being authorized.
    pub server_id: DbUuid,
    /// Who started it.
    pub user_id: DbUuid,
    /// SHA-256 of the `state` sent to the authorization server.
    pub state_hash: String,
    /// SHA-256 of the begin link's id.
    pub begin_hash: String,
    /// SHA-256 of the browser binding cookie, once the begin link was followed.
    pub browser_binding_hash: Option<String>,
    /// Sealed PKCE verifier.
    pub code_verifier_sealed: String,
    /// Sealed authorization URL (it carries the state).
    pub authorization_url_sealed: String,
    /// Redirect URI sent with the authorization request.
    pub redirect_uri: String,
    /// The protected resource sent as `resource`.
    pub resource: String,
    /// Issuer the authorization response must report (RFC 9207), when there is a declared one.
    pub expected_issuer: Option<String>,
    /// Scopes requested.
    pub requested_scopes: Option<String>,
    /// JSON of the authorization server's endpoints, as discovered for this flow.
    pub authorization_server: String,
    /// `pre_registered`, `metadata_document` or `dynamic`.
    pub registration_kind: RegistrationKind,
    /// Sealed client registration used by this flow (none for a pre-registered client).
    pub client_information_sealed: Option<String>,
    /// Start time.
    pub created_at: DbTime,
    /// After this the flow can neither begin nor complete.
    pub expires_at: DbTime,
}

/// One tool of a server's stored catalogue.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = mcp_tools, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ToolRow {
    /// Server.
    pub server_id: DbUuid,
    /// Tool name (unique per server).
    pub name: String,
    /// Display title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// JSON Schema of the arguments, as JSON text.
    pub input_schema: String,
    /// JSON Schema of the structured result, as JSON text, when the tool declares one.
    pub output_schema: Option<String>,
    /// Tool annotations, as JSON text.
    pub annotations: Option<String>,
    /// When listed.
    pub updated_at: DbTime,
}

/// One tool of a member's own catalogue of a per-user server (kept only where it differs from
/// the server's).
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = mcp_user_tools, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct UserToolRow {
    /// Server.
    pub server_id: DbUuid,
    /// The member.
    pub user_id: DbUuid,
    /// Tool name (unique per server and member).
    pub name: String,
    /// Display title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// JSON Schema of the arguments, as JSON text.
    pub input_schema: String,
    /// JSON Schema of the structured result, as JSON text, when the tool declares one.
    pub output_schema: Option<String>,
    /// Tool annotations, as JSON text.
    pub annotations: Option<String>,
    /// When listed.
    pub updated_at: DbTime,
}

/// One audit event.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AuditEventRow {
    /// Id (time-ordered).
    pub id: DbUuid,
    /// Workspace; none for events of the instance itself.
    pub workspace_id: Option<DbUuid>,
    /// Who did it, if still a user.
    pub actor_user_id: Option<DbUuid>,
    /// What happened, e.g. `mcp_server.create`.
    pub action: String,
    /// The object acted on.
    pub target_id: Option<DbUuid>,
    /// JSON details; never secrets.
    pub details: String,
    /// When.
    pub at: DbTime,
}
