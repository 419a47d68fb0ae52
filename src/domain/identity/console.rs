//! What the console needs to sign in with the providers that name a console client: their
//! public endpoints, read from the issuer's OpenID configuration through the guarded client.
//!
//! Invariants:
//! - Only public data leaves this module: issuer, display name, client id, scopes and the
//!   authorization, token and end-session endpoints. The console's client has no secret.
//! - The OpenID configuration must name the configured issuer, and its endpoints must be https
//!   (http only on loopback), without credentials or fragment; the token endpoint, which the
//!   console page's Content-Security-Policy names, also without query and made only of
//!   characters that cannot end or split a policy source. A provider whose configuration fails
//!   these checks is not offered.
//! - Discovery is cached per provider for [`ENDPOINTS_MAX_AGE`]; a failed fetch keeps what was
//!   cached, and a provider that cannot be read is asked again at most every
//!   [`super::keys::RETRY_WITHOUT_KEYS`]. Each fetch is bounded like the key fetches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::jwt::JwtError;
use super::keys::{FETCH_BUDGET, RETRY_WITHOUT_KEYS, discovery_document};
use super::provider::{ConsoleClient, Provider};
use crate::net::{self, GuardedClient};

/// How long a provider's endpoints are used before its OpenID configuration is read again.
pub const ENDPOINTS_MAX_AGE: Duration = Duration::from_secs(600);

/// A provider the console can sign in with, as the console is told about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsoleProvider {
    /// The issuer, which the console compares with the `iss` of the redirect back.
    pub issuer: String,
    /// The name on the sign-in button.
    pub display_name: String,
    /// The console's public client id at the provider.
    pub client_id: String,
    /// The scopes the console asks for.
    pub scopes: Vec<String>,
    /// Where the console sends the person to sign in.
    pub authorization_endpoint: String,
    /// Where the console redeems the code and renews the token.
    pub token_endpoint: String,
    /// Where the console may send the person to sign out at the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}

/// The endpoints read from a provider's OpenID configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    authorization: Url,
    token: Url,
    end_session: Option<Url>,
}

/// The cached endpoints of one provider's console client.
#[derive(Default)]
pub struct EndpointCache {
    state: tokio::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    endpoints: Option<Arc<Endpoints>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl EndpointCache {
    /// The provider's endpoints, read again when stale; `None` when they could never be read.
    pub async fn get(&self, http: &GuardedClient, issuer: &str) -> Option<Arc<Endpoints>> {
        self.get_within(http, issuer, ENDPOINTS_MAX_AGE).await
    }

    /// The provider's endpoints, read again when older than `max_age`.
    pub async fn get_within(
        &self,
        http: &GuardedClient,
        issuer: &str,
        max_age: Duration,
    ) -> Option<Arc<Endpoints>> {
        let mut state = self.state.lock().await;
        let fresh = state.fetched_at.is_some_and(|at| at.elapsed() < max_age);
        let retry_after = if state.endpoints.is_some() {
            super::keys::REFRESH_INTERVAL
        } else {
            RETRY_WITHOUT_KEYS
        };
        let attempted_lately = state
            .attempted_at
            .is_some_and(|at| at.elapsed() < retry_after);
        if fresh || attempted_lately {
            return state.endpoints.clone();
        }
        let fetched = tokio::time::timeout(FETCH_BUDGET, fetch_endpoints(http, issuer)).await;
        state.attempted_at = Some(Instant::now());
        match fetched {
            Ok(Ok(endpoints)) => {
                state.endpoints = Some(Arc::new(endpoints));
                state.fetched_at = Some(Instant::now());
            }
            Ok(Err(error)) => {
                tracing::warn!(issuer, %error, "the console endpoints of an identity provider could not be read");
            }
            Err(_) => {
                tracing::warn!(
                    issuer,
                    "the console endpoints of an identity provider took too long to read"
                );
            }
        }
        state.endpoints.clone()
    }
}

/// The console's description of `provider` with `endpoints`.
pub fn describe(
    provider: &Provider,
    client: &ConsoleClient,
    endpoints: &Endpoints,
) -> ConsoleProvider {
    ConsoleProvider {
        issuer: provider.issuer.clone(),
        display_name: client.display_name.clone(),
        client_id: client.client_id.clone(),
        scopes: client.scopes.clone(),
        authorization_endpoint: endpoints.authorization.to_string(),
        token_endpoint: endpoints.token.to_string(),
        end_session_endpoint: endpoints.end_session.as_ref().map(Url::to_string),
    }
}

async fn fetch_endpoints(http: &GuardedClient, issuer: &str) -> Result<Endpoints, JwtError> {
    let document = discovery_document(http, issuer).await?;
    endpoints_of(&document).map_err(|problem| JwtError::Keys(problem.to_owned()))
}

/// The endpoints of an OpenID configuration whose issuer was checked.
fn endpoints_of(document: &Value) -> Result<Endpoints, &'static str> {
    let authorization = endpoint(document, "authorization_endpoint")
        .ok_or("the OpenID configuration has no usable authorization_endpoint")?;
    let token = endpoint(document, "token_endpoint")
        .filter(|url| url.query().is_none() && is_policy_source(url.as_str()))
        .ok_or("the OpenID configuration has no usable token_endpoint")?;
    Ok(Endpoints {
        authorization,
        token,
        end_session: endpoint(document, "end_session_endpoint"),
    })
}

/// A field of the configuration that is an https URL (http on loopback) without credentials
/// or fragment.
fn endpoint(document: &Value, field: &str) -> Option<Url> {
    let url = Url::parse(document.get(field)?.as_str()?).ok()?;
    let secure = url.scheme() == "https" || (url.scheme() == "http" && net::is_loopback_host(&url));
    let plain = url.username().is_empty() && url.password().is_none() && url.fragment().is_none();
    (secure && plain && url.host().is_some() && url.as_str().len() <= 2048).then_some(url)
}

/// Whether `url` can stand as a Content-Security-Policy source as it is.
fn is_policy_source(url: &str) -> bool {
    url.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                ':' | '/'
                    | '.'
                    | '-'
                    | '_'
                    | '~'
                    | '%'
                    | '['
                    | ']'
                    | '@'
                    | '!'
                    | '$'
                    | '&'
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | '='
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_must_be_secure_plain_urls_and_the_token_endpoint_a_policy_source() {
        let good = json!({
            "authorization_endpoint": "https://id.example.com/authorize?tenant=a",
            "token_endpoint": "https://id.example.com/token",
            "end_session_endpoint": "https://id.example.com/logout",
        });
        let endpoints = endpoints_of(&good).unwrap();
        assert_eq!(endpoints.token.as_str(), "https://id.example.com/token");
        assert!(endpoints.end_session.is_some());
        let loopback = json!({
            "authorization_endpoint": "http://127.0.0.1:9/authorize",
            "token_endpoint": "http://127.0.0.1:9/token",
            "end_session_endpoint": "javascript:alert(1)",
        });
        assert_eq!(endpoints_of(&loopback).unwrap().end_session, None);

        for (field, value) in [
            (
                "authorization_endpoint",
                json!("http://id.example.com/authorize"),
            ),
            ("authorization_endpoint", json!(null)),
            (
                "authorization_endpoint",
                json!("https://user:pw@id.example.com/a"),
            ),
            ("token_endpoint", json!("https://id.example.com/token?x=1")),
            (
                "token_endpoint",
                json!("https://id.example.com/t;script-src"),
            ),
            ("token_endpoint", json!("https://id.example.com/t,x")),
            ("token_endpoint", json!("https://id.example.com/t'x")),
            ("token_endpoint", json!("https://id.example.com/t#f")),
            ("token_endpoint", json!(42)),
        ] {
            let mut document = good.clone();
            document[field] = value.clone();
            assert!(endpoints_of(&document).is_err(), "{field}: {value}");
        }
    }
}
