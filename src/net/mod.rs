//! Outbound network access.
//!
//! `net` is the only place in the product that opens outbound connections.
//! Every outbound request — probing MCP servers, OAuth discovery,
//! registration, token and revocation calls, and MCP traffic itself — goes
//! through [`GuardedClient`]. The URLs involved come from users and from
//! remote servers, so each one is a potential server-side request forgery
//! vector, and the rules below are what stops it:
//!
//! - Only `http` and `https` URLs, without embedded credentials, and `https`
//!   unless the host is loopback ([`check_url`]).
//! - The host is resolved once, and the request is refused if *any* resolved
//!   address is disallowed by the [`NetPolicy`] ([`classify`],
//!   [`is_allowed`]). Refusing on any (rather than filtering) means a DNS
//!   answer mixing public and private addresses cannot be used to smuggle a
//!   private target through.
//! - The connection goes to exactly the addresses that were checked: the
//!   client's DNS resolver is the checker, so there is no second lookup a
//!   rebinding DNS server could answer differently. IP-literal hosts, which
//!   reqwest connects to without asking a resolver, are checked by a layer
//!   over the client's connector. Both sit inside the `reqwest::Client`, so
//!   the client stays guarded when handed to a library
//!   ([`GuardedClient::reqwest_client`]).
//! - Redirects are followed only when asked for, and every hop is re-checked.
//! - Response bodies are read with a size cap ([`read_body_capped`]) and
//!   every request has a total and a connect timeout.
//!
//! One client is built differently: the trace exporter's
//! ([`GuardedClient::for_collector`]). The collector's endpoint is operator
//! configuration, not user input, and usually sits on loopback or a private
//! network, often behind plain `http`. That client reaches exactly the
//! configured origin (scheme, host and port) on any address but those
//! refused whatever the policy, and nothing else: every other URL, and every
//! redirect, is refused before a connection is opened.

mod client;
mod ip;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

pub use client::{ClientOptions, GuardedClient, OAUTH_JSON_LIMIT, read_body_capped};
pub use ip::{AddressClass, classify, is_allowed};

/// Outbound policy set by the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Allow loopback, RFC 1918, link-local, CGNAT, unique-local and other
    /// non-public destinations, for deployments whose MCP servers live on the
    /// operator's own network. Unspecified, multicast, broadcast and cloud
    /// metadata addresses stay refused regardless
    /// (see [`AddressClass::always_refused`]).
    pub allow_private_networks: bool,
}

/// The outbound rule that refused an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Private networks are not allowed: only public addresses may be reached.
    PublicOnly,
    /// Refused whatever the policy ([`AddressClass::always_refused`]).
    AlwaysRefused,
}

impl Rule {
    /// The rule for a refused address of `class`, as it may be told to the user.
    ///
    /// For an IP literal that is the rule the class falls under. For a hostname it depends on
    /// the policy alone: with private networks refused, every refusal of a name reads as the
    /// public-only rule (which also excludes metadata endpoints), so the message says nothing
    /// about which kind of address the name resolved to.
    fn for_refusal(class: AddressClass, literal: bool, policy: NetPolicy) -> Rule {
        let always = if literal {
            class.always_refused()
        } else {
            policy.allow_private_networks
        };
        if always {
            Rule::AlwaysRefused
        } else {
            Rule::PublicOnly
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Rule::PublicOnly => {
                "private networks are not allowed, so only public addresses other than cloud \
                 metadata endpoints may be reached"
            }
            Rule::AlwaysRefused => {
                "unspecified, multicast and broadcast addresses and cloud metadata endpoints \
                 are never reached"
            }
        }
    }
}

fn refusal_message(host: &str, literal: bool, class: AddressClass, rule: Rule) -> String {
    if literal {
        format!(
            "the address {host} ({class}) is refused: {}",
            rule.describe()
        )
    } else {
        format!("the host {host} is refused: {}", rule.describe())
    }
}

/// Why an outbound request or URL was refused or failed.
///
/// Messages never contain header values, bodies or full URLs, so they are
/// safe to log and to show to the user who supplied the URL.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NetError {
    /// The URL could not be parsed or lacks a host.
    #[error("the URL is not valid: {0}")]
    InvalidUrl(String),
    /// The scheme is neither `http` nor `https`.
    #[error("only http and https URLs are allowed")]
    UnsupportedScheme,
    /// Plain `http` to a non-loopback host, or a redirect from `https` to
    /// `http`.
    #[error("https is required except for loopback hosts")]
    HttpsRequired,
    /// The URL carries a user name or password.
    #[error("URLs with embedded credentials are not allowed")]
    CredentialsInUrl,
    /// The host is, or resolves to, an address the policy refuses.
    ///
    /// The message names the rule that refused it. For a hostname it never names the
    /// addresses the name resolved to nor their class, so an error shown to a user reveals
    /// nothing about how internal names resolve; for an IP literal it names the address's
    /// class, which anyone can tell from the literal.
    #[error("{}", refusal_message(host, *literal, *class, *rule))]
    DisallowedAddress {
        /// The host as written in the URL.
        host: String,
        /// Whether the host is an IP literal rather than a name.
        literal: bool,
        /// The class of the first refused address (for tests and operators, never shown for
        /// a hostname).
        class: AddressClass,
        /// The rule that refused it.
        rule: Rule,
    },
    /// Name resolution failed or returned no address.
    #[error("the host {0} could not be resolved")]
    Unresolvable(String),
    /// The resolution, connection, request or body read took too long.
    #[error("the request timed out")]
    Timeout,
    /// The response body is larger than the caller's cap.
    #[error("the response body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The cap that was exceeded, in bytes.
        limit: usize,
    },
    /// The redirect chain is longer than `ClientOptions::max_redirects`.
    #[error("too many redirects")]
    TooManyRedirects,
    /// The TCP or TLS connection could not be established.
    #[error("connection failed: {0}")]
    Connect(String),
    /// Any other failure while building, sending or reading the request.
    #[error("request failed: {0}")]
    Request(String),
    /// A client confined to one origin ([`GuardedClient::for_collector`]) was asked for
    /// another.
    #[error("only the configured origin may be reached by this client")]
    OutsideOrigin,
}

/// Upper bound for a lookup made by [`check_url`]. Requests sent through
/// [`GuardedClient`] are bounded by its connect timeout instead.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// Validate a URL a user wants to register or that we are about to contact.
///
/// Rules: `http(s)` only; no userinfo; `https` required unless the host is
/// loopback (see [`is_loopback_host`]); the host is resolved (IP literals are
/// not) and *every* resolved address must pass [`is_allowed`]. Returns the
/// checked socket addresses, with the URL's port (or the scheme default).
///
/// This is for validating input up front; requests sent through
/// [`GuardedClient`] repeat the same checks at connect time, so a name that
/// resolves differently later is still caught.
pub async fn check_url(url: &Url, policy: NetPolicy) -> Result<Vec<SocketAddr>, NetError> {
    check_url_shape(url)?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| NetError::InvalidUrl("the URL has no port".to_owned()))?;
    let ips = match url.host() {
        Some(Host::Ipv4(v4)) => vec![check_ip_literal(IpAddr::V4(v4), policy)?],
        Some(Host::Ipv6(v6)) => vec![check_ip_literal(IpAddr::V6(v6), policy)?],
        Some(Host::Domain(name)) => resolve_checked(name, policy, DNS_TIMEOUT).await?,
        None => return Err(missing_host()),
    };
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// Whether the host of the URL is a loopback host by name (`localhost`,
/// `*.localhost`) or by literal (`127.0.0.0/8`, `::1`, and the IPv4-mapped
/// form of `127.0.0.0/8`).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => is_localhost_name(name),
        Some(Host::Ipv4(v4)) => v4.is_loopback(),
        Some(Host::Ipv6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// The checks that need no resolution: scheme, userinfo, host presence and
/// the https rule. Shared by [`check_url`], `GuardedClient::send`, the
/// connector layer and the redirect policy so they cannot drift apart.
fn check_url_shape(url: &Url) -> Result<(), NetError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NetError::UnsupportedScheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NetError::CredentialsInUrl);
    }
    if url.host().is_none() {
        return Err(missing_host());
    }
    if url.scheme() == "http" && !is_loopback_host(url) {
        return Err(NetError::HttpsRequired);
    }
    Ok(())
}

/// Shape checks plus the address check for IP-literal hosts. Hostnames are
/// left to the resolver, which checks them at connect time; IP literals never
/// reach a resolver (neither reqwest's nor ours), so they must be checked here
/// (by `GuardedClient::send`, the connector layer and the redirect policy).
fn check_target(url: &Url, policy: NetPolicy) -> Result<(), NetError> {
    check_url_shape(url)?;
    match url.host() {
        Some(Host::Ipv4(v4)) => check_ip_literal(IpAddr::V4(v4), policy).map(drop),
        Some(Host::Ipv6(v6)) => check_ip_literal(IpAddr::V6(v6), policy).map(drop),
        Some(Host::Domain(_)) => Ok(()),
        None => Err(missing_host()),
    }
}

/// The policy of a client confined to one configured origin: any address but those refused
/// whatever the policy.
const ORIGIN_POLICY: NetPolicy = NetPolicy {
    allow_private_networks: true,
};

/// The checks of a client confined to `origin`: no userinfo, exactly that scheme, host and
/// port (`http` included, whatever the host), and IP-literal hosts checked against
/// [`ORIGIN_POLICY`]. Hostnames are checked by the resolver, which resolves only the origin's.
fn check_origin_target(url: &Url, origin: &url::Origin) -> Result<(), NetError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NetError::CredentialsInUrl);
    }
    if url.origin() != *origin {
        return Err(NetError::OutsideOrigin);
    }
    match url.host() {
        Some(Host::Ipv4(v4)) => check_ip_literal(IpAddr::V4(v4), ORIGIN_POLICY).map(drop),
        Some(Host::Ipv6(v6)) => check_ip_literal(IpAddr::V6(v6), ORIGIN_POLICY).map(drop),
        Some(Host::Domain(_)) => Ok(()),
        None => Err(missing_host()),
    }
}

fn check_ip_literal(ip: IpAddr, policy: NetPolicy) -> Result<IpAddr, NetError> {
    is_allowed(ip, policy).map(|()| ip).map_err(|class| {
        tracing::debug!(%ip, %class, "refused outbound address");
        refused(ip.to_string(), true, class, policy)
    })
}

fn refused(host: String, literal: bool, class: AddressClass, policy: NetPolicy) -> NetError {
    NetError::DisallowedAddress {
        host,
        literal,
        class,
        rule: Rule::for_refusal(class, literal, policy),
    }
}

fn missing_host() -> NetError {
    NetError::InvalidUrl("the URL has no host".to_owned())
}

/// `localhost` and `*.localhost` (RFC 6761), ignoring a trailing root dot.
fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .len()
            .checked_sub(".localhost".len())
            .and_then(|start| name.get(start..))
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(".localhost"))
}

/// Resolve a hostname and check every address against the policy.
///
/// Localhost names are answered here with the loopback addresses instead of
/// asking DNS: RFC 6761 reserves them for loopback, and the https exemption
/// for loopback hosts is only sound if `foo.localhost` cannot be made to
/// resolve to a public address by some upstream DNS server.
async fn resolve_checked(
    host: &str,
    policy: NetPolicy,
    timeout: Duration,
) -> Result<Vec<IpAddr>, NetError> {
    let ips: Vec<IpAddr> = if is_localhost_name(host) {
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
    } else {
        let lookup = tokio::net::lookup_host((host, 0));
        let addrs = tokio::time::timeout(timeout, lookup)
            .await
            .map_err(|_| NetError::Timeout)?
            .map_err(|err| {
                tracing::debug!(host, error = %err, "name resolution failed");
                NetError::Unresolvable(host.to_owned())
            })?;
        let mut seen = HashSet::new();
        addrs
            .map(|addr| addr.ip())
            .filter(|ip| seen.insert(*ip))
            .collect()
    };
    check_resolved(host, ips, policy)
}

/// Check every address a hostname resolved to: refused if any is disallowed.
fn check_resolved(
    host: &str,
    ips: Vec<IpAddr>,
    policy: NetPolicy,
) -> Result<Vec<IpAddr>, NetError> {
    if ips.is_empty() {
        return Err(NetError::Unresolvable(host.to_owned()));
    }
    for ip in &ips {
        if let Err(class) = is_allowed(*ip, policy) {
            // The operator may see where the name led; the error does not say.
            tracing::debug!(host, %ip, %class, "refused outbound address");
            return Err(refused(host.to_owned(), false, class, policy));
        }
    }
    Ok(ips)
}
