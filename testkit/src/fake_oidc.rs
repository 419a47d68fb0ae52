//! A fake OpenID provider on `127.0.0.1:0`: the issuer of the bearer JWTs a product's users
//! send to Switchboard.
//!
//! It serves OpenID discovery (`/.well-known/openid-configuration`) and a JWK Set (`/jwks`)
//! holding the public halves of its signing keys, and mints tokens with any claims and header.
//! Keys can be added and removed at runtime (rotation); a removed key still signs, so a test
//! can present a token from a key the provider no longer publishes. [`Behaviour`] makes both
//! endpoints slow or hostile. Every request is recorded.
//!
//! Besides well-formed tokens it mints the classic forgeries: unsigned (`alg: none`) and HS256
//! with a public key as the HMAC secret ([`FakeOidc::mint_hs256`]).
//!
//! For a browser signing in it is also an authorization server for public clients
//! ([`FakeOidc::register_client`]): `/authorize` checks the client, its exact redirect URI and
//! an S256 PKCE challenge, then at once redirects back with a code, the `state` and `iss` for
//! the configured user ([`FakeOidc::set_user`]); `/token` (CORS for the client's origin)
//! redeems a code once against its verifier and issues an access token JWT for the audience,
//! an ID token carrying the `nonce`, and, when enabled, a refresh token that rotates on use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::fake_http::{self, RequestLog, ServerTask, parse_form, pkce_challenge};

/// The audience tokens are minted for unless a test says otherwise.
pub const DEFAULT_AUDIENCE: &str = "switchboard";

/// A signing algorithm of the fake provider's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSA 2048 with PKCS#1 v1.5 and SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlg {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }
}

/// How the discovery and key set endpoints answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Well-formed documents.
    #[default]
    Normal,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// An endless-looking body of this many bytes of JSON whitespace and padding.
    Huge(usize),
    /// `200` with an HTML page instead of JSON.
    NotJson,
    /// Discovery names another issuer.
    WrongIssuer,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct Key {
    kid: String,
    alg: KeyAlg,
    pair: Pair,
    jwk: Value,
    published: bool,
}

/// A code issued by `/authorize`, redeemable once.
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    nonce: Option<String>,
}

/// A refresh token's grant.
struct RefreshGrant {
    client_id: String,
    scope: String,
}

/// How the provider signs people in through `/authorize` and `/token`.
struct SignInSettings {
    /// Public clients: id and exact redirect URI.
    clients: Vec<(String, String)>,
    /// The person signed in at once: subject and name.
    user: Option<(String, String)>,
    audience: String,
    token_lifetime_secs: i64,
    refresh_tokens: bool,
    codes: HashMap<String, PendingCode>,
    refresh: HashMap<String, RefreshGrant>,
    /// Claims added to every access token.
    extra_claims: Value,
    /// The grant types of the tokens issued, in order.
    issued: Vec<String>,
}

impl Default for SignInSettings {
    fn default() -> SignInSettings {
        SignInSettings {
            clients: Vec::new(),
            user: None,
            audience: DEFAULT_AUDIENCE.to_owned(),
            token_lifetime_secs: 300,
            refresh_tokens: false,
            codes: HashMap::new(),
            refresh: HashMap::new(),
            extra_claims: json!({}),
            issued: Vec::new(),
        }
    }
}

#[derive(Default)]
struct ProviderState {
    keys: Vec<Key>,
    behaviour: Behaviour,
    next_kid: usize,
    sign_in: SignInSettings,
}

/// A running fake OpenID provider.
pub struct FakeOidc {
    /// `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// Every request received.
    pub requests: RequestLog,
    state: Arc<Mutex<ProviderState>>,
    _task: ServerTask,
}

impl FakeOidc {
    /// A provider publishing one key per algorithm in `algs`, with key ids `k1`, `k2`, ….
    pub async fn start(algs: &[KeyAlg]) -> FakeOidc {
        let listener = fake_http::bind().await;
        let issuer = format!(
            "http://{}",
            listener.local_addr().expect("fake provider address")
        );
        let state = Arc::new(Mutex::new(ProviderState::default()));
        let requests = RequestLog::default();
        let shared = (issuer.clone(), state.clone());
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token).options(token_preflight))
            .with_state(shared);
        let task = fake_http::serve(listener, requests.record(router));
        let provider = FakeOidc {
            issuer,
            requests,
            state,
            _task: task,
        };
        for alg in algs {
            provider.add_key(*alg);
        }
        provider
    }

    fn state(&self) -> MutexGuard<'_, ProviderState> {
        self.state.lock().expect("fake provider state")
    }

    /// The key set URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// Add and publish a new key; returns its key id.
    pub fn add_key(&self, alg: KeyAlg) -> String {
        let mut state = self.state();
        state.next_kid += 1;
        let kid = format!("k{}", state.next_kid);
        let (pair, mut jwk) = generate(alg);
        if let Some(jwk) = jwk.as_object_mut() {
            jwk.insert("kid".into(), json!(kid));
            jwk.insert("use".into(), json!("sig"));
            jwk.insert("alg".into(), json!(alg.name()));
        }
        state.keys.push(Key {
            kid: kid.clone(),
            alg,
            pair,
            jwk,
            published: true,
        });
        kid
    }

    /// Stop publishing a key (it still signs, for tests presenting its tokens).
    pub fn remove_key(&self, kid: &str) {
        for key in self.state().keys.iter_mut().filter(|k| k.kid == kid) {
            key.published = false;
        }
    }

    /// Change the key's published JWK (e.g. claim another `alg`, or drop its `kid`).
    pub fn patch_jwk(&self, kid: &str, patch: Value) {
        for key in self.state().keys.iter_mut().filter(|k| k.kid == kid) {
            if let (Some(jwk), Value::Object(patch)) = (key.jwk.as_object_mut(), patch.clone()) {
                jwk.extend(patch);
            }
        }
    }

    /// A key's published JWK.
    pub fn jwk(&self, kid: &str) -> Value {
        self.state()
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.jwk.clone())
            .expect("known key id")
    }

    /// How both endpoints answer from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.state().behaviour = behaviour;
    }

    /// How many times the key set was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.requests
            .all()
            .iter()
            .filter(|r| r.path == "/jwks")
            .count()
    }

    /// Accept the public client `client_id`, redirecting only to exactly `redirect_uri`; the
    /// token endpoint allows the redirect URI's origin (CORS).
    pub fn register_client(&self, client_id: &str, redirect_uri: &str) {
        self.state()
            .sign_in
            .clients
            .push((client_id.to_owned(), redirect_uri.to_owned()));
    }

    /// The person `/authorize` signs in at once: their subject and `name` claim.
    pub fn set_user(&self, subject: &str, name: &str) {
        self.state().sign_in.user = Some((subject.to_owned(), name.to_owned()));
    }

    /// The `aud` of the access tokens `/token` issues (default [`DEFAULT_AUDIENCE`]).
    pub fn set_audience(&self, audience: &str) {
        self.state().sign_in.audience = audience.to_owned();
    }

    /// How long the tokens `/token` issues last (default 300 s).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().sign_in.token_lifetime_secs =
            i64::try_from(lifetime.as_secs()).expect("lifetime fits");
    }

    /// Whether `/token` issues refresh tokens (default not).
    pub fn set_refresh_tokens(&self, issue: bool) {
        self.state().sign_in.refresh_tokens = issue;
    }

    /// Claims merged into every access token `/token` issues (e.g. memberships).
    pub fn set_extra_claims(&self, claims: Value) {
        self.state().sign_in.extra_claims = claims;
    }

    /// The grant type of each token `/token` issued, in order.
    pub fn issued_grants(&self) -> Vec<String> {
        self.state().sign_in.issued.clone()
    }

    /// Claims of a well-formed token for `subject`: this issuer, [`DEFAULT_AUDIENCE`], issued
    /// now and expiring in five minutes.
    pub fn claims(&self, subject: &str) -> Value {
        let now = now_secs();
        json!({
            "iss": self.issuer,
            "aud": DEFAULT_AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + 300,
        })
    }

    /// A token signed by key `kid` with `claims`; the header is `{"alg", "kid", "typ"}` with
    /// `header` merged over it.
    pub fn mint_with(&self, kid: &str, header: Value, claims: &Value) -> String {
        let state = self.state();
        let key = state
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .expect("known key id");
        sign(key, header, claims)
    }

    /// A token signed by key `kid` with `claims` and the default header.
    pub fn mint(&self, kid: &str, claims: &Value) -> String {
        self.mint_with(kid, json!({}), claims)
    }

    /// An HS256 token whose HMAC secret is `secret` (the algorithm-confusion forgery passes a
    /// public key's bytes).
    pub fn mint_hs256(header: Value, claims: &Value, secret: &[u8]) -> String {
        let mut full = json!({ "alg": "HS256", "typ": "JWT" });
        merge(&mut full, header);
        let input = signing_input(&full, claims);
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// An unsigned token (`alg: none`, empty signature).
    pub fn mint_unsigned(header: Value, claims: &Value) -> String {
        let mut full = json!({ "alg": "none", "typ": "JWT" });
        merge(&mut full, header);
        format!("{}.", signing_input(&full, claims))
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit")
}

/// A token signed by `key` with `claims`; the header is `{"alg", "kid", "typ"}` with `header`
/// merged over it.
fn sign(key: &Key, header: Value, claims: &Value) -> String {
    let mut full = json!({ "alg": key.alg.name(), "kid": key.kid, "typ": "JWT" });
    merge(&mut full, header);
    let input = signing_input(&full, claims);
    let rng = SystemRandom::new();
    let signature = match &key.pair {
        Pair::Rsa(pair) => {
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signature");
            signature
        }
        Pair::Ec(pair) => pair
            .sign(&rng, input.as_bytes())
            .expect("ECDSA signature")
            .as_ref()
            .to_vec(),
        Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Whether `verifier` is a well-formed PKCE code verifier (RFC 7636: 43 to 128 unreserved
/// characters) whose S256 transform is `challenge`.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
    well_formed && pkce_challenge(verifier) == challenge
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    b64(&bytes)
}

fn merge(base: &mut Value, patch: Value) {
    if let (Some(base), Value::Object(patch)) = (base.as_object_mut(), patch) {
        for (name, value) in patch {
            if value.is_null() {
                base.remove(&name);
            } else {
                base.insert(name, value);
            }
        }
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn generate(alg: KeyAlg) -> (Pair, Value) {
    match alg {
        KeyAlg::Rs256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate an RSA key");
            let (n, e) = rsa_components(pair.public_key().as_ref());
            let jwk = json!({ "kty": "RSA", "n": b64(&n), "e": b64(&e) });
            (Pair::Rsa(pair), jwk)
        }
        KeyAlg::Es256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("generate a P-256 key");
            let point = pair.public_key().as_ref().to_vec();
            let jwk = json!({
                "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            });
            (Pair::Ec(pair), jwk)
        }
        KeyAlg::EdDsa => {
            let pair = Ed25519KeyPair::generate().expect("generate an Ed25519 key");
            let jwk =
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) });
            (Pair::Ed(pair), jwk)
        }
    }
}

/// Modulus and exponent of a PKCS#1 `RSAPublicKey` (DER `SEQUENCE { INTEGER n, INTEGER e }`),
/// without leading zeros.
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn item(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(der[0], tag, "DER tag");
        let (len, header) = match der[1] {
            short if short < 0x80 => (usize::from(short), 2),
            long => {
                let count = usize::from(long & 0x7f);
                let len = der[2..2 + count]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                (len, 2 + count)
            }
        };
        (&der[header..header + len], &der[header + len..])
    }
    let (sequence, _) = item(der, 0x30);
    let (n, rest) = item(sequence, 0x02);
    let (e, _) = item(rest, 0x02);
    let strip = |bytes: &[u8]| {
        let zeros = bytes.iter().take_while(|b| **b == 0).count();
        bytes[zeros..].to_vec()
    };
    (strip(n), strip(e))
}

type Shared = (String, Arc<Mutex<ProviderState>>);

async fn hostile_or(state: &Arc<Mutex<ProviderState>>) -> Option<Response> {
    let behaviour = state.lock().expect("fake provider state").behaviour.clone();
    match behaviour {
        Behaviour::Normal | Behaviour::WrongIssuer => None,
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Behaviour::Huge(bytes) => {
            let mut body = String::with_capacity(bytes);
            body.push_str("{\"keys\": [");
            body.push_str(&" ".repeat(bytes.saturating_sub(12)));
            body.push_str("]}");
            Some(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        Behaviour::NotJson => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Sign in</body></html>",
            )
                .into_response(),
        ),
    }
}

async fn discovery(State((issuer, state)): State<Shared>) -> Response {
    if let Some(response) = hostile_or(&state).await {
        return response;
    }
    let wrong = state.lock().expect("fake provider state").behaviour == Behaviour::WrongIssuer;
    let named = if wrong {
        format!("{issuer}/other")
    } else {
        issuer.clone()
    };
    axum::Json(json!({
        "issuer": named,
        "jwks_uri": format!("{issuer}/jwks"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State((_, state)): State<Shared>) -> Response {
    if let Some(response) = hostile_or(&state).await {
        return response;
    }
    let keys: Vec<Value> = state
        .lock()
        .expect("fake provider state")
        .keys
        .iter()
        .filter(|k| k.published)
        .map(|k| k.jwk.clone())
        .collect();
    let mut document = Map::new();
    document.insert("keys".into(), Value::Array(keys));
    axum::Json(Value::Object(document)).into_response()
}

fn refuse(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// `GET /authorize`: checks the request, then redirects back at once for the configured user.
async fn authorize(State((issuer, state)): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let query = parse_form(query.unwrap_or_default().as_bytes());
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    let mut state = state.lock().expect("fake provider state");
    let sign_in = &mut state.sign_in;
    let (client_id, redirect_uri) = (field("client_id"), field("redirect_uri"));
    if !sign_in
        .clients
        .iter()
        .any(|(id, uri)| *id == client_id && *uri == redirect_uri)
    {
        // Never redirect to a URI not registered for the client.
        return refuse(StatusCode::BAD_REQUEST, "invalid_client_or_redirect_uri");
    }
    if field("response_type") != "code"
        || field("code_challenge_method") != "S256"
        || field("code_challenge").len() != 43
    {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if sign_in.user.is_none() {
        return refuse(StatusCode::FORBIDDEN, "access_denied");
    }
    let code = random_token();
    sign_in.codes.insert(
        code.clone(),
        PendingCode {
            client_id,
            redirect_uri: redirect_uri.clone(),
            challenge: field("code_challenge"),
            scope: field("scope"),
            nonce: query.get("nonce").cloned(),
        },
    );
    let mut back = url::Url::parse(&redirect_uri).expect("registered redirect URIs are URLs");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &field("state"))
        .append_pair("iss", &issuer);
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, back.to_string())],
    )
        .into_response()
}

/// The CORS headers for `origin` when it is a registered client's.
fn cors(state: &ProviderState, headers: &HeaderMap) -> Vec<(header::HeaderName, HeaderValue)> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Vec::new();
    };
    let allowed = state.sign_in.clients.iter().any(|(_, uri)| {
        url::Url::parse(uri).is_ok_and(|u| u.origin().ascii_serialization() == origin)
    });
    match (allowed, HeaderValue::from_str(origin)) {
        (true, Ok(value)) => vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, value),
            (header::VARY, HeaderValue::from_static("origin")),
        ],
        _ => Vec::new(),
    }
}

async fn token_preflight(State((_, state)): State<Shared>, headers: HeaderMap) -> Response {
    let state = state.lock().expect("fake provider state");
    let mut response = StatusCode::NO_CONTENT.into_response();
    for (name, value) in cors(&state, &headers) {
        response.headers_mut().insert(name, value);
    }
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    response
}

/// `POST /token`: redeems a code (once, against its PKCE verifier) or a refresh token
/// (rotated).
async fn token(
    State((issuer, state)): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = parse_form(body.as_bytes());
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let mut state = state.lock().expect("fake provider state");
    let cors = cors(&state, &headers);
    let answer = |response: Response| {
        let mut response = response;
        for (name, value) in cors.clone() {
            response.headers_mut().insert(name, value);
        }
        response
    };
    let grant_type = field("grant_type");
    let (scope, nonce) = match grant_type.as_str() {
        "authorization_code" => {
            // The code is spent by any attempt, so a replay after a failure fails too.
            let Some(pending) = state.sign_in.codes.remove(&field("code")) else {
                return answer(refuse(StatusCode::BAD_REQUEST, "invalid_grant"));
            };
            if pending.client_id != field("client_id")
                || pending.redirect_uri != field("redirect_uri")
                || !pkce_s256_matches(&field("code_verifier"), &pending.challenge)
            {
                return answer(refuse(StatusCode::BAD_REQUEST, "invalid_grant"));
            }
            (pending.scope, pending.nonce)
        }
        "refresh_token" => {
            let Some(grant) = state.sign_in.refresh.remove(&field("refresh_token")) else {
                return answer(refuse(StatusCode::BAD_REQUEST, "invalid_grant"));
            };
            if grant.client_id != field("client_id") {
                return answer(refuse(StatusCode::BAD_REQUEST, "invalid_grant"));
            }
            (grant.scope, None)
        }
        _ => return answer(refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type")),
    };
    let Some((subject, name)) = state.sign_in.user.clone() else {
        return answer(refuse(StatusCode::BAD_REQUEST, "invalid_grant"));
    };
    let Some(key) = state.keys.iter().find(|k| k.published) else {
        return answer(refuse(StatusCode::INTERNAL_SERVER_ERROR, "server_error"));
    };
    let now = now_secs();
    let lifetime = state.sign_in.token_lifetime_secs;
    let mut access_claims = json!({
        "iss": issuer, "aud": state.sign_in.audience, "sub": subject, "name": name,
        "scope": scope, "iat": now, "exp": now + lifetime,
    });
    merge(&mut access_claims, state.sign_in.extra_claims.clone());
    let access = sign(key, json!({}), &access_claims);
    let client_id = field("client_id");
    let mut id_claims = json!({
        "iss": issuer, "aud": client_id, "sub": subject, "iat": now, "exp": now + lifetime,
    });
    if let Some(nonce) = nonce {
        id_claims["nonce"] = json!(nonce);
    }
    let id_token = sign(key, json!({}), &id_claims);
    let mut document = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scope,
        "id_token": id_token,
    });
    if state.sign_in.refresh_tokens {
        let refresh = random_token();
        state
            .sign_in
            .refresh
            .insert(refresh.clone(), RefreshGrant { client_id, scope });
        document["refresh_token"] = json!(refresh);
    }
    state.sign_in.issued.push(grant_type);
    answer(([(header::CACHE_CONTROL, "no-store")], axum::Json(document)).into_response())
}
