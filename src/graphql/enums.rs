//! The API's enums. Each mirrors one domain enum through async-graphql's `remote` attribute,
//! which writes the conversions both ways, so a value added to the domain without a
//! counterpart here does not compile. The doc comments are the schema's descriptions: the
//! console shows them, so they speak to the people who read a dashboard.

use async_graphql::Enum;

/// A role in a workspace.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::Role")]
pub enum WorkspaceRole {
    /// Reads and calls tools.
    Viewer,
    /// Also creates and updates servers and starts OAuth.
    Editor,
    /// Also deletes servers and manages members.
    Admin,
}

/// How Switchboard authenticates to an MCP server.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::AuthType")]
pub enum McpAuthType {
    /// No authentication.
    None,
    /// Static headers.
    Headers,
    /// OAuth 2.1 with PKCE.
    Oauth,
    /// Not known yet: the server could not be asked. Detection runs again on refresh, when the
    /// URL changes, and with `detectMcpServerAuth`. Cannot be set.
    Undetected,
}

/// MCP transport.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::Transport")]
pub enum McpTransport {
    /// Streamable HTTP.
    StreamableHttp,
    /// The older HTTP+SSE transport.
    Sse,
}

/// Whether Switchboard can currently talk to the server.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::ConnectionStatus")]
pub enum McpConnectionStatus {
    /// Last contact succeeded.
    Connected,
    /// Not connected yet, or reset by a change.
    Disconnected,
    /// Repeated failures.
    Error,
}

/// Where the server's credentials stand.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::AuthStatus")]
pub enum McpAuthStatus {
    /// No OAuth needed.
    NotRequired,
    /// A usable grant is stored.
    Authorized,
    /// Someone must run the OAuth flow.
    AuthorizationRequired,
    /// A flow is in progress and no usable grant is stored.
    Authorizing,
    /// The last refresh failed (not a rejected grant); the tokens were kept.
    RefreshFailed,
    /// The server asked for more scopes than granted.
    InsufficientScope,
    /// The server rejected the configured static headers: correct them.
    HeadersRejected,
}

/// How the OAuth client of a grant was registered.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::RegistrationKind")]
pub enum McpOauthRegistration {
    /// The server's pre-registered client id.
    PreRegistered,
    /// A Client ID Metadata Document.
    MetadataDocument,
    /// Dynamic Client Registration.
    Dynamic,
}

/// Why a server's status last changed.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::StatusReason")]
pub enum McpStatusReason {
    /// The server was registered.
    Created,
    /// Its URL changed.
    UrlChanged,
    /// Its OAuth client credentials changed.
    CredentialsChanged,
    /// Its auth type changed.
    AuthTypeChanged,
    /// Its static headers changed.
    HeadersChanged,
    /// How it authenticates was detected.
    Detected,
    /// It could not be asked how it authenticates; detect again once it is reachable.
    DetectionFailed,
    /// It was enabled.
    Enabled,
    /// It was disabled.
    Disabled,
    /// A call or a listing succeeded.
    Connected,
    /// It could not be reached, or answered with an error.
    Unreachable,
    /// It rejected the configured static headers.
    HeadersRejected,
    /// It needs an OAuth authorization that is missing or no longer accepted.
    AuthorizationRequired,
    /// Someone started the OAuth flow.
    FlowStarted,
    /// An OAuth flow expired without completing.
    FlowExpired,
    /// The OAuth flow completed.
    Authorized,
    /// The access token was refreshed.
    TokenRefreshed,
    /// The authorization server rejected the refresh token.
    RefreshRejected,
    /// The authorization server rejected the client registration.
    ClientRejected,
    /// A token refresh failed; the tokens were kept.
    RefreshFailed,
    /// The stored tokens can no longer be read.
    TokensUnreadable,
    /// The server needs more scopes than were granted.
    InsufficientScope,
    /// The OAuth authorization was withdrawn.
    Disconnected,
    /// The authorization server refused the authorization.
    ProviderError,
    /// The server or the authorization server is not at a secure address.
    InsecureUrl,
    /// The authorization server did not issue tokens for the code.
    TokenExchangeFailed,
    /// The server lists more tools than one server may have.
    TooManyTools,
    /// The server's tool catalogue is larger than one server may have.
    CatalogueTooLarge,
    /// The server was deleted.
    Deleted,
}

/// Why an OAuth flow could not begin or complete; the callback page shows the same words.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::oauth::flow::FlowFailureReason")]
pub enum McpOauthFailureReason {
    /// The authorization server did not grant access.
    ProviderError,
    /// The authorization response was incomplete.
    MissingParams,
    /// This authorization link is unknown, already used, or expired. Start again.
    InvalidState,
    /// This authorization was started in another browser or session.
    BindingMismatch,
    /// The server was deleted while it was being authorized.
    ServerGone,
    /// The server or the authorization server is not at a secure address.
    InsecureUrl,
    /// The response did not come from the expected authorization server.
    IssuerMismatch,
    /// The authorization server did not issue tokens.
    TokenExchangeFailed,
    /// Something went wrong. Start again.
    Unknown,
}
