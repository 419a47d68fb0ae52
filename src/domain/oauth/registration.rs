//! Client registration, in the specification's priority: the server's pre-registered client,
//! else a Client ID Metadata Document, else Dynamic Client Registration (RFC 7591).
//!
//! Registrations are bound to the authorization server that issued them: the stored
//! registration carries its issuer and redirect URI, and a different issuer or redirect URI
//! means a fresh registration. A pre-registered client is bound to the authorization server it
//! was first used with (`mcp_servers.oauth_client_issuer`) and is never sent to another one.
//! Client secrets are sealed and never logged.
//!
//! A Client ID Metadata Document makes Switchboard's client id valid at every authorization
//! server, which opens a mix-up: hostile metadata could name a legitimate server's
//! authorization endpoint and its own token endpoint, and receive that server's code and
//! verifier. So a metadata-document client is only used with an authorization server that
//! promises RFC 9207 `iss` in its responses, which the callback then requires and compares;
//! with any other server Switchboard registers dynamically (a client id valid there alone).

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::discovery::Discovery;
use super::{OauthError, RegistrationKind, assertion};
use crate::crypto::{SealContext, Secret};
use crate::db::models::{FlowRow, McpServerRow, OauthGrantRow, RegistrationRow};
use crate::db::sealed;
use crate::domain::Context;
use crate::net;

const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(10);

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic with id and secret.
    Basic,
    /// Id and secret in the form body.
    Post,
    /// Public client: the id in the body, no secret.
    None,
    /// A signed assertion (RFC 7523) instead of a secret; only for a machine client.
    PrivateKeyJwt,
}

impl AuthMethod {
    fn parse(text: &str) -> Option<AuthMethod> {
        match text {
            "client_secret_basic" => Some(AuthMethod::Basic),
            "client_secret_post" => Some(AuthMethod::Post),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }

    /// The method's name in metadata and registrations.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Basic => "client_secret_basic",
            AuthMethod::Post => "client_secret_post",
            AuthMethod::None => "none",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// A client ready to talk to the token endpoint.
#[derive(Clone, Debug)]
pub struct Client {
    /// How it was registered.
    pub kind: RegistrationKind,
    /// Client id.
    pub client_id: String,
    /// Client secret, for confidential clients.
    pub client_secret: Option<Secret>,
    /// How it authenticates at the token endpoint.
    pub auth_method: AuthMethod,
    /// The signed assertion for `private_key_jwt`, made for one request.
    pub assertion: Option<Secret>,
}

/// What is stored (sealed) about a registration: on a flow while it is pending, in the server's
/// registrations once the flow succeeded.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredClient {
    kind: RegistrationKind,
    issuer: String,
    redirect_uri: String,
    client_id: String,
    client_secret: Option<String>,
    token_endpoint_auth_method: Option<String>,
}

/// The client to use for a new flow, and the registration to keep with the flow (none for a
/// pre-registered client, whose secret stays on the server row). `reusable` are registrations
/// kept from earlier: a dynamic one made with this issuer for this redirect URI is reused.
// Traced only when spans are exported (`crate::telemetry::SPANS`); no argument is recorded.
#[tracing::instrument(target = "switchboard::spans", name = "oauth.client", skip_all, fields(mcp_server.id = %server.id.0))]
pub async fn client_for_flow(
    ctx: &Context,
    server: &McpServerRow,
    reusable: &[StoredClient],
    discovery: &Discovery,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Result<(Client, Option<StoredClient>), OauthError> {
    let supported = discovery.server.token_endpoint_auth_methods.as_deref();
    if let Some(client) = pre_registered(ctx, server, supported)? {
        check_binding(server, &discovery.server.issuer)?;
        return Ok((client, None));
    }
    if discovery.client_id_metadata_document_supported
        && let Some(document) = metadata_document_url(ctx)
    {
        if discovery.server.iss_parameter_supported {
            let stored = StoredClient {
                kind: RegistrationKind::MetadataDocument,
                issuer: discovery.server.issuer.clone(),
                redirect_uri: redirect_uri.to_owned(),
                client_id: document.to_string(),
                client_secret: None,
                token_endpoint_auth_method: Some("none".into()),
            };
            let client = dynamic_client(&stored, supported);
            return Ok((client, Some(stored)));
        }
        tracing::info!(
            mcp_server.id = %server.id.0,
            issuer = %discovery.server.issuer,
            "the authorization server accepts client metadata documents but does not promise \
             RFC 9207 iss; registering a client of its own instead"
        );
    }
    // Reuse a dynamic registration made with this issuer for this redirect URI.
    if let Some(stored) = reusable.iter().find(|stored| {
        stored.kind == RegistrationKind::Dynamic
            && stored.issuer == discovery.server.issuer
            && stored.redirect_uri == redirect_uri
    }) {
        return Ok((dynamic_client(stored, supported), Some(stored.clone())));
    }
    let Some(endpoint) = &discovery.registration_endpoint else {
        return Err(OauthError::NoRegistration);
    };
    let stored = register(
        ctx,
        endpoint,
        &discovery.server.issuer,
        redirect_uri,
        scope,
        supported,
    )
    .await?;
    Ok((dynamic_client(&stored, supported), Some(stored)))
}

/// A pre-registered client goes only to the authorization server it is bound to.
fn check_binding(server: &McpServerRow, issuer: &str) -> Result<(), OauthError> {
    match &server.oauth_client_issuer {
        Some(bound) if bound != issuer => Err(OauthError::ClientBoundElsewhere {
            bound: bound.clone(),
            found: issuer.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The client of an existing grant (for refresh and revocation): the pre-registered client,
/// or `registration`, the server's registration with the grant's issuer.
pub fn client_of_grant(
    ctx: &Context,
    server: &McpServerRow,
    grant: &OauthGrantRow,
    registration: Option<&RegistrationRow>,
    supported: Option<&[String]>,
) -> Result<Client, OauthError> {
    match grant.registration_kind {
        Some(RegistrationKind::PreRegistered) => {
            // A grant made with the pre-registered client before it was bound, or with another
            // issuer than the binding, never gets the secret.
            let issuer = grant.issuer.as_deref().ok_or(OauthError::InvalidClient)?;
            if server.oauth_client_issuer.as_deref() != Some(issuer) {
                return Err(OauthError::InvalidClient);
            }
            pre_registered(ctx, server, supported)?.ok_or(OauthError::InvalidClient)
        }
        Some(RegistrationKind::MetadataDocument | RegistrationKind::Dynamic) => {
            let stored = registration
                .filter(|r| Some(r.issuer.as_str()) == grant.issuer.as_deref())
                .and_then(|r| open_registration(ctx, r))
                .ok_or(OauthError::InvalidClient)?;
            Ok(dynamic_client(&stored, supported))
        }
        _ => Err(OauthError::NotAuthorized),
    }
}

/// The client of a pending flow (for its code exchange).
pub fn client_of_flow(
    ctx: &Context,
    server: &McpServerRow,
    flow: &FlowRow,
    issuer: &str,
    supported: Option<&[String]>,
) -> Result<Client, OauthError> {
    match flow.registration_kind.as_str() {
        "pre_registered" => {
            if server.oauth_client_issuer.as_deref() != Some(issuer) {
                return Err(OauthError::InvalidClient);
            }
            pre_registered(ctx, server, supported)?.ok_or(OauthError::InvalidClient)
        }
        _ => {
            let stored = open_on_flow(ctx, flow).ok_or(OauthError::InvalidClient)?;
            Ok(dynamic_client(&stored, supported))
        }
    }
}

/// The URL of Switchboard's own Client ID Metadata Document, when it can serve one: the
/// configured URL, else `{public_url}/oauth/client-metadata.json` when the public URL is https.
pub fn metadata_document_url(ctx: &Context) -> Option<Url> {
    if let Some(url) = &ctx.settings.client_metadata_url {
        return Some(url.clone());
    }
    ctx.settings
        .public_url_is_https()
        .then(|| ctx.settings.public_endpoint("/oauth/client-metadata.json"))
}

fn pre_registered(
    ctx: &Context,
    server: &McpServerRow,
    supported: Option<&[String]>,
) -> Result<Option<Client>, OauthError> {
    let Some(client_id) = &server.oauth_client_id else {
        return Ok(None);
    };
    let client_secret = match &server.oauth_client_secret_sealed {
        None => None,
        Some(sealed) => {
            let row_id = server.id.0.to_string();
            let seal_ctx = sealed::SERVER_CLIENT_SECRET.context(&row_id);
            Some(
                ctx.keys
                    .open_str(sealed, seal_ctx)
                    .map_err(|_| OauthError::UnreadableClientSecret)?,
            )
        }
    };
    let auth_method = choose_auth_method(client_secret.is_some(), None, supported);
    Ok(Some(Client {
        kind: RegistrationKind::PreRegistered,
        client_id: client_id.clone(),
        client_secret,
        auth_method,
        assertion: None,
    }))
}

/// The machine client of a client-credentials server, ready for one token request at
/// `authorization_server`: with a private key, a fresh `private_key_jwt` assertion (`aud` the
/// issuer, a minute to live, a new `jti`) in an algorithm the server advertises; otherwise its
/// secret, Basic or in the body as the server accepts. The client goes only to the
/// authorization server it is bound to.
pub fn machine_client(
    ctx: &Context,
    server: &McpServerRow,
    authorization_server: &super::AuthorizationServer,
) -> Result<Client, OauthError> {
    check_binding(server, &authorization_server.issuer)?;
    let client_id = server
        .oauth_client_id
        .clone()
        .ok_or(OauthError::InvalidClient)?;
    let supported = authorization_server.token_endpoint_auth_methods.as_deref();
    let accepts = |method: &str| supported.is_none_or(|list| list.iter().any(|m| m == method));
    let row_id = server.id.0.to_string();
    if let Some(sealed_key) = &server.oauth_client_key_sealed
        && (accepts("private_key_jwt") || server.oauth_client_secret_sealed.is_none())
    {
        let pem = ctx
            .keys
            .open_str(sealed_key, sealed::SERVER_CLIENT_KEY.context(&row_id))
            .map_err(|_| {
                OauthError::ClientKey("it can no longer be read; enter it again".into())
            })?;
        let key = assertion::PrivateKey::from_pem(pem.expose())
            .map_err(|e| OauthError::ClientKey(e.to_string()))?;
        assertion::choose(
            key.algorithm(),
            authorization_server.signing_algs.as_deref(),
        )
        .map_err(|e| OauthError::ClientKey(e.to_string()))?;
        let signed = assertion::client_assertion(
            &key,
            &client_id,
            &authorization_server.issuer,
            crate::db::now().timestamp(),
            assertion::DEFAULT_LIFETIME_SECS,
        )
        .map_err(|e| OauthError::ClientKey(e.to_string()))?;
        return Ok(Client {
            kind: RegistrationKind::ClientCredentials,
            client_id,
            client_secret: None,
            auth_method: AuthMethod::PrivateKeyJwt,
            assertion: Some(Secret::new(signed)),
        });
    }
    let mut client = pre_registered(ctx, server, supported)?.ok_or(OauthError::InvalidClient)?;
    client.kind = RegistrationKind::ClientCredentials;
    Ok(client)
}

fn dynamic_client(stored: &StoredClient, supported: Option<&[String]>) -> Client {
    Client {
        kind: stored.kind,
        client_id: stored.client_id.clone(),
        client_secret: stored.client_secret.clone().map(Secret::new),
        auth_method: choose_auth_method(
            stored.client_secret.is_some(),
            stored.token_endpoint_auth_method.as_deref(),
            supported,
        ),
        assertion: None,
    }
}

/// The token endpoint authentication: the registered method when the server accepts it,
/// else Basic, then Post, for a client with a secret; `none` without one.
pub fn choose_auth_method(
    has_secret: bool,
    registered: Option<&str>,
    supported: Option<&[String]>,
) -> AuthMethod {
    if !has_secret {
        return AuthMethod::None;
    }
    let accepts =
        |method: AuthMethod| supported.is_none_or(|list| list.iter().any(|m| m == method.as_str()));
    if let Some(method) = registered.and_then(AuthMethod::parse)
        && method != AuthMethod::None
        && accepts(method)
    {
        return method;
    }
    if accepts(AuthMethod::Basic) {
        AuthMethod::Basic
    } else if accepts(AuthMethod::Post) {
        AuthMethod::Post
    } else {
        AuthMethod::Basic
    }
}

async fn register(
    ctx: &Context,
    endpoint: &Url,
    issuer: &str,
    redirect_uri: &str,
    scope: Option<&str>,
    supported: Option<&[String]>,
) -> Result<StoredClient, OauthError> {
    // Ask for a confidential client when the server accepts one: Switchboard keeps secrets
    // sealed server-side.
    let method = match supported {
        None => AuthMethod::Basic,
        Some(list) if list.iter().any(|m| m == "client_secret_basic") => AuthMethod::Basic,
        Some(list) if list.iter().any(|m| m == "client_secret_post") => AuthMethod::Post,
        Some(_) => AuthMethod::None,
    };
    let loopback_redirect = Url::parse(redirect_uri).is_ok_and(|u| net::is_loopback_host(&u));
    let mut body = json!({
        "client_name": "Switchboard",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method.as_str(),
        "application_type": if loopback_redirect { "native" } else { "web" },
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let request = ctx
        .http
        .request(reqwest::Method::POST, endpoint.clone())
        .timeout(REGISTRATION_TIMEOUT)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(body.to_string());
    let response = ctx.http.send(request).await?;
    let status = response.status();
    let bytes = net::read_body_capped(response, net::OAUTH_JSON_LIMIT).await?;
    #[derive(Deserialize)]
    struct Registered {
        client_id: Option<String>,
        client_secret: Option<String>,
        token_endpoint_auth_method: Option<String>,
        error: Option<String>,
    }
    let registered: Option<Registered> = serde_json::from_slice(&bytes).ok();
    if !status.is_success() {
        let code = registered
            .and_then(|r| r.error)
            .unwrap_or_else(|| status.as_u16().to_string());
        return Err(OauthError::Registration(format!(
            "the registration endpoint answered {code}"
        )));
    }
    let registered = registered
        .ok_or_else(|| OauthError::Registration("the registration response is not JSON".into()))?;
    let client_id = registered
        .client_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            OauthError::Registration("the registration response has no client_id".into())
        })?;
    Ok(StoredClient {
        kind: RegistrationKind::Dynamic,
        issuer: issuer.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        client_id,
        client_secret: registered.client_secret.filter(|s| !s.is_empty()),
        token_endpoint_auth_method: registered
            .token_endpoint_auth_method
            .or_else(|| Some(method.as_str().to_owned())),
    })
}

fn seal(
    ctx: &Context,
    seal_ctx: SealContext<'_>,
    stored: &StoredClient,
) -> Result<String, OauthError> {
    let json =
        serde_json::to_string(stored).map_err(|e| OauthError::Registration(e.to_string()))?;
    Ok(ctx.keys.seal_str(&json, seal_ctx))
}

fn open(ctx: &Context, sealed: &str, seal_ctx: SealContext<'_>) -> Option<StoredClient> {
    let json = ctx.keys.open_str(sealed, seal_ctx).ok()?;
    serde_json::from_str(json.expose()).ok()
}

/// A registration row for a stored client: bound to the client's issuer, sealed under the new
/// row's id.
pub fn registration_row(
    ctx: &Context,
    server_id: uuid::Uuid,
    stored: &StoredClient,
    now: crate::db::DbTime,
) -> Result<RegistrationRow, OauthError> {
    let id = uuid::Uuid::now_v7();
    let row_id = id.to_string();
    Ok(RegistrationRow {
        id: crate::db::DbUuid(id),
        server_id: crate::db::DbUuid(server_id),
        issuer: stored.issuer.clone(),
        kind: stored.kind,
        client_information_sealed: Some(seal(
            ctx,
            sealed::REGISTRATION_CLIENT.context(&row_id),
            stored,
        )?),
        token_endpoint_auth_method: stored.token_endpoint_auth_method.clone(),
        created_at: now,
        updated_at: now,
    })
}

/// Seal a registration for a flow row.
pub fn seal_on_flow(
    ctx: &Context,
    flow_id: uuid::Uuid,
    stored: &StoredClient,
) -> Result<String, OauthError> {
    let row_id = flow_id.to_string();
    seal(ctx, sealed::FLOW_CLIENT.context(&row_id), stored)
}

/// The client information of a registration; `None` when absent or unreadable (lost key),
/// which leads to a fresh registration.
pub fn open_registration(ctx: &Context, registration: &RegistrationRow) -> Option<StoredClient> {
    let sealed = registration.client_information_sealed.as_deref()?;
    let row_id = registration.id.0.to_string();
    open(ctx, sealed, sealed::REGISTRATION_CLIENT.context(&row_id))
        .filter(|stored| stored.issuer == registration.issuer)
}

/// The registration of a flow; `None` when absent or unreadable.
pub fn open_on_flow(ctx: &Context, flow: &FlowRow) -> Option<StoredClient> {
    let sealed = flow.client_information_sealed.as_deref()?;
    let row_id = flow.id.0.to_string();
    open(ctx, sealed, sealed::FLOW_CLIENT.context(&row_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_method_follows_registration_and_metadata() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            choose_auth_method(false, Some("client_secret_basic"), None),
            AuthMethod::None
        );
        assert_eq!(choose_auth_method(true, None, None), AuthMethod::Basic);
        assert_eq!(
            choose_auth_method(true, Some("client_secret_post"), None),
            AuthMethod::Post
        );
        assert_eq!(
            choose_auth_method(
                true,
                Some("client_secret_post"),
                Some(&list(&["client_secret_basic"]))
            ),
            AuthMethod::Basic
        );
        assert_eq!(
            choose_auth_method(true, None, Some(&list(&["client_secret_post"]))),
            AuthMethod::Post
        );
        assert_eq!(
            choose_auth_method(
                true,
                Some("client_secret_basic"),
                Some(&list(&["client_secret_basic", "client_secret_post"]))
            ),
            AuthMethod::Basic
        );
    }
}
