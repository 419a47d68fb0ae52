//! The one place domain errors become GraphQL errors.
//!
//! Every resolver returns [`Result`], whose error is an [`ApiError`]. An `ApiError` can only be
//! made from a domain [`Error`], a flow failure or a loader failure, each mapped here to a
//! stable `extensions.code`; it has no `Display` and no conversion from any other error, so a
//! `?` on an unmapped error does not compile, and no internal text can reach a client by
//! accident. Errors about the caller's own input keep their message. Anything unexpected
//! (storage, crypto) is logged here, once, with a correlation id, and answered `INTERNAL` with
//! that id in `extensions.errorId` and nothing else.

use async_graphql::{Context, ErrorExtensions, ID};
use uuid::Uuid;

use crate::domain::oauth::flow::{FlowFailure, FlowFailureReason};

use crate::domain::limits::{Limited, Quota};
use crate::domain::oauth::OauthError;
use crate::domain::status::StatusReason;
use crate::domain::{Error, access::Principal};
use crate::net::NetError;

/// The error of every resolver: a GraphQL error with its code, built only by this module.
///
/// A resolver cannot pass any other error through `?`, so nothing unmapped reaches a client:
///
/// ```compile_fail,E0277
/// use switchboard::graphql::error::Result;
///
/// fn resolver() -> Result<()> {
///     let stored: std::result::Result<(), switchboard::db::DbError> =
///         Err(switchboard::db::DbError::UniqueViolation);
///     stored?;
///     Ok(())
/// }
/// ```
///
/// while a domain error goes through its mapping:
///
/// ```
/// use switchboard::graphql::error::Result;
///
/// fn resolver() -> Result<()> {
///     let found: std::result::Result<(), switchboard::domain::Error> =
///         Err(switchboard::domain::Error::NotFound);
///     found?;
///     Ok(())
/// }
/// assert!(resolver().is_err());
/// ```
pub struct ApiError(async_graphql::Error);

/// What every resolver returns. Named `Result` so the schema macros see a fallible field.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError(api_error(error))
    }
}

impl From<FlowFailure> for ApiError {
    fn from(failure: FlowFailure) -> Self {
        ApiError(flow_failure(failure))
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        error.0
    }
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ApiError").field(&self.0.message).finish()
    }
}

impl ApiError {
    /// An unexpected failure: logged with a fresh correlation id, answered `INTERNAL` with it.
    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> ApiError {
        ApiError(internal_error(what, error))
    }
}

/// Log an unexpected failure under a fresh correlation id and answer `INTERNAL` with it.
fn internal_error(what: &str, error: &dyn std::fmt::Display) -> async_graphql::Error {
    let id = Uuid::new_v4().simple().to_string();
    tracing::error!(error_id = %id, %error, "{what}");
    async_graphql::Error::new(format!("internal error (id {id})")).extend_with(|_, e| {
        e.set("code", "INTERNAL");
        e.set("errorId", id.clone());
    })
}

/// A failed completion: the reason code of the callback page, as a GraphQL error.
fn flow_failure(failure: FlowFailure) -> async_graphql::Error {
    let code = match failure.reason {
        FlowFailureReason::InvalidState | FlowFailureReason::MissingParams => "BAD_USER_INPUT",
        FlowFailureReason::BindingMismatch => "FORBIDDEN",
        FlowFailureReason::ServerGone => "NOT_FOUND",
        FlowFailureReason::InsecureUrl => "UNSAFE_URL",
        FlowFailureReason::Unknown => "INTERNAL",
        FlowFailureReason::ProviderError
        | FlowFailureReason::IssuerMismatch
        | FlowFailureReason::TokenExchangeFailed => "UPSTREAM_ERROR",
    };
    let reason = failure.reason.code();
    async_graphql::Error::new(format!(
        "the authorization could not be completed: {reason}"
    ))
    .extend_with(|_, e| {
        e.set("code", code);
        e.set("reason", reason);
        if let Some(id) = failure.server_id {
            e.set("serverId", id.to_string());
        }
    })
}

/// Map a domain error to a GraphQL error.
fn api_error(error: Error) -> async_graphql::Error {
    match error {
        Error::Unauthenticated => coded(
            "authentication required: send a valid API token or identity-provider token",
            "UNAUTHENTICATED",
        ),
        Error::Forbidden(message) => coded(message, "FORBIDDEN"),
        Error::NotFound => coded("not found", "NOT_FOUND"),
        Error::BadInput { field, message } => {
            async_graphql::Error::new(format!("{field}: {message}")).extend_with(|_, e| {
                e.set("code", "BAD_USER_INPUT");
                e.set("field", field.clone());
            })
        }
        Error::UnsafeUrl { field, message } => {
            async_graphql::Error::new(format!("{field}: {message}")).extend_with(|_, e| {
                e.set("code", "UNSAFE_URL");
                e.set("field", field.clone());
            })
        }
        Error::Conflict {
            message,
            existing_id,
        } => async_graphql::Error::new(message).extend_with(|_, e| {
            e.set("code", "CONFLICT");
            if let Some(id) = existing_id {
                e.set("existingId", id.to_string());
            }
        }),
        Error::Db(error) => internal_error("storage failure while handling a request", &error),
        Error::Crypto(error) => internal_error("a secret could not be sealed or opened", &error),
        Error::ReauthRequired { server_id } => reauth(server_id),
        Error::HeadersRejected { server_id } => async_graphql::Error::new(
            "the MCP server rejected the configured headers: correct them and try again",
        )
        .extend_with(|_, e| {
            e.set("code", "UPSTREAM_ERROR");
            e.set("reason", StatusReason::HeadersRejected.as_str());
            e.set("serverId", server_id.to_string());
        }),
        Error::ServerDisabled { server_id } => {
            async_graphql::Error::new("the server is disabled: enable it before using it")
                .extend_with(|_, e| {
                    e.set("code", "SERVER_DISABLED");
                    e.set("serverId", server_id.to_string());
                })
        }
        Error::InsufficientScope { server_id, scope } => async_graphql::Error::new(
            "the server needs more permissions: reconnect it to consent to them",
        )
        .extend_with(|_, e| {
            e.set("code", "REAUTH_REQUIRED");
            e.set("serverId", server_id.to_string());
            e.set("reason", "insufficient_scope");
            if let Some(scope) = &scope {
                e.set("scope", scope.clone());
            }
        }),
        Error::Upstream(message) => coded(message, "UPSTREAM_ERROR"),
        Error::UpstreamTimeout => coded(
            "the upstream server did not answer in time",
            "UPSTREAM_TIMEOUT",
        ),
        Error::Oauth(error) => oauth_error(error),
        Error::RateLimited(limited) => rate_limited(limited),
        Error::QuotaExceeded { quota, limit } => quota_exceeded(quota, limit),
    }
}

/// `RATE_LIMITED`, with `retryAfter` (whole seconds) for the rate limits and `rateLimit`
/// naming the one that refused.
fn rate_limited(limited: Limited) -> async_graphql::Error {
    let which = match limited {
        Limited::Request { .. } => "REQUEST",
        Limited::User { .. } => "USER",
        Limited::Workspace { .. } => "WORKSPACE",
    };
    async_graphql::Error::new(limited.to_string()).extend_with(|_, e| {
        e.set("code", "RATE_LIMITED");
        e.set("rateLimit", which);
        if let Some(secs) = limited.retry_after_secs() {
            e.set("retryAfter", secs);
        }
    })
}

/// A quota: the workspace's own state stands in the way (`CONFLICT`: removing a server
/// resolves it), or an upstream listed more than a server may have (`UPSTREAM_ERROR`).
fn quota_exceeded(quota: Quota, limit: u64) -> async_graphql::Error {
    let code = match quota {
        Quota::ServersPerWorkspace => "CONFLICT",
        Quota::ToolsPerServer | Quota::CatalogueBytes => "UPSTREAM_ERROR",
    };
    async_graphql::Error::new(quota.describe(limit)).extend_with(|_, e| {
        e.set("code", code);
        e.set("quota", quota.code());
        e.set("limit", limit);
    })
}

fn reauth(server_id: Uuid) -> async_graphql::Error {
    async_graphql::Error::new(
        "the server's authorization must be renewed: start the OAuth flow again",
    )
    .extend_with(|_, e| {
        e.set("code", "REAUTH_REQUIRED");
        e.set("serverId", server_id.to_string());
    })
}

fn oauth_error(error: OauthError) -> async_graphql::Error {
    match error {
        OauthError::Storage(error) => internal_error("storage failure during OAuth", &error),
        OauthError::Net(NetError::Timeout) => coded(
            "the authorization server did not answer in time",
            "UPSTREAM_TIMEOUT",
        ),
        OauthError::InvalidGrant | OauthError::InvalidClient | OauthError::NotAuthorized => coded(
            "authorization is required: start the OAuth flow again",
            "REAUTH_REQUIRED",
        ),
        // These messages describe the upstream's behaviour and never carry secrets.
        other => coded(other.to_string(), "UPSTREAM_ERROR"),
    }
}

fn coded(message: impl Into<String>, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// The authenticated caller, or `UNAUTHENTICATED`.
pub fn principal<'a>(ctx: &Context<'a>) -> Result<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| Error::Unauthenticated.into())
}

/// Parse an id argument; a malformed id is `BAD_USER_INPUT` naming the field.
pub fn parse_id(field: &str, id: &ID) -> Result<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| crate::domain::bad_input(field, "is not a valid id").into())
}
