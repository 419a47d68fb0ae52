//! What the domain works with: the handles and the settings it reads, assembled once by
//! `app.rs` and handed to every domain function as a [`Context`].
//!
//! The domain never sees the application state, the full configuration or anything of the
//! layers above it; everything it may touch is a field here. A function that needs less takes
//! less (a `&mut DbConn`, the guarded client), so callers can compose it inside a transaction.

use std::sync::Arc;

use url::Url;

use super::limits::{Limits, RateLimit};
use super::oauth::OauthState;
use super::status::EventBus;
use crate::crypto::KeyRing;
use crate::db::Db;
use crate::mcp::SessionPool;
use crate::metrics::Metrics;
use crate::net::GuardedClient;

/// The handles and settings the domain works with.
pub struct Context {
    /// Database pool: every read and write of the product's data.
    pub db: Db,
    /// Encryption keys: seals header values, client secrets, tokens and verifiers at rest.
    pub keys: KeyRing,
    /// The guarded outbound HTTP client: probes, discovery, registration, token requests,
    /// revocation and MCP sessions all go out through it.
    pub http: GuardedClient,
    /// Status and access events, published after each change commits (to every replica on
    /// PostgreSQL).
    pub events: EventBus,
    /// MCP sessions kept open between tool calls; dropped when a server's credentials go.
    pub sessions: SessionPool,
    /// OAuth discovery cache and the per-grant refresh single-flight.
    pub oauth: OauthState,
    /// Process metrics the domain counts into (tool calls, token refreshes).
    pub metrics: Arc<Metrics>,
    /// Outbound budgets, rate limits and quotas, built from [`Settings`].
    pub limits: Limits,
    /// The settings the domain reads.
    pub settings: Settings,
    /// Authenticated callers by token hash, dropped on every access change.
    pub principals: Arc<super::access::PrincipalCache>,
    /// Trusted identity providers, their cached keys and the tokens signed in with.
    pub identity: super::identity::IdentityState,
}

/// The part of the configuration the domain reads, and nothing more.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where browsers reach this deployment: the base of the OAuth callback, the begin links
    /// and the client metadata document.
    pub public_url: Url,
    /// The Client ID Metadata Document URL to present instead of the one served here.
    pub client_metadata_url: Option<Url>,
    /// Whether outbound requests may reach private networks; also lets OAuth run against a
    /// plain-http server on loopback (local development and tests).
    pub allow_private_networks: bool,
    /// Outbound operations per GraphQL request (or WebSocket operation).
    pub outbound_per_request: u32,
    /// Per-user rate of outbound operations.
    pub user_outbound: RateLimit,
    /// Per-workspace rate of outbound operations.
    pub workspace_outbound: RateLimit,
    /// Most servers per workspace.
    pub max_servers_per_workspace: u32,
    /// Most tools per server.
    pub max_tools_per_server: u32,
    /// Largest tool listing per server, in bytes.
    pub max_catalogue_bytes: u64,
}

impl Settings {
    /// Whether the public URL is https (needed to serve a client metadata document).
    pub fn public_url_is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// An absolute URL on this server: the public URL's path plus `path` (which starts with `/`).
    pub fn public_endpoint(&self, path: &str) -> Url {
        let mut url = self.public_url.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(public_url: &str) -> Settings {
        Settings {
            public_url: Url::parse(public_url).unwrap(),
            client_metadata_url: None,
            allow_private_networks: false,
            outbound_per_request: 10,
            user_outbound: RateLimit::OFF,
            workspace_outbound: RateLimit::OFF,
            max_servers_per_workspace: 1,
            max_tools_per_server: 1,
            max_catalogue_bytes: 1,
        }
    }

    #[test]
    fn public_endpoints_keep_the_public_path() {
        assert_eq!(
            settings("https://example.com/switchboard/")
                .public_endpoint("/oauth/callback")
                .as_str(),
            "https://example.com/switchboard/oauth/callback"
        );
        assert_eq!(
            settings("http://127.0.0.1:8080")
                .public_endpoint("/oauth/callback")
                .as_str(),
            "http://127.0.0.1:8080/oauth/callback"
        );
        assert!(settings("https://example.com").public_url_is_https());
        assert!(!settings("http://example.com").public_url_is_https());
    }
}
