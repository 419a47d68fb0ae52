//! OAuth 2.1 + PKCE against the authorization servers of outbound MCP servers, following the
//! MCP authorization specification (2025-11-25 with the 2026-07-28 client rules).
//!
//! - [`challenge`]: reading `WWW-Authenticate` challenges.
//! - [`probe`]: detecting how a server authenticates.
//! - [`discovery`]: protected-resource and authorization-server metadata.
//! - [`registration`]: pre-registered client, Client ID Metadata Document, or dynamic
//!   registration, keyed by issuer.
//! - [`flow`]: the popup flow (start, begin, callback) and `completeMcpOauth`.
//! - [`tokens`]: token requests, and refresh with single-flight, a database lock and
//!   compare-and-swap saves.
//! - [`revoke`]: best-effort RFC 7009 revocation.
//!
//! Every request goes through the guarded HTTP client; every secret (tokens, verifiers, client
//! secrets, registrations) is sealed before it is stored and never logged.

pub mod assertion;
pub mod challenge;
pub mod discovery;
pub mod flow;
pub mod probe;
pub mod registration;
pub mod revoke;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::net::NetError;

/// Why an OAuth step failed. Messages are safe to show: they never carry tokens, codes,
/// verifiers or secrets.
#[derive(Debug, thiserror::Error)]
pub enum OauthError {
    /// Metadata could not be found or is unusable.
    #[error("authorization discovery failed: {0}")]
    Discovery(String),
    /// The protected resource metadata names another resource.
    #[error(
        "the protected resource metadata names {found:?}, which does not cover this server's URL"
    )]
    ResourceMismatch {
        /// The `resource` the document named.
        found: String,
    },
    /// The authorization server metadata names another issuer.
    #[error("the authorization server metadata names issuer {found:?} instead of {expected:?}")]
    IssuerMismatch {
        /// The issuer used to find the document.
        expected: String,
        /// The issuer the document named.
        found: String,
    },
    /// PKCE with S256 is not (declared to be) supported.
    #[error(
        "the authorization server does not declare PKCE S256 support (code_challenge_methods_supported); \
         enable the server's lenient PKCE switch if it is known to support it anyway"
    )]
    PkceUnsupported,
    /// An advertised endpoint is not an http(s) URL.
    #[error("the authorization server advertises an unusable {0} endpoint")]
    BadEndpoint(&'static str),
    /// An advertised endpoint is plain http on a host other than loopback.
    #[error(
        "the authorization server advertises a plain http {0} endpoint; https is required except on loopback hosts"
    )]
    InsecureEndpoint(&'static str),
    /// No way to get a client id.
    #[error(
        "the authorization server offers no client registration; set a pre-registered client id on the server"
    )]
    NoRegistration,
    /// Dynamic registration failed.
    #[error("client registration failed: {0}")]
    Registration(String),
    /// The pre-registered client was first used with another authorization server; it is
    /// never sent to a different one.
    #[error(
        "the pre-registered client was entered for the authorization server {bound:?}, but the \
         server now names {found:?}; enter the client credentials again to use them there"
    )]
    ClientBoundElsewhere {
        /// The issuer the client is bound to.
        bound: String,
        /// The issuer discovery found now.
        found: String,
    },
    /// Another process is refreshing this grant and did not finish in time.
    #[error("another refresh of this grant did not finish in time")]
    RefreshBusy,
    /// The stored pre-registered client secret cannot be opened (lost key).
    #[error("the stored client secret can no longer be read; enter it again")]
    UnreadableClientSecret,
    /// The machine client's private key cannot sign an assertion this authorization server
    /// accepts.
    #[error("the client's private key cannot be used: {0}")]
    ClientKey(String),
    /// The authorization server rejected the grant (`invalid_grant`).
    #[error("the authorization server rejected the stored grant")]
    InvalidGrant,
    /// The authorization server rejected the client (`invalid_client`).
    #[error("the authorization server rejected the client registration")]
    InvalidClient,
    /// The token endpoint failed in another way.
    #[error("the token endpoint answered {0}")]
    TokenEndpoint(String),
    /// No usable tokens are stored.
    #[error("authorization is required")]
    NotAuthorized,
    /// The outbound rules refused a request, or it failed on the network.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] crate::db::DbError),
}

impl OauthError {
    /// Whether the failure is transient (network, timeout, 5xx): such failures never delete a
    /// token.
    pub fn is_transient(&self) -> bool {
        match self {
            OauthError::Net(
                NetError::DisallowedAddress { .. }
                | NetError::HttpsRequired
                | NetError::UnsupportedScheme,
            ) => false,
            OauthError::Net(_) => true,
            OauthError::TokenEndpoint(status) => status.starts_with('5'),
            OauthError::Storage(_) | OauthError::RefreshBusy => true,
            _ => false,
        }
    }
}

/// How a client was registered with an authorization server.
pub use crate::db::types::RegistrationKind;

/// Who holds a grant: the workspace (one grant shared by every member) or one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// The workspace's shared grant.
    Workspace,
    /// One user's own grant.
    User(Uuid),
}

impl Holder {
    /// The user holding the grant, if it is not shared.
    pub fn user_id(self) -> Option<Uuid> {
        match self {
            Holder::Workspace => None,
            Holder::User(id) => Some(id),
        }
    }

    /// The holder of a stored grant.
    pub fn of(grant: &crate::db::models::OauthGrantRow) -> Holder {
        match grant.user_id {
            Some(user) => Holder::User(user.0),
            None => Holder::Workspace,
        }
    }
}

/// The endpoints of an authorization server that a grant needs after the flow (refresh and
/// revocation), stored with the grant so neither needs discovery again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationServer {
    /// Issuer (the key of registrations).
    pub issuer: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// Revocation endpoint, if any.
    pub revocation_endpoint: Option<String>,
    /// `token_endpoint_auth_methods_supported`, if advertised.
    pub token_endpoint_auth_methods: Option<Vec<String>>,
    /// `token_endpoint_auth_signing_alg_values_supported`, if advertised.
    #[serde(default)]
    pub signing_algs: Option<Vec<String>>,
    /// Whether the authorization response carries `iss` (RFC 9207).
    pub iss_parameter_supported: bool,
    /// Whether the metadata came from the 2025-03-26 fallback (no issuer check applies).
    pub legacy: bool,
    /// Whether there was no metadata document at all, so `issuer` is only the origin that
    /// keys the registration, not an issuer the server ever declared.
    #[serde(default)]
    pub synthesized: bool,
}

/// A discovery result and when it was made.
type CachedDiscovery = (Instant, Arc<discovery::Discovery>);

/// Process-wide OAuth state: the discovery cache and the per-grant refresh single-flight.
#[derive(Default)]
pub struct OauthState {
    discovery: Mutex<HashMap<(Uuid, String), CachedDiscovery>>,
    refresh_locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

/// Refresh locks kept before idle ones are dropped.
const REFRESH_LOCKS_KEPT: usize = 1024;

/// How long discovery results are reused for one server.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

impl OauthState {
    /// The cached discovery of a server for this URL, if fresh.
    pub fn cached_discovery(
        &self,
        server_id: Uuid,
        url: &str,
    ) -> Option<Arc<discovery::Discovery>> {
        let cache = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&(server_id, url.to_owned()))
            .filter(|(at, _)| at.elapsed() < DISCOVERY_TTL)
            .map(|(_, d)| d.clone())
    }

    /// Remember a server's discovery.
    pub fn remember_discovery(
        &self,
        server_id: Uuid,
        url: &str,
        discovery: Arc<discovery::Discovery>,
    ) {
        let mut cache = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < DISCOVERY_TTL);
        cache.insert((server_id, url.to_owned()), (Instant::now(), discovery));
    }

    /// Forget a server's discovery (after `invalid_client`, or when its URL changed).
    pub fn forget_discovery(&self, server_id: Uuid) {
        let mut cache = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(id, _), _| *id != server_id);
    }

    /// The in-process refresh lock of one grant.
    pub fn refresh_lock(&self, grant_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Locks nobody holds or waits for are dropped, so the map stays as small as the
        // number of refreshes in progress.
        if locks.len() > REFRESH_LOCKS_KEPT {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(grant_id).or_default().clone()
    }
}

/// Split a space-separated scope string.
pub fn scope_list(scopes: Option<&str>) -> Vec<String> {
    scopes
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Union of scope lists, first-seen order, no duplicates.
pub fn scope_union<'a>(lists: impl IntoIterator<Item = &'a [String]>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for list in lists {
        for scope in list {
            if !out.contains(scope) {
                out.push(scope.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_union_keeps_order_and_drops_duplicates() {
        let a = scope_list(Some("read write"));
        let b = scope_list(Some("write admin"));
        assert_eq!(
            scope_union([a.as_slice(), b.as_slice()]),
            ["read", "write", "admin"]
        );
    }
}
