//! MCP client plumbing: the product's side of the Model Context Protocol, spoken through the
//! official SDK (`rmcp`) over the Streamable HTTP transport or, for older servers, the HTTP+SSE
//! transport of revision 2024-11-05 (`sse`, an rmcp transport of our own). Infrastructure,
//! beside `net/` and `db/`: it opens sessions, lists tools, calls them and keeps sessions open
//! in the [`pool`]; what a result means for a server (a refresh after a 401, a status change,
//! a quota) is decided by `domain::mcp`.
//!
//! A catalogue refresh opens a session for the listing and closes it again; tool calls borrow
//! a session kept open per server by the [`pool`], so a call costs one request. On a session
//! of the earlier era over Streamable HTTP that request is posted, and its answer read, in the
//! caller's own task (`direct`); everything else goes through rmcp's service. The server's
//! URL, transport, static headers, access token and timeout come from the caller as an
//! [`McpTarget`].
//!
//! Invariants:
//! - All traffic goes through the guarded client of `net/`: rmcp sends with its
//!   `reqwest::Client`, whose resolver and connector enforce the outbound rules, and the URL is
//!   checked with [`crate::net::check_url`] before the session opens.
//! - When a bearer token is given it is the only `Authorization` the server sees: static
//!   headers never override it, and headers the transport owns are never taken from them.
//! - Tokens and header values never appear in errors or logs, and errors never carry response
//!   bodies, so an [`McpError`] is safe to log and to map to an API error.
//! - Every operation is bounded by the target's timeout. The only retry here is of a request
//!   whose answer was lost with its stream, sent again once on the same session (so under a
//!   new request id): a page of a listing always, a tool call only when the tool says running
//!   twice is harmless ([`ToolCall::rerunnable`]). The caller decides what a 401, a 403 or an
//!   expired session leads to.

mod direct;
mod ids;
pub mod pool;
pub mod session;
mod sse;
mod traced;
mod unanswered;

#[cfg(test)]
mod tests;

pub use pool::{SessionKey, SessionPool};
pub use session::{
    CallResult, Era, InputRequest, InputRequired, Listing, ListingCaps, McpError, McpSession,
    McpTarget, Resume, STATELESS_REVISION, ToolCall, ToolCallOutcome, ToolChanges, ToolInfo,
    may_run_twice, open,
};
pub use unanswered::UnansweredInput;

/// The MCP transport a server speaks (stored on its row as text).
pub use crate::db::types::Transport;

/// Headers the transport owns; letting a user set them would corrupt requests. Lower case.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];
