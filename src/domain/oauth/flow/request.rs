//! The pure parts of an authorization request: which scopes to ask for, and the authorization
//! URL that asks for them.

use url::Url;

use crate::domain::oauth::scope_union;

/// What the resource and its authorization server say about scopes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Advertised<'a> {
    /// `scopes_supported` of the protected resource metadata.
    pub resource_scopes: Option<&'a [String]>,
    /// `scopes_supported` of the authorization server.
    pub server_scopes: Option<&'a [String]>,
}

/// The scopes a flow asks for: what was asked before and what the challenge names, else the
/// resource's advertised scopes; `offline_access` added only when the authorization server
/// lists it.
pub(super) fn choose_scopes(
    previous: &[String],
    challenged: &[String],
    advertised: Advertised<'_>,
) -> Vec<String> {
    let mut scopes = if previous.is_empty() && challenged.is_empty() {
        advertised.resource_scopes.unwrap_or_default().to_vec()
    } else {
        scope_union([previous, challenged])
    };
    if advertised
        .server_scopes
        .is_some_and(|s| s.iter().any(|s| s == "offline_access"))
        && !scopes.iter().any(|s| s == "offline_access")
    {
        scopes.push("offline_access".into());
    }
    scopes
}

/// The parameters of one authorization request.
#[derive(Clone, Copy, Debug)]
pub(super) struct Request<'a> {
    /// The client's id.
    pub client_id: &'a str,
    /// Where the authorization server sends the browser back.
    pub redirect_uri: &'a str,
    /// The PKCE S256 challenge.
    pub code_challenge: &'a str,
    /// The state.
    pub state: &'a str,
    /// The resource, exactly as its metadata publishes it.
    pub resource: &'a str,
    /// The scopes, space-separated, when there are any.
    pub scope: Option<&'a str>,
}

/// The authorization server's URL for a request: the code flow with PKCE S256, the state, the
/// resource and the scopes when there are any, added to the endpoint's own query.
pub(super) fn authorization_url(endpoint: &Url, request: Request<'_>) -> Url {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", request.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", request.state)
            .append_pair("resource", request.resource);
        if let Some(scope) = request.scope {
            query.append_pair("scope", scope);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scopes_come_from_the_history_and_the_challenge_before_the_advertised_ones() {
        let resource = strings(&["read", "write"]);
        let server = strings(&["read", "offline_access"]);
        let advertised = Advertised {
            resource_scopes: Some(&resource),
            server_scopes: None,
        };
        assert_eq!(choose_scopes(&[], &[], advertised), resource);
        assert_eq!(
            choose_scopes(
                &strings(&["read"]),
                &strings(&["admin", "read"]),
                advertised
            ),
            strings(&["read", "admin"])
        );
        assert!(choose_scopes(&[], &[], Advertised::default()).is_empty());

        // offline_access only when the authorization server lists it, and only once.
        let with_offline = Advertised {
            resource_scopes: Some(&resource),
            server_scopes: Some(&server),
        };
        assert_eq!(
            choose_scopes(&[], &[], with_offline),
            strings(&["read", "write", "offline_access"])
        );
        assert_eq!(
            choose_scopes(&strings(&["offline_access"]), &[], with_offline),
            strings(&["offline_access"])
        );
        assert_eq!(
            choose_scopes(
                &[],
                &[],
                Advertised {
                    resource_scopes: None,
                    server_scopes: Some(&server)
                }
            ),
            strings(&["offline_access"])
        );
    }

    #[test]
    fn the_authorization_url_keeps_the_endpoint_query_and_encodes_every_parameter() {
        let endpoint = Url::parse("https://as.example/authorize?tenant=a%20b").unwrap();
        let request = Request {
            client_id: "https://app.example/client.json",
            redirect_uri: "https://app.example/oauth/callback",
            code_challenge: "abc-_",
            state: "s&t=1",
            resource: "https://mcp.example/mcp",
            scope: Some("read offline_access"),
        };
        let url = authorization_url(&endpoint, request);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let expected = strings(&[
            "tenant",
            "response_type",
            "client_id",
            "redirect_uri",
            "code_challenge",
            "code_challenge_method",
            "state",
            "resource",
            "scope",
        ]);
        assert_eq!(
            pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            expected
        );
        let value = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("tenant"), Some("a b"));
        assert_eq!(value("response_type"), Some("code"));
        assert_eq!(value("code_challenge_method"), Some("S256"));
        assert_eq!(value("state"), Some("s&t=1"));
        assert_eq!(value("scope"), Some("read offline_access"));
        assert_eq!(value("resource"), Some("https://mcp.example/mcp"));
        assert_eq!(url.host_str(), Some("as.example"));

        let without_scope = authorization_url(
            &endpoint,
            Request {
                scope: None,
                ..request
            },
        );
        assert!(without_scope.query_pairs().all(|(k, _)| k != "scope"));
    }
}
