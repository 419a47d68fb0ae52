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
//!   "memberships_claim": "switchboard_workspaces",
//!   "console_client_id": "switchboard-console",
//!   "console_scopes": ["openid", "switchboard"],
//!   "display_name": "Example ID"
//! }]
//! ```
//!
//! `issuer` and `audience` are required. With `console_client_id` (a public client registered
//! at the provider, without a secret) the console offers to sign in with the provider;
//! `console_scopes` (default `openid` and the `required_scope`) and `display_name` (default the
//! issuer's host) only go with it. Without `jwks_uri` the keys are found through OpenID
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
    /// How the console signs in with this provider, when it does.
    pub console: Option<ConsoleClient>,
}

/// The console's public client at a provider (authorization code with PKCE, no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleClient {
    /// The client id registered at the provider.
    pub client_id: String,
    /// The scopes the console asks for.
    pub scopes: Vec<String>,
    /// The name shown on the sign-in button.
    pub display_name: String,
}

/// Most scopes the console asks one provider for.
pub const MAX_CONSOLE_SCOPES: usize = 16;

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
    console_client_id: Option<String>,
    console_scopes: Option<Vec<String>>,
    display_name: Option<String>,
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
        let console = console_client(
            &issuer,
            required_scope.as_deref(),
            raw.console_client_id,
            raw.console_scopes,
            raw.display_name,
        )
        .map_err(|(field, problem)| at(field, &problem))?;
        let provider = Provider {
            issuer,
            keys,
            audience,
            required_scope,
            subject_claim,
            name_claim: claim("name_claim", raw.name_claim)?,
            memberships_claim: claim("memberships_claim", raw.memberships_claim)?,
            console,
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

/// The console's client at a provider, from its three optional fields; an error names the field.
fn console_client(
    issuer: &str,
    required_scope: Option<&str>,
    client_id: Option<String>,
    scopes: Option<Vec<String>>,
    display_name: Option<String>,
) -> Result<Option<ConsoleClient>, (&'static str, String)> {
    let Some(client_id) = client_id.map(|id| id.trim().to_owned()) else {
        if scopes.is_some() {
            return Err(("console_scopes", "needs console_client_id".to_owned()));
        }
        if display_name.is_some() {
            return Err(("display_name", "needs console_client_id".to_owned()));
        }
        return Ok(None);
    };
    let printable = |text: &str| !text.chars().any(char::is_control);
    if client_id.is_empty() || client_id.len() > 256 || !printable(&client_id) {
        return Err((
            "console_client_id",
            "must be 1 to 256 printable characters".to_owned(),
        ));
    }
    let scopes = match scopes {
        None => std::iter::once("openid")
            .chain(required_scope.filter(|s| *s != "openid"))
            .map(str::to_owned)
            .collect(),
        Some(scopes) => {
            if scopes.is_empty() || scopes.len() > MAX_CONSOLE_SCOPES {
                return Err((
                    "console_scopes",
                    format!("must list 1 to {MAX_CONSOLE_SCOPES} scopes"),
                ));
            }
            let valid = |s: &String| {
                !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())
            };
            if !scopes.iter().all(valid) || scopes.iter().any(|s| s.contains(['"', '\\'])) {
                return Err((
                    "console_scopes",
                    "must be single scopes of 1 to 128 characters".to_owned(),
                ));
            }
            scopes
        }
    };
    let display_name = match display_name.map(|name| name.trim().to_owned()) {
        Some(name) if name.is_empty() || name.chars().count() > 64 || !printable(&name) => {
            return Err((
                "display_name",
                "must be 1 to 64 printable characters".to_owned(),
            ));
        }
        Some(name) => name,
        None => Url::parse(issuer)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| issuer.to_owned()),
    };
    Ok(Some(ConsoleClient {
        client_id,
        scopes,
        display_name,
    }))
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
                console: None,
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
    fn console_fields_default_to_openid_the_required_scope_and_the_host() {
        let providers = parse_providers(
            r#"[{"issuer": "https://id.example.com/tenant", "audience": "sb",
                 "required_scope": "api", "console_client_id": " console "}]"#,
        )
        .unwrap();
        assert_eq!(
            providers[0].console,
            Some(ConsoleClient {
                client_id: "console".into(),
                scopes: vec!["openid".into(), "api".into()],
                display_name: "id.example.com".into(),
            })
        );
        let chosen = parse_providers(
            r#"[{"issuer": "https://id.example.com", "audience": "sb",
                 "console_client_id": "c", "console_scopes": ["openid", "profile"],
                 "display_name": "Example ID"}]"#,
        )
        .unwrap();
        let console = chosen[0].console.clone().unwrap();
        assert_eq!(console.scopes, ["openid", "profile"]);
        assert_eq!(console.display_name, "Example ID");
    }

    #[test]
    fn console_field_errors_name_the_field() {
        let cases = [
            (r#""console_scopes": ["openid"]"#, "console_scopes"),
            (r#""display_name": "X""#, "display_name"),
            (r#""console_client_id": """#, "console_client_id"),
            (r#""console_client_id": "a\u0000b""#, "console_client_id"),
            (
                r#""console_client_id": "c", "console_scopes": []"#,
                "console_scopes",
            ),
            (
                r#""console_client_id": "c", "console_scopes": ["a b"]"#,
                "console_scopes",
            ),
            (
                r#""console_client_id": "c", "display_name": " ""#,
                "display_name",
            ),
        ];
        for (fields, named) in cases {
            let text = format!(r#"[{{"issuer": "https://a", "audience": "x", {fields}}}]"#);
            let error = parse_providers(&text).expect_err(&text);
            assert!(error.contains(named), "{text}: {error}");
        }
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
