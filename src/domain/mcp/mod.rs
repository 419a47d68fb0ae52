//! The rules of talking to a registered MCP server: which credentials a session opens with,
//! what a failure means for the server's status, what a call does on a 401 (one refresh, one
//! retry, then `REAUTH_REQUIRED`), a 403 `insufficient_scope` (ask for consent) or an expired
//! session (one more attempt on a new one), when a kept session is given up, and how a listing
//! is held to the quotas.
//!
//! The sessions themselves (rmcp, the transports, the pool of kept sessions) are
//! infrastructure in [`crate::mcp`]; this module decides what to send and what a result means.

pub mod calls;
pub mod catalogue;
pub mod input;
pub mod listen;
