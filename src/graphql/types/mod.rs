//! GraphQL output types, one file per family: accounts (users and tokens), workspaces (with
//! their members and audit trail) and MCP servers (with their grants, tools and status). Each
//! object wraps a row; nested objects load through the DataLoaders. No secret is reachable
//! from here: sealed columns have no field.

mod account;
mod listed;
mod server;
mod workspace;

pub use self::account::{ApiToken, OnboardedWorkspace, ServiceAccount, User, UserKind};
pub use self::listed::{ListedServer, ServerPage};
pub use self::server::{McpOauthGrant, McpProbeResult, McpServer, McpServerStatus, McpTool};
pub use self::workspace::{AuditEvent, Workspace, WorkspaceMember};
pub use super::enums::{
    McpAuthStatus, McpAuthType, McpConnectionStatus, McpCredentialMode, McpOauthRegistration,
    McpStatusReason, McpTransport, WorkspaceRole,
};
