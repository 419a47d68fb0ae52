//! Discovery: protected resource metadata (RFC 9728), then authorization server metadata
//! (RFC 8414, then OpenID Connect discovery), in the order the MCP specification gives.
//!
//! - Protected resource metadata: the challenge's `resource_metadata`, else the path-inserted
//!   well-known URL, else the root one. Its `resource` must cover the server URL (same origin,
//!   path prefix) and is kept verbatim: it is sent as `resource` exactly as published.
//! - Authorization server metadata: for an issuer with a path, RFC 8414 path-inserted, OIDC
//!   path-inserted, OIDC path-appended; without a path, RFC 8414 then OIDC. The document's
//!   `issuer` must equal the issuer used.
//! - No protected resource metadata at all: the 2025-03-26 behaviour (metadata on the server's
//!   origin, else `/authorize`, `/token`, `/register` there). That revision had no issuer
//!   check and no rule about `code_challenge_methods_supported`, so neither applies there.
//! - PKCE S256 is required: metadata listing methods without S256 is refused, and metadata
//!   omitting the list is refused unless the server's lenient-PKCE switch is on.

use std::time::Duration;

use reqwest::header::ACCEPT;
use serde::Deserialize;
use url::Url;

use super::challenge::Challenge;
use super::probe::MCP_PROTOCOL_VERSION;
use super::{AuthorizationServer, OauthError};
use crate::net::{self, GuardedClient};

/// Authorization servers of one protected-resource document that are tried, in order.
const MAX_AUTHORIZATION_SERVERS: usize = 4;

/// How long one metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the flow needs to know about a server's authorization.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The `resource` parameter to send, verbatim.
    pub resource: String,
    /// Scopes the protected resource metadata lists.
    pub prm_scopes: Option<Vec<String>>,
    /// The authorization server (stored with the grant).
    pub server: AuthorizationServer,
    /// Authorization endpoint (https, or http on a loopback host); absent only in a discovery
    /// for a machine client, which never sends a user there.
    pub authorization_endpoint: Option<Url>,
    /// Dynamic registration endpoint, if offered.
    pub registration_endpoint: Option<Url>,
    /// Scopes the authorization server lists.
    pub scopes_supported: Option<Vec<String>>,
    /// Whether Client ID Metadata Documents are accepted.
    pub client_id_metadata_document_supported: bool,
}

/// Per-server switches that relax a rule for servers known to deviate.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscoverOptions {
    /// Accept metadata that omits `code_challenge_methods_supported`.
    pub lenient_pkce: bool,
    /// Discover for a machine client (client-credentials grant): no authorization endpoint,
    /// code flow or PKCE is needed.
    pub machine: bool,
}

#[derive(Deserialize)]
pub(crate) struct ResourceMetadata {
    resource: Option<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    scopes_supported: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub(crate) struct ServerMetadata {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    scopes_supported: Option<Vec<String>>,
    response_types_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    client_id_metadata_document_supported: bool,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Discover how to authorize against the server at `server_url` (the URL as stored).
// Traced only when spans are exported (`crate::telemetry::SPANS`); no argument is recorded.
#[tracing::instrument(target = "switchboard::spans", name = "oauth.discovery", skip_all)]
pub async fn discover(
    http: &GuardedClient,
    server_url: &str,
    challenge: Option<&Challenge>,
    options: DiscoverOptions,
) -> Result<Discovery, OauthError> {
    let server =
        Url::parse(server_url).map_err(|e| OauthError::Discovery(format!("server URL: {e}")))?;
    match find_resource_metadata(http, &server, challenge).await? {
        Some(prm) => {
            let resource = prm.resource.clone().unwrap_or_default();
            let mut last_error = None;
            // A hostile document may list thousands: only the first few are tried.
            for issuer in prm
                .authorization_servers
                .iter()
                .take(MAX_AUTHORIZATION_SERVERS)
            {
                match server_metadata(http, issuer).await {
                    Ok(metadata) => {
                        return assemble(
                            resource,
                            prm.scopes_supported.clone(),
                            issuer.clone(),
                            metadata,
                            false,
                            options,
                        );
                    }
                    Err(error @ (OauthError::IssuerMismatch { .. } | OauthError::Net(_))) => {
                        return Err(error);
                    }
                    Err(error) => last_error = Some(error),
                }
            }
            Err(last_error.unwrap_or_else(|| {
                OauthError::Discovery("no authorization server is listed".into())
            }))
        }
        None => legacy(http, &server, server_url, options).await,
    }
}

async fn find_resource_metadata(
    http: &GuardedClient,
    server: &Url,
    challenge: Option<&Challenge>,
) -> Result<Option<ResourceMetadata>, OauthError> {
    let mut candidates: Vec<Url> = Vec::new();
    if let Some(link) = challenge.and_then(|c| c.resource_metadata.as_deref())
        && let Ok(url) = server.join(link)
    {
        candidates.push(url);
    }
    let path = server.path().trim_end_matches('/');
    if !path.is_empty() {
        candidates.push(well_known(server, "oauth-protected-resource", path)?);
    }
    candidates.push(well_known(server, "oauth-protected-resource", "")?);
    candidates.dedup();

    for candidate in candidates {
        let Some(body) = fetch_json(http, &candidate).await? else {
            continue;
        };
        let prm: ResourceMetadata = serde_json::from_value(body).map_err(|e| {
            OauthError::Discovery(format!("protected resource metadata is malformed: {e}"))
        })?;
        let resource = prm.resource.as_deref().ok_or_else(|| {
            OauthError::Discovery("protected resource metadata has no resource".into())
        })?;
        if !resource_covers(resource, server) {
            return Err(OauthError::ResourceMismatch {
                found: resource.to_owned(),
            });
        }
        if prm.authorization_servers.is_empty() {
            return Err(OauthError::Discovery(
                "protected resource metadata lists no authorization server".into(),
            ));
        }
        return Ok(Some(prm));
    }
    Ok(None)
}

/// Whether a published `resource` covers the server URL: same origin, no fragment, and its
/// path is the server's path or a segment-wise prefix of it.
pub(crate) fn resource_covers(resource: &str, server: &Url) -> bool {
    let Ok(resource) = Url::parse(resource) else {
        return false;
    };
    if resource.fragment().is_some() || resource.origin() != server.origin() {
        return false;
    }
    let prefix = resource.path().trim_end_matches('/');
    let path = server.path().trim_end_matches('/');
    path == prefix || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'))
}

/// `{origin}/.well-known/{name}{path}`.
fn well_known(base: &Url, name: &str, path: &str) -> Result<Url, OauthError> {
    let origin = base.origin().ascii_serialization();
    Url::parse(&format!("{origin}/.well-known/{name}{path}"))
        .map_err(|e| OauthError::Discovery(format!("cannot build a metadata URL: {e}")))
}

/// The metadata URLs of an issuer, in the specification's order.
fn server_metadata_urls(issuer: &Url) -> Result<Vec<Url>, OauthError> {
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        return Ok(vec![
            well_known(issuer, "oauth-authorization-server", "")?,
            well_known(issuer, "openid-configuration", "")?,
        ]);
    }
    let origin = issuer.origin().ascii_serialization();
    Ok(vec![
        well_known(issuer, "oauth-authorization-server", path)?,
        well_known(issuer, "openid-configuration", path)?,
        Url::parse(&format!("{origin}{path}/.well-known/openid-configuration"))
            .map_err(|e| OauthError::Discovery(e.to_string()))?,
    ])
}

async fn server_metadata(http: &GuardedClient, issuer: &str) -> Result<ServerMetadata, OauthError> {
    let issuer_url = Url::parse(issuer)
        .map_err(|_| OauthError::Discovery(format!("issuer {issuer:?} is not a URL")))?;
    for url in server_metadata_urls(&issuer_url)? {
        let Some(body) = fetch_json(http, &url).await? else {
            continue;
        };
        let metadata: ServerMetadata = serde_json::from_value(body).map_err(|e| {
            OauthError::Discovery(format!("authorization server metadata is malformed: {e}"))
        })?;
        let found = metadata.issuer.clone().unwrap_or_default();
        if found != issuer {
            return Err(OauthError::IssuerMismatch {
                expected: issuer.to_owned(),
                found,
            });
        }
        return Ok(metadata);
    }
    Err(OauthError::Discovery(format!(
        "no authorization server metadata found for issuer {issuer}"
    )))
}

/// The 2025-03-26 behaviour: metadata on the server's origin, else default endpoints there.
async fn legacy(
    http: &GuardedClient,
    server: &Url,
    server_url: &str,
    options: DiscoverOptions,
) -> Result<Discovery, OauthError> {
    let origin = server.origin().ascii_serialization();
    let resource = canonical_resource(server_url);
    let metadata_url = well_known(server, "oauth-authorization-server", "")?;
    if let Some(body) = fetch_json(http, &metadata_url).await? {
        let metadata: ServerMetadata = serde_json::from_value(body).map_err(|e| {
            OauthError::Discovery(format!("authorization server metadata is malformed: {e}"))
        })?;
        let issuer = metadata.issuer.clone().unwrap_or_else(|| origin.clone());
        return assemble(resource, None, issuer, metadata, true, options);
    }
    let metadata = ServerMetadata {
        issuer: Some(origin.clone()),
        authorization_endpoint: Some(format!("{origin}/authorize")),
        token_endpoint: Some(format!("{origin}/token")),
        registration_endpoint: Some(format!("{origin}/register")),
        revocation_endpoint: None,
        scopes_supported: None,
        response_types_supported: None,
        code_challenge_methods_supported: None,
        token_endpoint_auth_methods_supported: None,
        token_endpoint_auth_signing_alg_values_supported: None,
        client_id_metadata_document_supported: false,
        authorization_response_iss_parameter_supported: false,
    };
    let mut discovery = assemble(resource, None, origin, metadata, true, options)?;
    discovery.server.synthesized = true;
    Ok(discovery)
}

/// The server URL as a `resource` when no metadata names one: no fragment, nothing added.
fn canonical_resource(server_url: &str) -> String {
    server_url
        .split('#')
        .next()
        .unwrap_or(server_url)
        .to_owned()
}

pub(crate) fn assemble(
    resource: String,
    prm_scopes: Option<Vec<String>>,
    issuer: String,
    metadata: ServerMetadata,
    legacy: bool,
    options: DiscoverOptions,
) -> Result<Discovery, OauthError> {
    if let Some(types) = &metadata.response_types_supported
        && !options.machine
        && !types.iter().any(|t| t == "code")
    {
        return Err(OauthError::Discovery(
            "the authorization server does not support the code flow".into(),
        ));
    }
    match &metadata.code_challenge_methods_supported {
        _ if options.machine => {}
        Some(methods) if !methods.iter().any(|m| m == "S256") => {
            return Err(OauthError::PkceUnsupported);
        }
        None if !legacy && !options.lenient_pkce => return Err(OauthError::PkceUnsupported),
        _ => {}
    }
    let authorization_endpoint =
        endpoint("authorization", metadata.authorization_endpoint.as_deref())?;
    if authorization_endpoint.is_none() && !options.machine {
        return Err(OauthError::BadEndpoint("authorization"));
    }
    let token_endpoint = endpoint("token", metadata.token_endpoint.as_deref())?
        .ok_or(OauthError::BadEndpoint("token"))?;
    let registration_endpoint =
        endpoint("registration", metadata.registration_endpoint.as_deref())?;
    let revocation_endpoint = endpoint("revocation", metadata.revocation_endpoint.as_deref())?;
    Ok(Discovery {
        resource,
        prm_scopes,
        server: AuthorizationServer {
            issuer,
            token_endpoint: token_endpoint.to_string(),
            revocation_endpoint: revocation_endpoint.map(|u| u.to_string()),
            token_endpoint_auth_methods: metadata.token_endpoint_auth_methods_supported,
            signing_algs: metadata.token_endpoint_auth_signing_alg_values_supported,
            iss_parameter_supported: metadata.authorization_response_iss_parameter_supported,
            legacy,
            synthesized: false,
        },
        authorization_endpoint,
        registration_endpoint,
        scopes_supported: metadata.scopes_supported,
        client_id_metadata_document_supported: metadata.client_id_metadata_document_supported,
    })
}

/// An advertised endpoint: absent is fine, anything but an absolute http(s) URL without
/// credentials is refused (`javascript:`, `data:` and the like never reach a browser), and so
/// is plain http except on a loopback host. The guarded client would refuse such a token,
/// registration or revocation endpoint when contacted, but the authorization endpoint goes to
/// the user's browser, which no outbound rule covers: an http one would expose the request
/// (and the code in the reply) on the network.
fn endpoint(name: &'static str, value: Option<&str>) -> Result<Option<Url>, OauthError> {
    let Some(value) = value else { return Ok(None) };
    let url = Url::parse(value).map_err(|_| OauthError::BadEndpoint(name))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(OauthError::BadEndpoint(name));
    }
    if url.scheme() == "http" && !net::is_loopback_host(&url) {
        return Err(OauthError::InsecureEndpoint(name));
    }
    Ok(Some(url))
}

/// GET a JSON document. `Ok(None)` when the server answers with a non-success status (the
/// caller tries the next candidate); errors for refused or failed requests and bad bodies.
async fn fetch_json(
    http: &GuardedClient,
    url: &Url,
) -> Result<Option<serde_json::Value>, OauthError> {
    let request = http
        .request(reqwest::Method::GET, url.clone())
        .timeout(METADATA_TIMEOUT)
        .header(ACCEPT, "application/json")
        .header("mcp-protocol-version", MCP_PROTOCOL_VERSION);
    let response = http.send(request).await?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let body = net::read_body_capped(response, net::OAUTH_JSON_LIMIT).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|_| OauthError::Discovery(format!("{url} did not answer with JSON")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_must_cover_the_server_url() {
        let server = Url::parse("https://mcp.example.com/v1/mcp").unwrap();
        assert!(resource_covers("https://mcp.example.com/v1/mcp", &server));
        assert!(resource_covers("https://mcp.example.com/v1", &server));
        assert!(resource_covers("https://mcp.example.com", &server));
        assert!(resource_covers("https://MCP.example.com/", &server));
        assert!(
            !resource_covers("https://mcp.example.com/v", &server),
            "segment-wise prefix only"
        );
        assert!(!resource_covers(
            "https://other.example.com/v1/mcp",
            &server
        ));
        assert!(!resource_covers("http://mcp.example.com/v1/mcp", &server));
        assert!(!resource_covers(
            "https://mcp.example.com/v1/mcp#x",
            &server
        ));
        assert!(!resource_covers(
            "https://mcp.example.com/v1/mcp/more",
            &server
        ));
    }

    #[test]
    fn metadata_urls_follow_the_specification_order() {
        let urls = |issuer: &str| -> Vec<String> {
            server_metadata_urls(&Url::parse(issuer).unwrap())
                .unwrap()
                .iter()
                .map(Url::to_string)
                .collect()
        };
        assert_eq!(
            urls("https://auth.example.com/tenant1"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("https://auth.example.com/"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn endpoints_must_be_https_except_on_loopback() {
        for name in ["authorization", "token", "registration", "revocation"] {
            for insecure in [
                "http://as.example/authorize",
                "http://10.0.0.1/token",
                "http://localhost.example/token",
                "HTTP://AS.EXAMPLE/authorize",
            ] {
                assert!(
                    matches!(
                        endpoint(name, Some(insecure)),
                        Err(OauthError::InsecureEndpoint(n)) if n == name
                    ),
                    "{name}: {insecure}"
                );
            }
            for allowed in [
                "https://as.example/authorize",
                "http://127.0.0.1:8080/token",
                "http://localhost/authorize",
                "http://auth.localhost:9000/token",
                "http://[::1]/authorize",
            ] {
                assert_eq!(
                    endpoint(name, Some(allowed)).unwrap().map(String::from),
                    Some(Url::parse(allowed).unwrap().to_string()),
                    "{name}: {allowed}"
                );
            }
        }
        let error = endpoint("authorization", Some("http://as.example/authorize")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the authorization server advertises a plain http authorization endpoint; \
             https is required except on loopback hosts"
        );
        assert!(!error.is_transient());
    }

    fn metadata(authorization: &str, token: &str) -> ServerMetadata {
        ServerMetadata {
            issuer: Some("https://as.example".into()),
            authorization_endpoint: Some(authorization.into()),
            token_endpoint: Some(token.into()),
            registration_endpoint: None,
            revocation_endpoint: None,
            scopes_supported: None,
            response_types_supported: None,
            code_challenge_methods_supported: Some(vec!["S256".into()]),
            token_endpoint_auth_methods_supported: None,
            token_endpoint_auth_signing_alg_values_supported: None,
            client_id_metadata_document_supported: false,
            authorization_response_iss_parameter_supported: false,
        }
    }

    #[test]
    fn a_machine_client_needs_only_a_token_endpoint() {
        let machine_only = || ServerMetadata {
            authorization_endpoint: None,
            code_challenge_methods_supported: None,
            response_types_supported: Some(vec!["token".into()]),
            token_endpoint_auth_signing_alg_values_supported: Some(vec!["ES256".into()]),
            ..metadata("https://as.example/authorize", "https://as.example/token")
        };
        let assemble_for = |machine| {
            assemble(
                "https://mcp.example/mcp".into(),
                None,
                "https://as.example".into(),
                machine_only(),
                false,
                DiscoverOptions {
                    lenient_pkce: false,
                    machine,
                },
            )
        };
        let found = assemble_for(true).unwrap();
        assert_eq!(found.authorization_endpoint, None);
        assert_eq!(found.server.token_endpoint, "https://as.example/token");
        assert_eq!(found.server.signing_algs, Some(vec!["ES256".to_owned()]));
        // The same metadata cannot serve a user's flow.
        assert!(assemble_for(false).is_err());
    }

    #[test]
    fn discovery_refuses_plain_http_endpoints_on_other_hosts() {
        let assembled = |metadata| {
            assemble(
                "https://mcp.example/mcp".into(),
                None,
                "https://as.example".into(),
                metadata,
                false,
                DiscoverOptions::default(),
            )
        };
        assert!(matches!(
            assembled(metadata(
                "http://as.example/authorize",
                "https://as.example/token"
            )),
            Err(OauthError::InsecureEndpoint("authorization"))
        ));
        assert!(matches!(
            assembled(metadata(
                "https://as.example/authorize",
                "http://as.example/token"
            )),
            Err(OauthError::InsecureEndpoint("token"))
        ));
        let mut with_registration = metadata("https://as.example/a", "https://as.example/t");
        with_registration.registration_endpoint = Some("http://as.example/register".into());
        assert!(matches!(
            assembled(with_registration),
            Err(OauthError::InsecureEndpoint("registration"))
        ));
        let mut with_revocation = metadata("https://as.example/a", "https://as.example/t");
        with_revocation.revocation_endpoint = Some("http://as.example/revoke".into());
        assert!(matches!(
            assembled(with_revocation),
            Err(OauthError::InsecureEndpoint("revocation"))
        ));
        let discovery = assembled(metadata(
            "http://127.0.0.1:9000/authorize",
            "http://localhost:9000/token",
        ))
        .unwrap();
        assert_eq!(
            discovery.authorization_endpoint.unwrap().as_str(),
            "http://127.0.0.1:9000/authorize"
        );
        assert_eq!(
            discovery.server.token_endpoint,
            "http://localhost:9000/token"
        );
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        assert!(endpoint("authorization", Some("javascript:alert(1)")).is_err());
        assert!(endpoint("authorization", Some("data:text/html,hi")).is_err());
        assert!(endpoint("authorization", Some("file:///etc/passwd")).is_err());
        assert!(endpoint("authorization", Some("https://u:p@as.example/authorize")).is_err());
        assert!(
            endpoint("authorization", Some("https://as.example/authorize"))
                .unwrap()
                .is_some()
        );
        assert!(endpoint("authorization", None).unwrap().is_none());
    }
}
