//! Property tests of every parser that reads bytes from another server or from a caller:
//! `WWW-Authenticate` challenges, protected-resource and authorization-server metadata, token
//! responses, URL validation and normalisation, the outbound address guard, page cursors, and
//! identity providers' JWTs, key sets and claims.
//! Each feeds arbitrary input and asserts no panic and the documented outcome. The case count
//! is fixed so the suite stays fast and repeatable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use url::Url;

use crate::domain::identity::{jwt, provider};
use crate::domain::oauth::challenge;
use crate::domain::oauth::discovery::{self, DiscoverOptions, ServerMetadata};
use crate::domain::oauth::tokens::{self, MAX_EXPIRES_IN};
use crate::domain::pagination::{self, ToolsPage};
use crate::domain::servers;
use crate::net::{self, AddressClass, NetPolicy};

/// Cases per property.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A quoted-string value as a server might send it: any printable text, with `"` and `\`
/// escaped.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Arbitrary JSON, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,24}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Authorization-server metadata with the fields Switchboard reads, each either well-formed,
/// absent, or of an arbitrary shape.
fn server_metadata() -> impl Strategy<Value = serde_json::Value> {
    let url = prop_oneof![
        Just(serde_json::json!("https://as.example/authorize")),
        Just(serde_json::json!("http://127.0.0.1:9/token")),
        Just(serde_json::json!("javascript:alert(1)")),
        Just(serde_json::json!("https://user:pw@as.example/t")),
        ".{0,30}".prop_map(serde_json::Value::from),
        json(),
    ]
    .boxed();
    (
        url.clone(),
        url.clone(),
        url,
        prop::option::of(json()),
        prop::option::of(json()),
        json(),
    )
        .prop_map(|(authorize, token, register, pkce, types, extra)| {
            let mut doc = serde_json::json!({
                "issuer": "https://as.example",
                "authorization_endpoint": authorize,
                "token_endpoint": token,
                "registration_endpoint": register,
                "extra": extra,
            });
            if let Some(pkce) = pkce {
                doc["code_challenge_methods_supported"] = pkce;
            }
            if let Some(types) = types {
                doc["response_types_supported"] = types;
            }
            doc
        })
}

/// Base64url of bytes, unpadded, as a JWT segment.
fn segment(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn jwts_of_any_shape_are_refused_or_parsed_without_panicking(
        raw in ".{0,300}",
        header in json(),
        claims in json(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let _ = jwt::parse(&raw);
        let token = format!(
            "{}.{}.{}",
            segment(header.to_string().as_bytes()),
            segment(claims.to_string().as_bytes()),
            segment(&signature)
        );
        if let Ok(parsed) = jwt::parse(&token) {
            // Only the accepted algorithms get this far.
            let alg = header.get("alg").and_then(serde_json::Value::as_str);
            prop_assert!(matches!(alg, Some("RS256" | "ES256" | "EdDSA")));
            let _ = parsed.issuer();
        }
    }

    #[test]
    fn key_sets_and_claims_of_any_shape_never_panic(keys in prop::collection::vec(json(), 0..6), claims in json(), now in any::<i64>()) {
        let _ = jwt::parse_key_set(&serde_json::json!({ "keys": keys }));
        let provider = provider::Provider {
            issuer: "https://id.example.com".into(),
            keys: provider::KeySource::Discovery,
            audience: "switchboard".into(),
            required_scope: Some("switchboard".into()),
            subject_claim: "sub".into(),
            name_claim: Some("name".into()),
            memberships_claim: Some("workspaces".into()),
            console: None,
        };
        if let serde_json::Value::Object(claims) = claims {
            let _ = jwt::check_claims(&claims, &provider, now);
            let _ = jwt::parse_memberships(claims.get("workspaces"));
        }
    }

    #[test]
    fn challenges_never_panic(values in prop::collection::vec(".{0,200}", 0..4)) {
        let _ = challenge::parse(values.iter().map(String::as_str));
    }

    #[test]
    fn challenges_read_back_what_was_sent(
        metadata in "[ -~]{0,60}",
        scope in "[ -~]{0,60}",
        error in "[a-z_]{1,20}",
        other_scheme in prop::bool::ANY,
    ) {
        let bearer = format!(
            "Bearer resource_metadata={}, scope = {}, error={}",
            quoted(&metadata),
            quoted(&scope),
            error
        );
        let header = if other_scheme {
            format!("Basic realm=\"x\", {bearer}")
        } else {
            bearer
        };
        let parsed = challenge::parse([header.as_str()]);
        prop_assert!(parsed.is_some(), "{header}");
        let parsed = parsed.unwrap_or_default();
        prop_assert_eq!(parsed.resource_metadata.as_deref(), Some(metadata.as_str()));
        prop_assert_eq!(parsed.scope.as_deref(), Some(scope.as_str()));
        prop_assert_eq!(parsed.error.as_deref(), Some(error.as_str()));
    }

    #[test]
    fn token_responses_never_panic_and_only_yield_usable_tokens(
        status in 0u16..1000,
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(response) = tokens::read_token_response(status, &body) {
            prop_assert!((200..300).contains(&status));
            prop_assert!(!response.access_token.expose().is_empty());
            prop_assert!(response.expires_in.is_none_or(|s| (1..=MAX_EXPIRES_IN).contains(&s)));
        }
    }

    #[test]
    fn token_lifetimes_of_any_shape_are_read_or_ignored(expires_in in json()) {
        let body = serde_json::json!({ "access_token": "t", "expires_in": expires_in });
        let response = tokens::read_token_response(200, body.to_string().as_bytes());
        prop_assert!(response.is_ok());
        let expires = response.map(|r| r.expires_in).unwrap_or_default();
        prop_assert!(expires.is_none_or(|s| (1..=MAX_EXPIRES_IN).contains(&s)));
    }

    #[test]
    fn form_encoded_token_responses_are_read(token in "[A-Za-z0-9._~-]{1,40}", lifetime in any::<i64>()) {
        let body = format!("access_token={token}&expires_in={lifetime}&token_type=bearer");
        let response = tokens::read_token_response(200, body.as_bytes());
        prop_assert!(response.is_ok());
        let response = response.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(response.access_token.expose(), token.as_str());
        prop_assert_eq!(response.expires_in, (lifetime > 0).then(|| lifetime.min(MAX_EXPIRES_IN)));
    }

    #[test]
    fn metadata_of_any_shape_is_refused_or_yields_http_endpoints(
        doc in server_metadata(),
        lenient in prop::bool::ANY,
        legacy in prop::bool::ANY,
    ) {
        let Ok(metadata) = serde_json::from_value::<ServerMetadata>(doc) else {
            return Ok(());
        };
        let found = discovery::assemble(
            "https://mcp.example/mcp".into(),
            None,
            "https://as.example".into(),
            metadata,
            legacy,
            DiscoverOptions { lenient_pkce: lenient, machine: false },
        );
        if let Ok(found) = found {
            let token = Url::parse(&found.server.token_endpoint)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for url in [found.authorization_endpoint.as_ref().unwrap(), &token] {
                prop_assert!(matches!(url.scheme(), "http" | "https"), "{url}");
                prop_assert!(url.username().is_empty() && url.password().is_none(), "{url}");
                prop_assert!(url.host().is_some(), "{url}");
            }
        }
    }

    #[test]
    fn resource_metadata_of_any_shape_never_panics(doc in json(), resource in ".{0,80}") {
        let _ = serde_json::from_value::<discovery::ResourceMetadata>(doc);
        if let Ok(server) = Url::parse("https://mcp.example/v1/mcp") {
            let _ = discovery::resource_covers(&resource, &server);
        }
    }

    #[test]
    fn a_server_url_covers_itself(path in "(/[a-z0-9]{1,8}){0,4}") {
        let raw = format!("https://mcp.example{path}");
        let server = Url::parse(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(discovery::resource_covers(server.as_str(), &server));
        prop_assert!(discovery::resource_covers("https://mcp.example", &server));
        prop_assert!(!discovery::resource_covers("https://other.example", &server));
    }

    #[test]
    fn server_urls_are_validated_without_panicking_and_normalise_idempotently(raw in ".{0,120}") {
        if let Ok(url) = servers::parse_server_url("url", &raw) {
            prop_assert!(matches!(url.scheme(), "http" | "https"));
            let normalized = servers::normalize_url(&url);
            if let Ok(again) = Url::parse(&normalized) {
                prop_assert_eq!(servers::normalize_url(&again), normalized);
            }
        }
    }

    #[test]
    fn normalisation_ignores_case_of_scheme_and_host_and_trailing_slashes(
        host in "[a-z]{1,10}",
        path in "(/[a-z0-9]{1,6}){0,3}",
        slash in prop::bool::ANY,
    ) {
        let lower = Url::parse(&format!("https://{host}.example{path}"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let upper = Url::parse(&format!(
            "HTTPS://{}.EXAMPLE{path}{}",
            host.to_uppercase(),
            if slash { "/" } else { "" }
        ))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(servers::normalize_url(&lower), servers::normalize_url(&upper));
    }

    #[test]
    fn embedded_ipv4_addresses_are_judged_like_the_address_they_reach(octets in any::<[u8; 4]>()) {
        let v4 = Ipv4Addr::from(octets);
        let expected = net::classify(IpAddr::V4(v4));
        let [a, b, c, d] = octets;
        let hi = u16::from_be_bytes([a, b]);
        let lo = u16::from_be_bytes([c, d]);
        for v6 in [
            v4.to_ipv6_mapped(),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
        ] {
            prop_assert_eq!(net::classify(IpAddr::V6(v6)), expected, "{}", v6);
        }
    }

    #[test]
    fn the_always_refused_classes_stay_refused_when_private_networks_are_allowed(
        ip in any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        v4 in any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
    ) {
        let open = NetPolicy { allow_private_networks: true };
        let closed = NetPolicy { allow_private_networks: false };
        for ip in [ip, v4] {
            match net::classify(ip) {
                None => {
                    prop_assert!(net::is_allowed(ip, open).is_ok());
                    prop_assert!(net::is_allowed(ip, closed).is_ok());
                }
                Some(class) => {
                    prop_assert_eq!(net::is_allowed(ip, closed), Err(class));
                    prop_assert_eq!(net::is_allowed(ip, open).is_err(), class.always_refused());
                }
            }
        }
    }

    #[test]
    fn page_arguments_are_accepted_in_range_and_refused_otherwise(
        first in prop::option::of(any::<i64>()),
        after in prop::option::of(".{0,300}"),
    ) {
        let tools = ToolsPage::new(first, after);
        prop_assert_eq!(tools.is_ok(), first.is_none_or(|n| (0..=pagination::MAX_TOOLS_PAGE).contains(&n)));
        let servers_page = pagination::page_size(first);
        prop_assert_eq!(servers_page.is_ok(), first.is_none_or(|n| (0..=pagination::MAX_PAGE).contains(&n)));
    }
}

#[test]
fn metadata_addresses_are_refused_in_every_form() {
    let open = NetPolicy {
        allow_private_networks: true,
    };
    for ip in [
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
        IpAddr::V6(Ipv4Addr::new(169, 254, 169, 254).to_ipv6_mapped()),
        IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xa9fe, 0xa9fe)),
    ] {
        assert_eq!(
            net::is_allowed(ip, open),
            Err(AddressClass::Metadata),
            "{ip}"
        );
    }
}
