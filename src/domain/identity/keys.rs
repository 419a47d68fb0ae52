//! Signing keys of each issuer (one cache per issuer and key source, shared by its providers),
//! fetched through the guarded client and cached.
//!
//! Invariants:
//! - One fetch per provider at a time: callers wait on the provider's lock, and those who
//!   waited use what the fetch brought instead of fetching again.
//! - A token naming a key id the cache lacks may refresh the keys, at most once per
//!   [`REFRESH_INTERVAL`] per provider (the first fetch does not count), so tokens with made-up
//!   key ids cannot turn into a stream of requests to the provider.
//! - Every fetch is bounded: [`FETCH_TIMEOUT`] per request and [`FETCH_BUDGET`] for discovery
//!   plus key set, [`MAX_DOCUMENT_BYTES`] per body, [`super::jwt::MAX_KEYS`] keys. A failed
//!   fetch keeps the keys already cached; with none cached, the token is refused.
//! - Cached keys are fetched again after [`KEYS_MAX_AGE`], so a key the provider dropped stops
//!   being accepted; while the provider fails, the stale keys serve and it is asked again at
//!   most every [`REFRESH_INTERVAL`]. Without any keys, it is asked at most every
//!   [`RETRY_WITHOUT_KEYS`], and tokens are refused meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::ACCEPT;
use serde_json::Value;
use url::Url;

use super::jwt::{self, JwtError, VerifyingKey};
use super::provider::{KeySource, Provider};
use crate::net::{self, GuardedClient};

/// The least time between two refreshes of a provider's keys for unknown key ids.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How long fetched keys are used before they are fetched again.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// The least time between two attempts to fetch the keys of a provider none could be fetched
/// from yet.
pub const RETRY_WITHOUT_KEYS: Duration = Duration::from_secs(5);
/// The time one request to a provider may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The time discovery and the key set together may take.
pub const FETCH_BUDGET: Duration = Duration::from_secs(8);
/// Largest discovery document or key set, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The key cache of one provider.
#[derive(Default)]
pub struct ProviderKeys {
    state: tokio::sync::Mutex<KeyState>,
}

#[derive(Default)]
struct KeyState {
    keys: Option<Arc<Vec<VerifyingKey>>>,
    fetched_at: Option<Instant>,
    /// When the keys were last refreshed for an unknown key id.
    refreshed_at: Option<Instant>,
    /// When the last attempt (successful or not) was made.
    attempted_at: Option<Instant>,
}

/// Why the keys are wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Whatever is cached, fetched when nothing (fresh) is.
    Cached,
    /// A fresh set: a token named a key id the cached set lacks.
    Refresh,
}

impl ProviderKeys {
    /// The provider's keys. `Want::Refresh` fetches them again unless that happened less than
    /// [`REFRESH_INTERVAL`] ago; a fetch that fails keeps the cached keys.
    pub async fn get(
        &self,
        http: &GuardedClient,
        provider: &Provider,
        want: Want,
    ) -> Result<Arc<Vec<VerifyingKey>>, JwtError> {
        let asked_at = Instant::now();
        let mut state = self.state.lock().await;
        // Someone fetched while this caller waited: use that.
        if state.attempted_at.is_some_and(|at| at >= asked_at) {
            return state.keys.clone().ok_or_else(unavailable);
        }
        let attempted_within =
            |interval: Duration| state.attempted_at.is_some_and(|at| at.elapsed() < interval);
        // Stale keys are fetched again, but a provider that keeps failing is not asked on every
        // request: the stale keys serve meanwhile.
        let stale = state
            .fetched_at
            .is_none_or(|at| at.elapsed() >= KEYS_MAX_AGE)
            && !attempted_within(REFRESH_INTERVAL);
        let fetch = match (want, &state.keys) {
            // Nothing cached (the last fetch failed): retry, but not on every request.
            (_, None) => !attempted_within(RETRY_WITHOUT_KEYS),
            (Want::Cached, Some(_)) => stale,
            (Want::Refresh, Some(_)) => {
                stale
                    || state
                        .refreshed_at
                        .is_none_or(|at| at.elapsed() >= REFRESH_INTERVAL)
            }
        };
        if !fetch {
            return state.keys.clone().ok_or_else(unavailable);
        }
        if want == Want::Refresh && state.keys.is_some() {
            state.refreshed_at = Some(Instant::now());
        }
        let fetched = tokio::time::timeout(FETCH_BUDGET, fetch_keys(http, provider)).await;
        // After the fetch: whoever waited meanwhile uses its outcome.
        state.attempted_at = Some(Instant::now());
        match fetched {
            Ok(Ok(keys)) => {
                tracing::debug!(issuer = %provider.issuer, keys = keys.len(), "identity provider keys fetched");
                let keys = Arc::new(keys);
                state.keys = Some(keys.clone());
                state.fetched_at = Some(Instant::now());
                Ok(keys)
            }
            Ok(Err(error)) => {
                tracing::warn!(issuer = %provider.issuer, %error, "identity provider keys could not be fetched");
                state.keys.clone().ok_or(error)
            }
            Err(_) => {
                tracing::warn!(issuer = %provider.issuer, "identity provider keys took too long to fetch");
                state.keys.clone().ok_or_else(unavailable)
            }
        }
    }
}

fn unavailable() -> JwtError {
    JwtError::Keys("no keys could be fetched".to_owned())
}

/// Discover the key set URL if needed, then fetch and parse the key set.
async fn fetch_keys(
    http: &GuardedClient,
    provider: &Provider,
) -> Result<Vec<VerifyingKey>, JwtError> {
    let jwks_uri = match &provider.keys {
        KeySource::JwksUri(url) => url.clone(),
        KeySource::Discovery => discover(http, &provider.issuer).await?,
    };
    let document = fetch_json(http, &jwks_uri).await?;
    jwt::parse_key_set(&document)
}

/// The issuer's OpenID configuration, whose `issuer` must be the one configured.
pub(super) async fn discovery_document(
    http: &GuardedClient,
    issuer: &str,
) -> Result<Value, JwtError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let url = Url::parse(&url).map_err(|_| JwtError::Keys("bad discovery URL".to_owned()))?;
    let document = fetch_json(http, &url).await?;
    if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(JwtError::Keys(
            "the OpenID configuration names another issuer".to_owned(),
        ));
    }
    Ok(document)
}

/// The `jwks_uri` of the issuer's OpenID configuration.
async fn discover(http: &GuardedClient, issuer: &str) -> Result<Url, JwtError> {
    let document = discovery_document(http, issuer).await?;
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .and_then(|uri| Url::parse(uri).ok())
        .ok_or_else(|| JwtError::Keys("the OpenID configuration has no jwks_uri".to_owned()))?;
    if jwks_uri.scheme() != "https" && !net::is_loopback_host(&jwks_uri) {
        return Err(JwtError::Keys("the jwks_uri is not https".to_owned()));
    }
    Ok(jwks_uri)
}

async fn fetch_json(http: &GuardedClient, url: &Url) -> Result<Value, JwtError> {
    let failed = |what: &str| JwtError::Keys(format!("{}: {what}", url.path()));
    let request = http
        .request(reqwest::Method::GET, url.clone())
        .timeout(FETCH_TIMEOUT)
        .header(ACCEPT, "application/json");
    let response = http
        .send(request)
        .await
        .map_err(|e| failed(&e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(&format!("status {}", response.status().as_u16())));
    }
    let body = net::read_body_capped(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| failed(&e.to_string()))?;
    serde_json::from_slice(&body).map_err(|_| failed("not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ClientOptions, NetPolicy};
    use switchboard_testkit::fake_oidc::{Behaviour, FakeOidc, KeyAlg};

    fn client() -> GuardedClient {
        let policy = NetPolicy {
            allow_private_networks: true,
        };
        GuardedClient::new(policy, ClientOptions::default()).unwrap()
    }

    fn provider(idp: &FakeOidc) -> Provider {
        Provider {
            issuer: idp.issuer.clone(),
            keys: KeySource::Discovery,
            audience: "switchboard".into(),
            required_scope: None,
            subject_claim: "sub".into(),
            name_claim: None,
            memberships_claim: None,
            console: None,
        }
    }

    #[tokio::test]
    async fn refreshes_are_rate_limited_and_failures_keep_the_cached_keys() {
        let idp = FakeOidc::start(&[KeyAlg::Es256, KeyAlg::EdDsa]).await;
        let (http, provider, cache) = (client(), provider(&idp), ProviderKeys::default());
        let keys = cache.get(&http, &provider, Want::Cached).await.unwrap();
        assert_eq!(keys.len(), 2);
        cache.get(&http, &provider, Want::Cached).await.unwrap();
        assert_eq!(idp.jwks_fetches(), 1, "cached");

        // The first refresh goes out, even right after the first fetch; it fails, and the
        // cached keys stay in use.
        idp.set_behaviour(Behaviour::NotJson);
        let discoveries = || {
            idp.requests
                .all()
                .iter()
                .filter(|r| r.path.ends_with("openid-configuration"))
                .count()
        };
        let kept = cache.get(&http, &provider, Want::Refresh).await.unwrap();
        assert_eq!(kept, keys);
        assert_eq!(discoveries(), 2, "the refresh went out");
        assert_eq!(idp.jwks_fetches(), 1, "and stopped at discovery");
        idp.set_behaviour(Behaviour::Normal);
        cache.get(&http, &provider, Want::Refresh).await.unwrap();
        assert_eq!(discoveries(), 2, "no second refresh within the interval");
    }

    #[tokio::test]
    async fn without_keys_a_failing_provider_is_not_asked_on_every_request() {
        let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
        idp.set_behaviour(Behaviour::WrongIssuer);
        let (http, provider, cache) = (client(), provider(&idp), ProviderKeys::default());
        for _ in 0..3 {
            let error = cache
                .get(&http, &provider, Want::Refresh)
                .await
                .unwrap_err();
            assert!(matches!(error, JwtError::Keys(_)), "{error}");
        }
        let discoveries = idp
            .requests
            .all()
            .iter()
            .filter(|r| r.path.ends_with("openid-configuration"))
            .count();
        assert_eq!(discoveries, 1);
        assert_eq!(idp.jwks_fetches(), 0, "a wrong issuer stops at discovery");
    }
}
