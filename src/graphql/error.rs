//! The one place domain errors become GraphQL errors.
//!
//! Each error carries a stable `extensions.code`. Errors about the caller's own input keep
//! their message; storage and crypto failures are logged here, once, and answered with a
//! message that reveals nothing.

use async_graphql::{Context, ErrorExtensions, ID};
use uuid::Uuid;

use crate::domain::limits::{Limited, Quota};
use crate::domain::oauth::OauthError;
use crate::domain::{Error, access::Principal};
use crate::net::NetError;

/// Map a domain error to a GraphQL error.
pub fn api_error(error: Error) -> async_graphql::Error {
    match error {
        Error::Unauthenticated => coded(
            "authentication required: send a valid API token",
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
        Error::Db(error) => {
            tracing::error!(%error, "storage failure while handling a request");
            internal()
        }
        Error::Crypto(error) => {
            tracing::error!(%error, "secret could not be sealed or opened");
            internal()
        }
        Error::ReauthRequired { server_id } => reauth(server_id),
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
        OauthError::Storage(error) => {
            tracing::error!(%error, "storage failure during OAuth");
            internal()
        }
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

/// The answer to any failure the caller cannot act on.
pub fn internal() -> async_graphql::Error {
    coded("internal error", "INTERNAL")
}

fn coded(message: impl Into<String>, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// Convert domain results at the resolver boundary. Resolvers use `.api()?` rather than `?`
/// on a domain error, which would bypass this mapping.
pub trait ApiResult<T> {
    /// Map the error with [`api_error`].
    fn api(self) -> async_graphql::Result<T>;
}

impl<T> ApiResult<T> for Result<T, Error> {
    fn api(self) -> async_graphql::Result<T> {
        self.map_err(api_error)
    }
}

/// The authenticated caller, or `UNAUTHENTICATED`.
pub fn principal<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| api_error(Error::Unauthenticated))
}

/// Parse an id argument; a malformed id is `BAD_USER_INPUT` naming the field.
pub fn parse_id(field: &str, id: &ID) -> async_graphql::Result<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| api_error(crate::domain::bad_input(field, "is not a valid id")))
}
