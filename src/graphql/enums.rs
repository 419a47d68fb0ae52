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

/// Whose OAuth credentials reach a server.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::db::types::CredentialMode")]
pub enum McpCredentialMode {
    /// One grant for the whole workspace: whoever authorized, every member's calls act as that
    /// account upstream.
    Shared,
    /// Each member connects their own account, and their calls act as them. A member who has
    /// not connected gets `REAUTH_REQUIRED`.
    PerUser,
    /// No user: the workspace's machine client (its id with a secret or a private key) gets
    /// tokens with the client-credentials grant, and renews them before they expire.
    ClientCredentials,
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
    /// The machine client entered with the server (client-credentials grant).
    ClientCredentials,
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
    /// The server said its tools changed, and they were listed again.
    ToolsChanged,
    /// The server was deleted.
    Deleted,
}

/// Why an OAuth flow could not begin or complete; the callback page shows the same words. No
/// field returns it: it names the `extensions.reason` of a failed `completeMcpOauth` and the
/// `reason` the callback page posts to its opener (both in lower case there), and the page's
/// `message` carries the description.
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

#[cfg(test)]
mod tests {
    use async_graphql::Schema;
    use serde_json::Value;

    use crate::db::types::StatusReason;
    use crate::domain::oauth::flow::FlowFailureReason;
    use crate::graphql::mutation::MutationRoot;
    use crate::graphql::query::QueryRoot;
    use crate::graphql::subscription::SubscriptionRoot;

    /// The schema's values of an enum, with their descriptions.
    async fn values(name: &str) -> Vec<(String, String)> {
        let schema = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
            .register_output_type::<super::McpOauthFailureReason>()
            .finish();
        let query =
            format!("{{ __type(name: \"{name}\") {{ enumValues {{ name description }} }} }}");
        let response = schema.execute(query).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let data: Value = response.data.into_json().unwrap_or_default();
        data["__type"]["enumValues"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or_default().to_owned(),
                    v["description"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The failure reasons are in the schema (registered, since no field returns them) with
    /// the callback page's words.
    #[test]
    fn the_api_describes_flow_failures_in_the_callback_pages_words() {
        let sdl = crate::graphql::sdl();
        let start = sdl.find("enum McpOauthFailureReason {").unwrap_or(0);
        let block = &sdl[start..];
        let block = &block[..block.find('}').unwrap_or(0)];
        assert_eq!(
            block.matches("\"\"\"").count(),
            2 * FlowFailureReason::ALL.len(),
            "{block}"
        );
        for reason in FlowFailureReason::ALL {
            let name = reason.code().to_uppercase();
            let described = format!("\t\"\"\"\n\t{}\n\t\"\"\"\n\t{name}\n", reason.explain());
            assert!(block.contains(&described), "{name}: {block}");
        }
    }

    #[tokio::test]
    async fn every_stored_status_reason_is_an_api_value_with_a_description() {
        let values = values("McpStatusReason").await;
        assert_eq!(values.len(), StatusReason::ALL.len());
        for reason in StatusReason::ALL {
            let name = reason.as_str().to_uppercase();
            let found = values.iter().find(|(n, _)| *n == name);
            assert!(
                found.is_some_and(|(_, d)| !d.is_empty()),
                "{name}: {values:?}"
            );
        }
    }
}

/// How the user answered an input request.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::mcp::input::Action")]
pub enum McpInputAction {
    /// Gave the input, or agreed to open the URL.
    Accept,
    /// Refused.
    Decline,
    /// Dismissed it without choosing.
    Cancel,
}
