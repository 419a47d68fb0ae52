//! A fake OAuth 2.1 authorization server on `127.0.0.1:0`.
//!
//! It serves RFC 8414 / OpenID Connect discovery metadata, dynamic client registration
//! (RFC 7591), an authorization endpoint that approves at once (no login, no consent), a token
//! endpoint that checks PKCE (S256), client authentication and refresh-token rotation, and
//! token revocation (RFC 7009). [`AsConfig::default()`] is a well-behaved modern server; each
//! field turns one behaviour off or makes it hostile, and runtime switches make endpoints fail.
//!
//! Every authorization is for a subject, the end user who approved it: codes from `/authorize`
//! are for the subject set with [`FakeAuthServer::set_subject`] ([`DEFAULT_SUBJECT`] until then),
//! and the access and refresh tokens they lead to, refreshed or not, stay that subject's.
//!
//! With [`AsConfig::machine_clients`] the token endpoint also serves the `client_credentials`
//! grant to machine clients that authenticate with a client secret (`client_secret_basic`,
//! `client_secret_post`) or a signed JWT assertion (`private_key_jwt`, RFC 7523); their tokens
//! are for the machine client itself and come without a refresh token.
//!
//! Every request is recorded so tests can assert on what the client under test sent. Issued
//! access tokens are remembered with their subject, scopes and expiry, so a fake resource
//! server can validate them in-process with [`FakeAuthServer::validate_access_token`] and
//! [`FakeAuthServer::token_subject`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::fake_http::{self, Recorded, RequestLog, ServerTask, parse_form};
use crate::jws::{Assertion, JwsAlg, TestKey};

/// The subject of authorizations until [`FakeAuthServer::set_subject`] names another, and of
/// tokens from [`FakeAuthServer::issue_access_token`].
pub const DEFAULT_SUBJECT: &str = "user";

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far ahead of now a client assertion's `exp` may be: five minutes, plus the clock skew.
const MAX_ASSERTION_LIFETIME_SECS: f64 = 300.0;

/// How far a client's clock may run ahead of this server's for `iat` and `nbf`.
const CLOCK_SKEW_SECS: f64 = 30.0;

/// Where the server metadata document is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataStyle {
    /// RFC 8414: `/.well-known/oauth-authorization-server{issuer path}`.
    #[default]
    Rfc8414,
    /// OpenID Connect with the well-known string inserted: `/.well-known/openid-configuration{issuer path}`.
    Oidc,
    /// OpenID Connect appended to the issuer: `{issuer path}/.well-known/openid-configuration`.
    OidcPathAppend,
    /// No metadata anywhere; clients must fall back to `/authorize`, `/token` and `/register` on
    /// the origin (the 2025-03-26 layout).
    None,
}

/// How the token endpoint fails, switched at runtime with [`FakeAuthServer::set_token_failure`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TokenFailure {
    #[default]
    None,
    /// 400 `{"error":"invalid_grant"}`.
    InvalidGrant,
    /// 401 `{"error":"invalid_client"}`.
    InvalidClient,
    /// 503 with a plain-text body.
    ServerError,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Answer with this status, content type and body, whatever was asked (a hostile or
    /// broken server).
    Reply(u16, &'static str, String),
    /// Answer normally, with these fields of the JSON body replaced (e.g. an absurd
    /// `expires_in`).
    Patched(Vec<(&'static str, Value)>),
}

/// The configuration of a [`FakeAuthServer`]. The default is a well-behaved modern server.
#[derive(Clone, Debug)]
pub struct AsConfig {
    /// A path that makes the issuer `http://127.0.0.1:PORT{path}`, e.g. `"/tenant1"`.
    pub issuer_path: Option<String>,
    pub metadata: MetadataStyle,
    /// The metadata names an issuer other than the one its URL was built from.
    pub wrong_issuer: bool,
    /// `code_challenge_methods_supported`; `None` leaves the field out.
    pub pkce_methods: Option<Vec<String>>,
    /// Dynamic client registration at `/register`.
    pub dcr: bool,
    /// Client ID metadata documents: any `https://` client id is accepted as a public client
    /// (the document is never fetched).
    pub cimd: bool,
    /// Clients known in advance: client id and optional secret.
    pub preregistered: Vec<(String, Option<String>)>,
    /// `token_endpoint_auth_methods_supported`; a client using another method is rejected.
    pub token_auth_methods: Vec<String>,
    /// Advertise `authorization_response_iss_parameter_supported` and add `iss` to redirects.
    pub iss_parameter: bool,
    pub scopes_supported: Option<Vec<String>>,
    pub issue_refresh_token: bool,
    /// Each refresh returns a new refresh token and invalidates the old one. Without rotation
    /// the refresh response has no `refresh_token` and the old one stays usable.
    pub rotate_refresh_tokens: bool,
    pub access_token_ttl_secs: i64,
    /// Token revocation at `/revoke`.
    pub revocation: bool,
    /// Values advertised in the metadata instead of this server's own endpoints.
    pub authorization_endpoint_override: Option<String>,
    pub token_endpoint_override: Option<String>,
    pub revocation_endpoint_override: Option<String>,
    pub registration_endpoint_override: Option<String>,
    /// Prefix of every token and code this server issues, so tests can tell servers apart.
    pub token_prefix: String,
    /// Clients of the `client_credentials` grant. When there are any, the metadata lists the
    /// grant in `grant_types_supported` and the algorithms of those using `private_key_jwt` in
    /// `token_endpoint_auth_signing_alg_values_supported`. They authenticate with a method of
    /// [`AsConfig::token_auth_methods`] only, so `private_key_jwt` must be listed there for an
    /// assertion to be accepted ([`AsConfig::client_credentials`] sees to it).
    pub machine_clients: Vec<MachineClient>,
}

impl AsConfig {
    /// The default server with one machine client, `private_key_jwt` added to the advertised
    /// authentication methods if the client uses it.
    pub fn client_credentials(client: MachineClient) -> AsConfig {
        let mut config = AsConfig::default();
        if matches!(client.credential, MachineCredential::PublicKey { .. }) {
            config.token_auth_methods.push("private_key_jwt".into());
        }
        config.machine_clients.push(client);
        config
    }
}

/// A client of the `client_credentials` grant: a machine acting for itself.
#[derive(Clone, Debug)]
pub struct MachineClient {
    pub client_id: String,
    pub credential: MachineCredential,
    /// The subject of the tokens it gets; its client id unless set otherwise.
    pub subject: String,
    /// `expires_in` of its access tokens, in seconds; they stop validating after as long.
    pub token_ttl_secs: i64,
}

impl MachineClient {
    /// A client authenticating with `secret`, by header or in the form as
    /// [`AsConfig::token_auth_methods`] allows; tokens live an hour.
    pub fn secret(client_id: &str, secret: &str) -> MachineClient {
        MachineClient {
            client_id: client_id.to_owned(),
            credential: MachineCredential::Secret(secret.to_owned()),
            subject: client_id.to_owned(),
            token_ttl_secs: 3600,
        }
    }

    /// A client authenticating with assertions signed by `key`'s private half; tokens live an
    /// hour.
    pub fn private_key_jwt(client_id: &str, key: &TestKey) -> MachineClient {
        MachineClient {
            client_id: client_id.to_owned(),
            credential: MachineCredential::PublicKey {
                alg: key.alg,
                public_key: key.public_key.clone(),
            },
            subject: client_id.to_owned(),
            token_ttl_secs: 3600,
        }
    }
}

/// How a [`MachineClient`] proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineCredential {
    /// `client_secret_basic` or `client_secret_post` with this secret.
    Secret(String),
    /// `private_key_jwt`: a JWT assertion with this `alg`, signed by the private half of
    /// `public_key` (see [`TestKey::public_key`] for its encoding). `iss` and `sub` must be the
    /// client id, `aud` the issuer, `exp` within five minutes, `iat` not in the future and `jti`
    /// new.
    PublicKey { alg: JwsAlg, public_key: Vec<u8> },
}

impl Default for AsConfig {
    fn default() -> Self {
        AsConfig {
            issuer_path: None,
            metadata: MetadataStyle::Rfc8414,
            wrong_issuer: false,
            pkce_methods: Some(vec!["S256".into()]),
            dcr: true,
            cimd: false,
            preregistered: Vec::new(),
            token_auth_methods: vec![
                "client_secret_basic".into(),
                "client_secret_post".into(),
                "none".into(),
            ],
            iss_parameter: true,
            scopes_supported: None,
            issue_refresh_token: true,
            rotate_refresh_tokens: true,
            access_token_ttl_secs: 3600,
            revocation: true,
            authorization_endpoint_override: None,
            token_endpoint_override: None,
            revocation_endpoint_override: None,
            registration_endpoint_override: None,
            token_prefix: String::new(),
            machine_clients: Vec::new(),
        }
    }
}

/// How a client authenticated at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: an `Authorization: Basic` header.
    Basic,
    /// `client_secret_post`: `client_secret` in the form.
    Post,
    /// `none`: only `client_id` in the form.
    None,
    /// `private_key_jwt`: a `client_assertion` in the form.
    PrivateKeyJwt,
}

impl ClientAuth {
    /// The RFC 7591 name of the method.
    pub fn method_name(self) -> &'static str {
        match self {
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::Post => "client_secret_post",
            ClientAuth::None => "none",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// A request the token endpoint received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub grant_type: String,
    /// Every form field as sent, including `resource`, `scope` and any `client_secret`.
    pub form: BTreeMap<String, String>,
    pub client_auth: ClientAuth,
    /// From the Basic header or the form, else the `sub` of a client assertion (unverified).
    pub client_id: Option<String>,
    /// The subject of the code or refresh token presented, or of the machine client named, if
    /// this server knew it when the request arrived.
    pub subject: Option<String>,
}

impl TokenRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.get(name).map(String::as_str)
    }
}

/// A request the revocation endpoint received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub token: String,
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    /// The subject the token was issued for; `None` if this server never issued it.
    pub subject: Option<String>,
}

/// A running fake authorization server. Clones share the server, which stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct FakeAuthServer {
    shared: Arc<Shared>,
    _task: Arc<ServerTask>,
}

impl std::fmt::Debug for FakeAuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAuthServer")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

struct Shared {
    config: AsConfig,
    url: String,
    issuer: String,
    log: RequestLog,
    state: Mutex<AsState>,
}

#[derive(Default)]
struct AsState {
    clients: HashMap<String, Client>,
    codes: HashMap<String, AuthorizationCode>,
    access_tokens: HashMap<String, AccessToken>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    /// The subject of every code and token ever issued, live or not.
    minted: HashMap<String, String>,
    /// The subject of codes `/authorize` issues.
    subject: String,
    /// `client id` + space + `jti` of every accepted client assertion.
    seen_assertions: HashSet<String>,
    client_credentials_rejected: bool,
    issued: Issued,
    authorize_error: Option<String>,
    token_failure: TokenFailure,
    metadata_failure: bool,
    authorize_requests: Vec<BTreeMap<String, String>>,
    token_requests: Vec<TokenRequest>,
    registrations: Vec<Value>,
    revocations: Vec<Revocation>,
    assertions: Vec<Value>,
}

/// How many of each thing were issued, to number the next one.
#[derive(Default)]
struct Issued {
    clients: u64,
    codes: u64,
    access_tokens: u64,
    refresh_tokens: u64,
}

#[derive(Clone, Debug)]
struct Client {
    secret: Option<String>,
    /// `None` accepts any redirect URI (pre-registered and CIMD clients).
    redirect_uris: Option<Vec<String>>,
    /// The method a dynamically registered client chose; others may use any allowed method.
    auth_method: Option<String>,
}

struct AuthorizationCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: Option<String>,
    subject: String,
    used: bool,
}

struct AccessToken {
    scopes: Vec<String>,
    subject: String,
    expires_at: Instant,
}

struct RefreshGrant {
    client_id: String,
    scope: Option<String>,
    subject: String,
}

impl FakeAuthServer {
    /// Start the server on a fresh loopback port.
    pub async fn start(config: AsConfig) -> FakeAuthServer {
        let listener = fake_http::bind().await;
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let issuer = format!("{url}{}", issuer_path(&config));
        let mut state = AsState {
            subject: DEFAULT_SUBJECT.to_owned(),
            ..AsState::default()
        };
        for (id, secret) in &config.preregistered {
            let client = Client {
                secret: secret.clone(),
                redirect_uris: None,
                auth_method: None,
            };
            state.clients.insert(id.clone(), client);
        }
        let shared = Arc::new(Shared {
            config,
            url,
            issuer,
            log: RequestLog::default(),
            state: Mutex::new(state),
        });
        let task = fake_http::serve(listener, routes(&shared));
        FakeAuthServer {
            shared,
            _task: Arc::new(task),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The issuer identifier: the URL plus the configured issuer path.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The URL the metadata document is served at, if any.
    pub fn metadata_url(&self) -> Option<String> {
        metadata_path(&self.shared.config).map(|path| format!("{}{path}", self.shared.url))
    }

    /// This server's routes, recording into this server's log, for serving them on another
    /// origin too (an MCP server that hosts its own authorization server).
    pub fn routes(&self) -> Router {
        routes(&self.shared)
    }

    /// Make `/authorize` redirect back with `error=<error>` instead of a code.
    pub fn set_authorize_error(&self, error: Option<&str>) {
        self.state().authorize_error = error.map(str::to_owned);
    }

    /// Make the token endpoint fail, for every grant, until set back to [`TokenFailure::None`].
    pub fn set_token_failure(&self, failure: TokenFailure) {
        self.state().token_failure = failure;
    }

    /// Approve `/authorize` requests as `subject` from now on: the codes issued, and the tokens
    /// and refreshed tokens they lead to, are that subject's. The subject is fixed when the code
    /// is issued, so to connect two accounts a test sets `"alice"`, runs the popup
    /// ([`follow_begin_link`](crate::popup::follow_begin_link)), then sets `"bob"` and runs it
    /// again; popups for different subjects must not run at the same time.
    pub fn set_subject(&self, subject: &str) {
        self.state().subject = subject.to_owned();
    }

    /// Make every `client_credentials` request fail with 401 `{"error":"invalid_client"}`, however
    /// good its credentials, until switched off. Other grants are unaffected, and a refused
    /// assertion's `jti` stays unused.
    pub fn set_client_credentials_rejected(&self, rejected: bool) {
        self.state().client_credentials_rejected = rejected;
    }

    /// Make the metadata document answer 500.
    pub fn set_metadata_failure(&self, fail: bool) {
        self.state().metadata_failure = fail;
    }

    /// Every request received, on any path.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.all()
    }

    /// The query of every `/authorize` request, valid or not.
    pub fn authorize_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.state().authorize_requests.clone()
    }

    /// Every token request, including rejected ones.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state().token_requests.clone()
    }

    /// How many `refresh_token` grant requests were received, successful or not.
    pub fn refresh_count(&self) -> usize {
        self.state()
            .token_requests
            .iter()
            .filter(|request| request.grant_type == "refresh_token")
            .count()
    }

    /// How many `refresh_token` grant requests presented a refresh token issued for `subject`,
    /// successful or not (a rotated-away or revoked token still counts as the subject's).
    pub fn refresh_count_for(&self, subject: &str) -> usize {
        self.state()
            .token_requests
            .iter()
            .filter(|request| {
                request.grant_type == "refresh_token" && request.subject.as_deref() == Some(subject)
            })
            .count()
    }

    /// Every client assertion the token endpoint received, valid or not, in order, as
    /// `{"header": …, "claims": …}` with each part decoded from JSON, or `null` where it did
    /// not decode (or the assertion was too long or not three segments).
    pub fn assertions(&self) -> Vec<Value> {
        self.state().assertions.clone()
    }

    /// The JSON body of every registration request.
    pub fn registrations(&self) -> Vec<Value> {
        self.state().registrations.clone()
    }

    /// Every request to the revocation endpoint, in order.
    pub fn revocations(&self) -> Vec<Revocation> {
        self.state().revocations.clone()
    }

    /// The scopes of a live access token; `None` if unknown, expired or revoked.
    pub fn validate_access_token(&self, token: &str) -> Option<Vec<String>> {
        self.live_access_token(token).map(|(scopes, _)| scopes)
    }

    /// The subject of a live access token; `None` if unknown, expired or revoked.
    pub fn token_subject(&self, token: &str) -> Option<String> {
        self.live_access_token(token).map(|(_, subject)| subject)
    }

    /// The scopes and subject of a live access token, under one lock.
    pub(crate) fn live_access_token(&self, token: &str) -> Option<(Vec<String>, String)> {
        let state = self.state();
        let access = state.access_tokens.get(token)?;
        (Instant::now() < access.expires_at)
            .then(|| (access.scopes.clone(), access.subject.clone()))
    }

    /// Issue an access token for [`DEFAULT_SUBJECT`] directly, without a flow, for tests that
    /// start authorized.
    pub fn issue_access_token(&self, scopes: &[&str]) -> String {
        self.issue_access_token_for(DEFAULT_SUBJECT, scopes)
    }

    /// Issue an access token for `subject` directly, without a flow.
    pub fn issue_access_token_for(&self, subject: &str, scopes: &[&str]) -> String {
        let scope = scopes.join(" ");
        let config = &self.shared.config;
        self.state()
            .issue_access_token(config, Some(&scope), subject, config.access_token_ttl_secs)
    }

    /// Invalidate every access token issued so far, as if they had all expired.
    pub fn expire_access_tokens(&self) {
        self.state().access_tokens.clear();
    }

    /// Invalidate every access token issued so far for `subject`, as if they had expired.
    pub fn expire_access_tokens_for(&self, subject: &str) {
        self.state()
            .access_tokens
            .retain(|_, access| access.subject != subject);
    }

    /// Invalidate every access and refresh token issued so far.
    pub fn revoke_all(&self) {
        let mut state = self.state();
        state.access_tokens.clear();
        state.refresh_tokens.clear();
    }

    /// Invalidate every access and refresh token issued so far for `subject`, as when that user
    /// withdraws the grant at the provider.
    pub fn revoke_all_for(&self, subject: &str) {
        let mut state = self.state();
        state
            .access_tokens
            .retain(|_, access| access.subject != subject);
        state
            .refresh_tokens
            .retain(|_, grant| grant.subject != subject);
    }

    fn state(&self) -> MutexGuard<'_, AsState> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, AsState> {
        self.state.lock().expect("authorization server state")
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn metadata(&self) -> Value {
        let config = &self.config;
        let advertised = |endpoint: &Option<String>, path: &str| {
            endpoint.clone().unwrap_or_else(|| self.endpoint(path))
        };
        let issuer = if config.wrong_issuer {
            "https://impostor.example".to_owned()
        } else {
            self.issuer.clone()
        };
        let mut grant_types = vec!["authorization_code", "refresh_token"];
        if !config.machine_clients.is_empty() {
            grant_types.push("client_credentials");
        }
        let mut metadata = json!({
            "issuer": issuer,
            "authorization_endpoint": advertised(&config.authorization_endpoint_override, "/authorize"),
            "token_endpoint": advertised(&config.token_endpoint_override, "/token"),
            "response_types_supported": ["code"],
            "grant_types_supported": grant_types,
            "token_endpoint_auth_methods_supported": config.token_auth_methods,
        });
        if config.dcr {
            metadata["registration_endpoint"] = json!(advertised(
                &config.registration_endpoint_override,
                "/register"
            ));
        }
        if config.revocation {
            metadata["revocation_endpoint"] =
                json!(advertised(&config.revocation_endpoint_override, "/revoke"));
        }
        if let Some(methods) = &config.pkce_methods {
            metadata["code_challenge_methods_supported"] = json!(methods);
        }
        if config.iss_parameter {
            metadata["authorization_response_iss_parameter_supported"] = json!(true);
        }
        if let Some(scopes) = &config.scopes_supported {
            metadata["scopes_supported"] = json!(scopes);
        }
        if config.cimd {
            metadata["client_id_metadata_document_supported"] = json!(true);
        }
        let mut signing_algs = Vec::new();
        for client in &config.machine_clients {
            if let MachineCredential::PublicKey { alg, .. } = &client.credential
                && !signing_algs.contains(&alg.name())
            {
                signing_algs.push(alg.name());
            }
        }
        if !signing_algs.is_empty() {
            metadata["token_endpoint_auth_signing_alg_values_supported"] = json!(signing_algs);
        }
        metadata
    }
}

impl AsState {
    fn client(&self, config: &AsConfig, client_id: &str) -> Option<Client> {
        if let Some(client) = self.clients.get(client_id) {
            return Some(client.clone());
        }
        (config.cimd && client_id.starts_with("https://")).then_some(Client {
            secret: None,
            redirect_uris: None,
            auth_method: Some("none".into()),
        })
    }

    fn issue_access_token(
        &mut self,
        config: &AsConfig,
        scope: Option<&str>,
        subject: &str,
        ttl_secs: i64,
    ) -> String {
        self.issued.access_tokens += 1;
        let token = format!("{}at-{}", config.token_prefix, self.issued.access_tokens);
        let ttl = Duration::from_secs(ttl_secs.max(0).unsigned_abs());
        let access = AccessToken {
            scopes: scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            subject: subject.to_owned(),
            expires_at: Instant::now()
                .checked_add(ttl)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400)),
        };
        self.access_tokens.insert(token.clone(), access);
        self.minted.insert(token.clone(), subject.to_owned());
        token
    }

    fn issue_refresh_token(
        &mut self,
        config: &AsConfig,
        client_id: &str,
        scope: Option<&str>,
        subject: &str,
    ) -> String {
        self.issued.refresh_tokens += 1;
        let token = format!("{}rt-{}", config.token_prefix, self.issued.refresh_tokens);
        let grant = RefreshGrant {
            client_id: client_id.to_owned(),
            scope: scope.map(str::to_owned),
            subject: subject.to_owned(),
        };
        self.refresh_tokens.insert(token.clone(), grant);
        self.minted.insert(token.clone(), subject.to_owned());
        token
    }

    /// The subject a token request is about, as far as this server can tell before handling it.
    fn subject_of(&self, config: &AsConfig, request: &TokenRequest) -> Option<String> {
        let minted = |field: &str| {
            request
                .field(field)
                .and_then(|presented| self.minted.get(presented))
                .cloned()
        };
        match request.grant_type.as_str() {
            "authorization_code" => minted("code"),
            "refresh_token" => minted("refresh_token"),
            "client_credentials" => {
                let client_id = request.client_id.as_deref()?;
                config
                    .machine_clients
                    .iter()
                    .find(|client| client.client_id == client_id)
                    .map(|client| client.subject.clone())
            }
            _ => None,
        }
    }
}

fn issuer_path(config: &AsConfig) -> String {
    let path = config.issuer_path.as_deref().unwrap_or_default();
    let path = path.trim_matches('/');
    if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    }
}

fn metadata_path(config: &AsConfig) -> Option<String> {
    let issuer_path = issuer_path(config);
    match config.metadata {
        MetadataStyle::Rfc8414 => Some(format!(
            "/.well-known/oauth-authorization-server{issuer_path}"
        )),
        MetadataStyle::Oidc => Some(format!("/.well-known/openid-configuration{issuer_path}")),
        MetadataStyle::OidcPathAppend => {
            Some(format!("{issuer_path}/.well-known/openid-configuration"))
        }
        MetadataStyle::None => None,
    }
}

fn routes(shared: &Arc<Shared>) -> Router {
    let config = &shared.config;
    let mut router = Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token));
    if config.dcr {
        router = router.route("/register", post(register));
    }
    if config.revocation {
        router = router.route("/revoke", post(revoke));
    }
    if let Some(path) = metadata_path(config) {
        router = router.route(&path, get(metadata));
    }
    shared.log.record(router.with_state(shared.clone()))
}

async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    if shared.lock().metadata_failure {
        return (StatusCode::INTERNAL_SERVER_ERROR, "metadata unavailable").into_response();
    }
    axum::Json(shared.metadata()).into_response()
}

/// Approves every valid request at once and redirects back with a code.
async fn authorize(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = parse_form(query.unwrap_or_default().as_bytes());
    let mut state = shared.lock();
    state.authorize_requests.push(query.clone());
    let param = |name: &str| query.get(name).map(String::as_str);

    let Some(client_id) = param("client_id") else {
        return bad_request("missing client_id");
    };
    let Some(client) = state.client(&shared.config, client_id) else {
        return bad_request("unknown client_id");
    };
    let Some(redirect_uri) = param("redirect_uri") else {
        return bad_request("missing redirect_uri");
    };
    if let Some(registered) = &client.redirect_uris
        && !registered.iter().any(|uri| uri == redirect_uri)
    {
        return bad_request("redirect_uri is not registered for this client");
    }
    let Ok(mut redirect) = url::Url::parse(redirect_uri) else {
        return bad_request("redirect_uri is not a URL");
    };
    if param("response_type") != Some("code") {
        return bad_request("response_type must be code");
    }
    let Some(code_challenge) = param("code_challenge") else {
        return bad_request("missing code_challenge");
    };
    if param("code_challenge_method") != Some("S256") {
        return bad_request("code_challenge_method must be S256");
    }
    let Some(client_state) = param("state") else {
        return bad_request("missing state");
    };

    {
        let mut pairs = redirect.query_pairs_mut();
        if let Some(error) = &state.authorize_error {
            pairs.append_pair("error", error);
        } else {
            state.issued.codes += 1;
            let code = format!("code-{}", state.issued.codes);
            pairs.append_pair("code", &code);
            let subject = state.subject.clone();
            state.minted.insert(code.clone(), subject.clone());
            let grant = AuthorizationCode {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                code_challenge: code_challenge.to_owned(),
                scope: param("scope").map(str::to_owned),
                subject,
                used: false,
            };
            state.codes.insert(code, grant);
        }
        pairs.append_pair("state", client_state);
        if shared.config.iss_parameter {
            pairs.append_pair("iss", &shared.issuer);
        }
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, redirect.to_string())],
    )
        .into_response()
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let basic = basic_credentials(&headers);
    let assertion = form
        .get("client_assertion")
        .map(|compact| Assertion::parse(compact));
    let client_auth = if basic.is_some() {
        ClientAuth::Basic
    } else if form.contains_key("client_assertion") || form.contains_key("client_assertion_type") {
        ClientAuth::PrivateKeyJwt
    } else if form.contains_key("client_secret") {
        ClientAuth::Post
    } else {
        ClientAuth::None
    };
    let assertion_subject = assertion
        .as_ref()
        .and_then(|assertion| assertion.as_ref()?.claims.as_ref()?.get("sub")?.as_str())
        .map(str::to_owned);
    let mut request = TokenRequest {
        grant_type: form.get("grant_type").cloned().unwrap_or_default(),
        client_id: basic
            .as_ref()
            .map(|(id, _)| id.clone())
            .or_else(|| form.get("client_id").cloned())
            .or(assertion_subject),
        form: form.clone(),
        client_auth,
        subject: None,
    };
    let failure = {
        let mut state = shared.lock();
        request.subject = state.subject_of(&shared.config, &request);
        state.token_requests.push(request.clone());
        if let Some(assertion) = &assertion {
            let decoded = assertion.as_ref().map_or_else(
                || json!({ "header": null, "claims": null }),
                Assertion::decoded,
            );
            state.assertions.push(decoded);
        }
        state.token_failure.clone()
    };
    match failure {
        TokenFailure::None => {}
        TokenFailure::InvalidGrant => return invalid_grant(),
        TokenFailure::InvalidClient => return invalid_client(),
        TokenFailure::ServerError => {
            return (StatusCode::SERVICE_UNAVAILABLE, "token service unavailable").into_response();
        }
        TokenFailure::Slow(delay) => tokio::time::sleep(delay).await,
        TokenFailure::Reply(status, content_type, body) => {
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response();
        }
        TokenFailure::Patched(_) => {}
    }

    let config = &shared.config;
    let mut state = shared.lock();
    if request.grant_type == "client_credentials" && !config.machine_clients.is_empty() {
        return client_credentials(&shared, &mut state, &request, basic.as_ref(), &failure);
    }
    let Some(client_id) = authenticate(config, &state, &request, basic.as_ref()) else {
        return invalid_client();
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    match request.grant_type.as_str() {
        "authorization_code" => {
            let Some(code) = field("code").and_then(|code| state.codes.get_mut(code)) else {
                return invalid_grant();
            };
            if code.used || code.client_id != client_id {
                return invalid_grant();
            }
            code.used = true;
            let verifier = field("code_verifier").unwrap_or_default();
            if field("redirect_uri") != Some(code.redirect_uri.as_str())
                || fake_http::pkce_challenge(verifier) != code.code_challenge
            {
                return invalid_grant();
            }
            let scope = code.scope.clone();
            let subject = code.subject.clone();
            let ttl_secs = config.access_token_ttl_secs;
            let access_token =
                state.issue_access_token(config, scope.as_deref(), &subject, ttl_secs);
            let refresh_token = config
                .issue_refresh_token
                .then(|| state.issue_refresh_token(config, &client_id, scope.as_deref(), &subject));
            token_response(ttl_secs, &failure, &access_token, refresh_token, scope)
        }
        "refresh_token" => {
            let Some(presented) = field("refresh_token") else {
                return invalid_grant();
            };
            let Some(grant) = state.refresh_tokens.get(presented) else {
                return invalid_grant();
            };
            if grant.client_id != client_id {
                return invalid_grant();
            }
            let scope = grant.scope.clone();
            let subject = grant.subject.clone();
            let ttl_secs = config.access_token_ttl_secs;
            let access_token =
                state.issue_access_token(config, scope.as_deref(), &subject, ttl_secs);
            let refresh_token = config.rotate_refresh_tokens.then(|| {
                state.refresh_tokens.remove(presented);
                state.issue_refresh_token(config, &client_id, scope.as_deref(), &subject)
            });
            token_response(ttl_secs, &failure, &access_token, refresh_token, scope)
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

/// The authenticated client id, if the client is known and used an allowed method correctly.
fn authenticate(
    config: &AsConfig,
    state: &AsState,
    request: &TokenRequest,
    basic: Option<&(String, String)>,
) -> Option<String> {
    let method = request.client_auth.method_name();
    if !config.token_auth_methods.iter().any(|m| m == method) {
        return None;
    }
    let client_id = request.client_id.clone()?;
    if let (Some((id, _)), Some(form_id)) = (basic, request.form.get("client_id"))
        && id != form_id
    {
        return None;
    }
    let client = state.client(config, &client_id)?;
    if client.auth_method.as_deref().is_some_and(|m| m != method) {
        return None;
    }
    let presented = match request.client_auth {
        ClientAuth::Basic => basic.map(|(_, secret)| secret.as_str()),
        ClientAuth::Post => request.form.get("client_secret").map(String::as_str),
        ClientAuth::None => None,
        // Only machine clients have keys.
        ClientAuth::PrivateKeyJwt => return None,
    };
    (client.secret.as_deref() == presented).then_some(client_id)
}

/// The client id and secret of an `Authorization: Basic` header, form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let form_decode = |s: &str| {
        url::form_urlencoded::parse(s.as_bytes())
            .next()
            .map(|(decoded, _)| decoded.into_owned())
            .unwrap_or_default()
    };
    Some((form_decode(id), form_decode(secret)))
}

/// The `client_credentials` grant: a token for the authenticated machine client's own subject,
/// without a refresh token.
fn client_credentials(
    shared: &Shared,
    state: &mut AsState,
    request: &TokenRequest,
    basic: Option<&(String, String)>,
    failure: &TokenFailure,
) -> Response {
    if state.client_credentials_rejected {
        return invalid_client();
    }
    let Some(client) = authenticate_machine(shared, state, request, basic) else {
        return invalid_client();
    };
    let scope = request.field("scope").map(str::to_owned);
    let config = &shared.config;
    let access_token = state.issue_access_token(
        config,
        scope.as_deref(),
        &client.subject,
        client.token_ttl_secs,
    );
    token_response(client.token_ttl_secs, failure, &access_token, None, scope)
}

/// The machine client that authenticated, with exactly one allowed method used correctly.
fn authenticate_machine<'a>(
    shared: &'a Shared,
    state: &mut AsState,
    request: &TokenRequest,
    basic: Option<&(String, String)>,
) -> Option<&'a MachineClient> {
    let config = &shared.config;
    let method = request.client_auth.method_name();
    if !config.token_auth_methods.iter().any(|m| m == method) {
        return None;
    }
    let client_id = request.client_id.as_deref()?;
    if let (Some((id, _)), Some(form_id)) = (basic, request.field("client_id"))
        && id != form_id
    {
        return None;
    }
    let client = config
        .machine_clients
        .iter()
        .find(|client| client.client_id == client_id)?;
    let form_has = |name: &str| request.form.contains_key(name);
    let authenticated = match (&client.credential, request.client_auth) {
        (MachineCredential::Secret(secret), ClientAuth::Basic) => {
            !form_has("client_secret")
                && !form_has("client_assertion")
                && basic.is_some_and(|(_, presented)| presented == secret)
        }
        (MachineCredential::Secret(secret), ClientAuth::Post) => {
            request.field("client_secret") == Some(secret.as_str())
        }
        (MachineCredential::PublicKey { alg, public_key }, ClientAuth::PrivateKeyJwt) => {
            !form_has("client_secret")
                && check_assertion(shared, state, request, client_id, *alg, public_key)
        }
        _ => false,
    };
    authenticated.then_some(client)
}

/// RFC 7523 §3 with the MCP client-credentials profile: the right type, `alg` and signature;
/// `iss` and `sub` the client; `aud` this issuer; a live `exp` at most five minutes ahead;
/// `iat` and `nbf` not in the future; a `jti` never accepted before, which it then uses up.
fn check_assertion(
    shared: &Shared,
    state: &mut AsState,
    request: &TokenRequest,
    client_id: &str,
    alg: JwsAlg,
    public_key: &[u8],
) -> bool {
    if request.field("client_assertion_type") != Some(JWT_BEARER_ASSERTION_TYPE) {
        return false;
    }
    let Some(assertion) = request.field("client_assertion").and_then(Assertion::parse) else {
        return false;
    };
    let (Some(header), Some(claims)) = (&assertion.header, &assertion.claims) else {
        return false;
    };
    if header.get("alg").and_then(Value::as_str) != Some(alg.name())
        || header.contains_key("crit")
        || !assertion.signed_by(alg, public_key)
    {
        return false;
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return false;
    }
    if !audience_is(claims.get("aud"), &shared.issuer) {
        return false;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let Some(exp) = claims.get("exp").and_then(Value::as_f64) else {
        return false;
    };
    if exp <= now || exp > now + MAX_ASSERTION_LIFETIME_SECS + CLOCK_SKEW_SECS {
        return false;
    }
    for optional in ["iat", "nbf"] {
        match claims.get(optional).map(Value::as_f64) {
            None => {}
            Some(Some(time)) if time <= now + CLOCK_SKEW_SECS => {}
            Some(_) => return false,
        }
    }
    let Some(jti) = text("jti").filter(|jti| !jti.is_empty()) else {
        return false;
    };
    state.seen_assertions.insert(format!("{client_id} {jti}"))
}

/// Whether `aud` (a string or an array of strings) names `issuer`, with or without a trailing
/// slash.
fn audience_is(aud: Option<&Value>, issuer: &str) -> bool {
    let issuer = issuer.trim_end_matches('/');
    let names_issuer = |value: &Value| {
        value
            .as_str()
            .is_some_and(|aud| aud == issuer || aud.strip_suffix('/') == Some(issuer))
    };
    match aud {
        Some(Value::Array(audiences)) => audiences.iter().any(names_issuer),
        Some(aud) => names_issuer(aud),
        None => false,
    }
}

fn token_response(
    expires_in: i64,
    failure: &TokenFailure,
    access_token: &str,
    refresh_token: Option<String>,
    scope: Option<String>,
) -> Response {
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    if let TokenFailure::Patched(fields) = failure {
        for (name, value) in fields {
            body[*name] = value.clone();
        }
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// RFC 7591 registration: any client with redirect URIs and an allowed auth method.
async fn register(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let metadata = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let mut state = shared.lock();
    state.registrations.push(metadata.clone());
    let Value::Object(mut client_metadata) = metadata else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata");
    };
    let redirect_uris = client_metadata
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|uris| {
            uris.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if redirect_uris.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_redirect_uri");
    }
    let auth_method = client_metadata
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .unwrap_or("client_secret_basic")
        .to_owned();
    if !shared.config.token_auth_methods.contains(&auth_method) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata");
    }

    state.issued.clients += 1;
    let n = state.issued.clients;
    let client_id = format!("dcr-client-{n}");
    let secret = (auth_method != "none").then(|| format!("dcr-secret-{n}"));
    client_metadata.insert("client_id".into(), json!(client_id));
    client_metadata.insert("client_id_issued_at".into(), json!(1_700_000_000));
    client_metadata.insert("token_endpoint_auth_method".into(), json!(auth_method));
    if let Some(secret) = &secret {
        client_metadata.insert("client_secret".into(), json!(secret));
        client_metadata.insert("client_secret_expires_at".into(), json!(0));
    }
    let client = Client {
        secret,
        redirect_uris: Some(redirect_uris),
        auth_method: Some(auth_method),
    };
    state.clients.insert(client_id, client);
    (StatusCode::CREATED, axum::Json(client_metadata)).into_response()
}

/// RFC 7009: forgets the token, whatever it is, and always answers 200.
async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let mut state = shared.lock();
    let token = form.get("token").cloned().unwrap_or_default();
    let revocation = Revocation {
        subject: state.minted.get(&token).cloned(),
        token,
        token_type_hint: form.get("token_type_hint").cloned(),
        client_id: basic_credentials(&headers)
            .map(|(id, _)| id)
            .or_else(|| form.get("client_id").cloned()),
    };
    state.access_tokens.remove(&revocation.token);
    state.refresh_tokens.remove(&revocation.token);
    state.revocations.push(revocation);
    StatusCode::OK.into_response()
}

fn bad_request(reason: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, reason).into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

fn invalid_grant() -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant")
}

fn invalid_client() -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client")
}
