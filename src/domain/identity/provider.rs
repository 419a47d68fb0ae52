//! The trusted identity providers an operator configures, read from a JSON file.
//!
//! The file holds a list of providers:
//!
//! ```json
//! [{
//!   "issuer": "https://id.example.com",
//!   "audience": "switchboard",
//!   "jwks_uri": "https://id.example.com/keys",
//!   "required_scope": "switchboard",
//!   "subject_claim": "sub",
//!   "name_claim": "name",
//!   "memberships_claim": "switchboard_workspaces"
//! }]
//! ```
//!
//! `issuer` and `audience` are required. Without `jwks_uri` the keys are found through OpenID
//! discovery (`{issuer}/.well-known/openid-configuration`). Unknown fields are refused, so a
//! misspelt setting stops start-up instead of being ignored.

use serde::Deserialize;
use url::Url;

use crate::net;

/// Most providers in one file.
pub const MAX_PROVIDERS: usize = 16;
/// Largest providers file, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Where a provider's signing keys are found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The `jwks_uri` of the issuer's OpenID configuration.
    Discovery,
    /// A JWK Set URL given by the operator.
    JwksUri(Url),
}

/// A trusted identity provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// The issuer, compared exactly with a token's `iss`.
    pub issuer: String,
    /// Where the signing keys are found.
    pub keys: KeySource,
    /// The audience a token's `aud` must hold.
    pub audience: String,
    /// A scope the token must carry (`scope` or `scp`).
    pub required_scope: Option<String>,
    /// The claim naming the user (default `sub`).
    pub subject_claim: String,
    /// The claim giving a new user's name (else the subject is used).
    pub name_claim: Option<String>,
    /// The claim mapping workspaces to roles, applied on each sign-in; `None` leaves
    /// memberships alone.
    pub memberships_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    issuer: String,
    audience: String,
    jwks_uri: Option<String>,
    required_scope: Option<String>,
    subject_claim: Option<String>,
    name_claim: Option<String>,
    memberships_claim: Option<String>,
}

/// Parse and check the providers file's text. Errors name the provider (by position, from 1)
/// and the field.
pub fn parse_providers(text: &str) -> Result<Vec<Provider>, String> {
    let raw: Vec<RawProvider> =
        serde_json::from_str(text).map_err(|e| format!("is not a JSON list of providers: {e}"))?;
    if raw.len() > MAX_PROVIDERS {
        return Err(format!("lists more than {MAX_PROVIDERS} providers"));
    }
    let mut providers: Vec<Provider> = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let at = |field: &str, problem: &str| format!("provider {}: {field} {problem}", index + 1);
        let issuer = raw.issuer.trim().to_owned();
        check_url(&issuer).map_err(|p| at("issuer", &p))?;
        let keys = match raw.jwks_uri {
            None => KeySource::Discovery,
            Some(uri) => {
                check_url(uri.trim()).map_err(|p| at("jwks_uri", &p))?;
                KeySource::JwksUri(
                    Url::parse(uri.trim()).map_err(|e| at("jwks_uri", &e.to_string()))?,
                )
            }
        };
        let audience = raw.audience.trim().to_owned();
        if audience.is_empty() || audience.len() > 256 {
            return Err(at("audience", "must be 1 to 256 characters"));
        }
        let claim = |field: &str, value: Option<String>| -> Result<Option<String>, String> {
            match value.map(|v| v.trim().to_owned()) {
                None => Ok(None),
                Some(v) if !v.is_empty() && v.len() <= 128 => Ok(Some(v)),
                Some(_) => Err(at(field, "must be 1 to 128 characters")),
            }
        };
        let required_scope = claim("required_scope", raw.required_scope)?;
        if required_scope
            .as_deref()
            .is_some_and(|s| s.contains(char::is_whitespace))
        {
            return Err(at("required_scope", "must be a single scope"));
        }
        let subject_claim =
            claim("subject_claim", raw.subject_claim)?.unwrap_or_else(|| "sub".to_owned());
        let provider = Provider {
            issuer,
            keys,
            audience,
            required_scope,
            subject_claim,
            name_claim: claim("name_claim", raw.name_claim)?,
            memberships_claim: claim("memberships_claim", raw.memberships_claim)?,
        };
        if providers
            .iter()
            .any(|p| p.issuer == provider.issuer && p.audience == provider.audience)
        {
            return Err(at("issuer", "and audience repeat an earlier provider's"));
        }
        providers.push(provider);
    }
    Ok(providers)
}

/// An issuer or key set URL: absolute http(s) without credentials, query or fragment, and
/// https unless the host is loopback.
fn check_url(raw: &str) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an absolute http(s) URL".to_owned());
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err("must not carry credentials, a query or a fragment".to_owned());
    }
    if url.scheme() == "http" && !net::is_loopback_host(&url) {
        return Err("must be https (http only on loopback)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_provider_uses_discovery_and_sub() {
        let providers =
            parse_providers(r#"[{"issuer": "https://id.example.com", "audience": "sb"}]"#).unwrap();
        assert_eq!(
            providers,
            vec![Provider {
                issuer: "https://id.example.com".into(),
                keys: KeySource::Discovery,
                audience: "sb".into(),
                required_scope: None,
                subject_claim: "sub".into(),
                name_claim: None,
                memberships_claim: None,
            }]
        );
        let full = parse_providers(
            r#"[{"issuer": "http://127.0.0.1:9/t", "audience": "sb",
                 "jwks_uri": "http://127.0.0.1:9/keys", "required_scope": "api",
                 "subject_claim": "oid", "name_claim": "email",
                 "memberships_claim": "switchboard_workspaces"}]"#,
        )
        .unwrap();
        assert_eq!(
            full[0].keys,
            KeySource::JwksUri(Url::parse("http://127.0.0.1:9/keys").unwrap())
        );
        assert_eq!(full[0].subject_claim, "oid");
        assert!(parse_providers("[]").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_provider_and_the_field() {
        let cases = [
            (r#"[{"issuer": "https://a"}]"#, "audience"),
            (r#"[{"audience": "x"}]"#, "issuer"),
            (
                r#"[{"issuer": "http://id.example.com", "audience": "x"}]"#,
                "issuer",
            ),
            (r#"[{"issuer": "not a url", "audience": "x"}]"#, "issuer"),
            (r#"[{"issuer": "https://a", "audience": " "}]"#, "audience"),
            (
                r#"[{"issuer": "https://a", "audience": "x", "jwks_uri": "ftp://a"}]"#,
                "jwks_uri",
            ),
            (
                r#"[{"issuer": "https://a", "audience": "x", "subject_claim": ""}]"#,
                "subject_claim",
            ),
            (
                r#"[{"issuer": "https://a", "audience": "x", "required_scope": "a b"}]"#,
                "required_scope",
            ),
            (
                r#"[{"issuer": "https://a", "audience": "x", "audiense": "y"}]"#,
                "audiense",
            ),
            (
                r#"[{"issuer": "https://a", "audience": "x"}, {"issuer": "https://a", "audience": "x"}]"#,
                "provider 2",
            ),
            (r#"{"issuer": "https://a"}"#, "list"),
        ];
        for (text, named) in cases {
            let error = parse_providers(text).expect_err(text);
            assert!(error.contains(named), "{text}: {error}");
        }
        let many = format!(
            "[{}]",
            (0..=MAX_PROVIDERS)
                .map(|i| format!(r#"{{"issuer": "https://a", "audience": "a{i}"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(parse_providers(&many).is_err());
    }
}
