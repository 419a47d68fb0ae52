//! The rules of the product: who may do what, how servers are created, changed and deleted,
//! how status moves, how lists are paged. Written against `db/`, `net/` and `crypto/`; tested without HTTP.
//!
//! Domain functions receive a [`Context`] (or the one part of it they need): the handles and
//! the [`Settings`] that `app.rs` assembles. They never see the application state, the full
//! configuration, or anything of the layers above.

pub mod access;
pub mod admin;
pub mod audit;
mod context;
pub mod health;
pub mod identity;
pub mod lifecycle;
pub mod limits;
pub mod mcp;
pub mod oauth;
pub mod onboarding;
pub mod pagination;
pub mod retry;
pub mod servers;
pub mod status;
pub mod workspaces;

use uuid::Uuid;

pub use context::{Context, Settings};

use crate::crypto::CryptoError;
use crate::db::DbError;

/// What a domain operation can fail with. The API maps each variant to one stable
/// `extensions.code` in `graphql/error.rs`; only the variants that describe the caller's own
/// input carry text meant for the caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No valid API token or identity-provider token.
    #[error("authentication required")]
    Unauthenticated,
    /// A member whose role does not allow the operation.
    #[error("{0}")]
    Forbidden(String),
    /// The object does not exist or is not visible to the caller.
    #[error("not found")]
    NotFound,
    /// Malformed input; `field` names the input field.
    #[error("{field}: {message}")]
    BadInput {
        /// The input field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The change collides with existing state.
    #[error("{message}")]
    Conflict {
        /// What collides.
        message: String,
        /// The id of the existing object, when there is one.
        existing_id: Option<Uuid>,
    },
    /// A URL that points somewhere outbound traffic must not go.
    #[error("{field}: {message}")]
    UnsafeUrl {
        /// The input field at fault.
        field: String,
        /// Why it is refused.
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// An OAuth step with an upstream server failed.
    #[error(transparent)]
    Oauth(oauth::OauthError),
    /// The server needs more scopes than were granted; a user must consent again.
    #[error("more scopes are needed")]
    InsufficientScope {
        /// The server.
        server_id: Uuid,
        /// The scopes the server asked for.
        scope: Option<String>,
    },
    /// An upstream server failed; the message is safe to show.
    #[error("{0}")]
    Upstream(String),
    /// An upstream server did not answer in time.
    #[error("the upstream server did not answer in time")]
    UpstreamTimeout,
    /// The server rejected its static headers; someone must correct them (no OAuth flow helps).
    #[error("the MCP server rejected the configured headers")]
    HeadersRejected {
        /// The server.
        server_id: Uuid,
    },
    /// The server is disabled: nothing is sent to it until it is enabled again.
    #[error("the server is disabled")]
    ServerDisabled {
        /// The server.
        server_id: Uuid,
    },
    /// The server's authorization must be renewed by a user before it can be used.
    #[error("authorization required")]
    ReauthRequired {
        /// The server that needs it.
        server_id: Uuid,
    },
    /// An outbound operation was refused by the request budget or a rate limit; nothing was
    /// done.
    #[error("{0}")]
    RateLimited(limits::Limited),
    /// A quota would be exceeded; nothing was stored.
    #[error("{}", .quota.describe(*.limit))]
    QuotaExceeded {
        /// Which quota.
        quota: limits::Quota,
        /// Its configured value.
        limit: u64,
    },
}

/// Shorthand for a bad-input error.
pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::BadInput {
        field: field.into(),
        message: message.into(),
    }
}

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
