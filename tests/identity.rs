//! Signing in with a product's own identities: bearer JWTs of a configured OpenID provider
//! (the fake one of the test kit) on HTTP and in `connection_init`, each refusal rule, the
//! provider's keys and their rotation, slow and hostile providers, just-in-time users, claimed
//! memberships, and sockets that close when their token expires.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::domain::admin;
use switchboard::domain::identity::{KeySource, Provider};
use switchboard_testkit::fake_oidc::{Behaviour, FakeOidc, KeyAlg, now_secs};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::support::{Options, TestApp, error_code};

const VIEWER: &str =
    "{ viewer { id name authenticatedBy { method issuer apiTokenId expiresAt } } }";
const WORKSPACES: &str = "{ workspaces { id role } }";

/// The provider as an operator would configure it for the fake: discovery, the default
/// audience.
fn provider(idp: &FakeOidc) -> Provider {
    Provider {
        issuer: idp.issuer.clone(),
        keys: KeySource::Discovery,
        audience: switchboard_testkit::fake_oidc::DEFAULT_AUDIENCE.to_owned(),
        required_scope: None,
        subject_claim: "sub".to_owned(),
        name_claim: Some("name".to_owned()),
        memberships_claim: None,
        console: None,
    }
}

async fn start(providers: Vec<Provider>) -> TestApp {
    TestApp::start_configured(Options::default(), move |config| {
        config.identity_providers = providers;
    })
    .await
}

async fn user_count(t: &TestApp) -> usize {
    let mut conn = t.app.db.conn().await.unwrap();
    switchboard::db::access::all_users(&mut conn)
        .await
        .unwrap()
        .len()
}

/// A request with `token` that must be refused as a client sees it: 401, `UNAUTHENTICATED`.
async fn assert_refused(t: &TestApp, token: &str, what: &str) {
    let (status, body) = t.gql_raw(Some(token), VIEWER, json!({})).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{what}: {body}");
}

/// `viewer` with `token`, which must be accepted.
async fn viewer(t: &TestApp, token: &str) -> Value {
    let (status, body) = t.gql_raw(Some(token), VIEWER, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["viewer"].clone()
}

fn with(mut claims: Value, patch: Value) -> Value {
    if let (Some(claims), Value::Object(patch)) = (claims.as_object_mut(), patch) {
        for (name, value) in patch {
            if value.is_null() {
                claims.remove(&name);
            } else {
                claims.insert(name, value);
            }
        }
    }
    claims
}

/// HTTP accepts a JWT beside API tokens; its subject's first valid token creates one user,
/// named from the name claim, and `viewer` says how the caller authenticated.
#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_signs_in_over_http_and_its_subject_becomes_one_user() {
    let idp = FakeOidc::start(&[KeyAlg::EdDsa, KeyAlg::Es256, KeyAlg::Rs256]).await;
    let t = start(vec![provider(&idp)]).await;
    assert_eq!(user_count(&t).await, 1);

    let claims = with(idp.claims("ana-123"), json!({ "name": "Ana Lima" }));
    let ed = idp.mint("k1", &claims);
    let me = viewer(&t, &ed).await;
    assert_eq!(me["name"], "Ana Lima");
    assert_eq!(me["authenticatedBy"]["method"], "IDENTITY_PROVIDER");
    assert_eq!(me["authenticatedBy"]["issuer"], idp.issuer.as_str());
    assert_eq!(me["authenticatedBy"]["apiTokenId"], Value::Null);
    let expires =
        chrono::DateTime::parse_from_rfc3339(me["authenticatedBy"]["expiresAt"].as_str().unwrap())
            .unwrap();
    assert_eq!(expires.timestamp(), claims["exp"].as_i64().unwrap());
    assert_eq!(user_count(&t).await, 2);

    // Other keys and other tokens of the same subject are the same user.
    for kid in ["k2", "k3"] {
        let again = viewer(
            &t,
            &idp.mint(kid, &with(claims.clone(), json!({"jti": kid}))),
        )
        .await;
        assert_eq!(again["id"], me["id"], "{kid}");
    }
    assert_eq!(user_count(&t).await, 2);
    // New users have no memberships until someone grants them.
    let body = t.gql(Some(&ed), WORKSPACES, json!({})).await;
    assert_eq!(body["data"]["workspaces"], json!([]), "{body}");

    // API tokens work as before, and say so.
    let admin = viewer(&t, &t.admin.token.clone()).await;
    assert_eq!(admin["authenticatedBy"]["method"], "API_TOKEN");
    assert_eq!(admin["authenticatedBy"]["issuer"], Value::Null);
    assert!(admin["authenticatedBy"]["apiTokenId"].is_string());

    // Two first requests at once for a new subject create one user.
    let tokens: Vec<String> = (0..8)
        .map(|i| idp.mint("k1", &with(idp.claims("bo-456"), json!({ "jti": i }))))
        .collect();
    let answers =
        futures_util::future::join_all(tokens.iter().map(|token| viewer(&t, token))).await;
    assert!(
        answers.iter().all(|a| a["id"] == answers[0]["id"]),
        "{answers:?}"
    );
    assert_eq!(answers[0]["name"], "bo-456", "no name claim: the subject");
    assert_eq!(user_count(&t).await, 3);
}

/// Without providers, a token that is not an API token is refused, whatever it is.
#[tokio::test(flavor = "multi_thread")]
async fn without_providers_a_jwt_is_refused() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let t = start(Vec::new()).await;
    assert_refused(&t, &idp.mint("k1", &idp.claims("ana")), "no providers").await;
    assert_eq!(user_count(&t).await, 1);
    assert!(idp.requests.is_empty(), "the provider is never contacted");
}

/// Every rule refuses with `UNAUTHENTICATED`, and none of the refused tokens creates a user.
#[tokio::test(flavor = "multi_thread")]
async fn each_rule_refuses_and_creates_nothing() {
    let idp = FakeOidc::start(&[KeyAlg::Rs256, KeyAlg::Es256]).await;
    let scoped = Provider {
        required_scope: Some("switchboard".to_owned()),
        ..provider(&idp)
    };
    let t = start(vec![scoped]).await;
    let now = now_secs();
    let good = with(idp.claims("eve"), json!({ "scope": "openid switchboard" }));
    // The well-formed token passes: the refusals below are the rules, not the setup.
    assert_eq!(viewer(&t, &idp.mint("k1", &good)).await["name"], "eve");
    let before = user_count(&t).await;

    let rsa_jwk = idp.jwk("k1");
    let public_key_secret = rsa_jwk.to_string();
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            idp.mint(
                "k1",
                &with(good.clone(), json!({"sub": "a1", "aud": "other"})),
            ),
        ),
        (
            "audience list without ours",
            idp.mint(
                "k1",
                &with(good.clone(), json!({"sub": "a2", "aud": ["x", "y"]})),
            ),
        ),
        (
            "wrong issuer",
            idp.mint(
                "k1",
                &with(
                    good.clone(),
                    json!({"sub": "a3", "iss": format!("{}/other", idp.issuer)}),
                ),
            ),
        ),
        (
            "expired",
            idp.mint(
                "k1",
                &with(good.clone(), json!({"sub": "a4", "exp": now - 120})),
            ),
        ),
        (
            "no expiry",
            idp.mint("k1", &with(good.clone(), json!({"sub": "a5", "exp": null}))),
        ),
        (
            "not yet valid",
            idp.mint(
                "k1",
                &with(good.clone(), json!({"sub": "a6", "nbf": now + 600})),
            ),
        ),
        (
            "issued in the future",
            idp.mint(
                "k1",
                &with(good.clone(), json!({"sub": "a7", "iat": now + 600})),
            ),
        ),
        (
            "missing scope",
            idp.mint(
                "k1",
                &with(good.clone(), json!({"sub": "a8", "scope": "openid"})),
            ),
        ),
        (
            "no subject",
            idp.mint("k1", &with(good.clone(), json!({"sub": null}))),
        ),
        (
            "alg none",
            FakeOidc::mint_unsigned(
                json!({"kid": "k1"}),
                &with(good.clone(), json!({"sub": "a9"})),
            ),
        ),
        (
            "HS256 with the public key as secret",
            FakeOidc::mint_hs256(
                json!({"kid": "k1"}),
                &with(good.clone(), json!({"sub": "a10"})),
                public_key_secret.as_bytes(),
            ),
        ),
        (
            "HS256 with the modulus as secret",
            FakeOidc::mint_hs256(
                json!({"kid": "k1"}),
                &with(good.clone(), json!({"sub": "a11"})),
                rsa_jwk["n"].as_str().unwrap().as_bytes(),
            ),
        ),
        (
            "RS256 header on the EC key",
            idp.mint_with(
                "k2",
                json!({"alg": "RS256"}),
                &with(good.clone(), json!({"sub": "a12"})),
            ),
        ),
        (
            "ES256 key under the RSA key's id",
            idp.mint_with(
                "k2",
                json!({"kid": "k1"}),
                &with(good.clone(), json!({"sub": "a13"})),
            ),
        ),
        (
            "critical header",
            idp.mint_with(
                "k1",
                json!({"crit": ["exp"]}),
                &with(good.clone(), json!({"sub": "a14"})),
            ),
        ),
        (
            "oversized",
            idp.mint(
                "k1",
                &with(
                    good.clone(),
                    json!({"sub": "a15", "padding": "x".repeat(9 * 1024)}),
                ),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("one segment", "eyJhbGciOiJFUzI1NiJ9".to_owned()),
    ];
    for (what, token) in &cases {
        assert_refused(&t, token, what).await;
    }
    // A tampered claims set under a valid signature.
    let token = idp.mint("k1", &with(good.clone(), json!({"sub": "a16"})));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(with(good.clone(), json!({"sub": "mallory"})).to_string())
    };
    assert_refused(&t, &parts.join("."), "tampered").await;
    assert_eq!(
        user_count(&t).await,
        before,
        "no refused token created a user"
    );
}

/// A token naming a key the cached set lacks refreshes the keys, once: a rotated-in key is
/// accepted, a rotated-out one refused, and made-up key ids fetch nothing more for a while.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_kid_refreshes_the_keys_once_and_rotation_is_accepted() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let t = start(vec![provider(&idp)]).await;
    // Concurrent first requests share one fetch of the keys.
    let first: Vec<String> = (0..6)
        .map(|i| idp.mint("k1", &with(idp.claims("ana"), json!({ "jti": i }))))
        .collect();
    futures_util::future::join_all(first.iter().map(|token| viewer(&t, token))).await;
    assert_eq!(idp.jwks_fetches(), 1);
    viewer(
        &t,
        &idp.mint("k1", &with(idp.claims("ana"), json!({"jti": "again"}))),
    )
    .await;
    assert_eq!(idp.jwks_fetches(), 1, "the keys are cached");

    // Rotation: a new key in, the old one out. Concurrent tokens of the new key share one
    // refresh.
    let new = idp.add_key(KeyAlg::EdDsa);
    idp.remove_key("k1");
    let rotated: Vec<String> = (0..6)
        .map(|i| {
            idp.mint(
                &new,
                &with(idp.claims("ana"), json!({ "jti": format!("r{i}") })),
            )
        })
        .collect();
    let answers =
        futures_util::future::join_all(rotated.iter().map(|token| viewer(&t, token))).await;
    assert!(
        answers
            .iter()
            .all(|me| me["authenticatedBy"]["method"] == "IDENTITY_PROVIDER")
    );
    assert_eq!(idp.jwks_fetches(), 2, "one refresh for the new key id");

    // The refreshed set no longer holds k1: its new tokens are refused.
    assert_refused(&t, &idp.mint("k1", &idp.claims("bo")), "rotated out").await;
    // Made-up key ids, several at once, do not fetch again within the refresh interval.
    let forged: Vec<String> = (0..5)
        .map(|i| {
            idp.mint_with(
                &new,
                json!({"kid": format!("made-up-{i}")}),
                &idp.claims("bo"),
            )
        })
        .collect();
    futures_util::future::join_all(
        forged
            .iter()
            .map(|token| assert_refused(&t, token, "unknown kid")),
    )
    .await;
    assert_eq!(idp.jwks_fetches(), 2, "rate-limited");
}

/// A key set that answers too slowly is given up at the timeout; the token is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_key_set_is_refused_within_the_timeout() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let explicit = Provider {
        keys: KeySource::JwksUri(url::Url::parse(&idp.jwks_uri()).unwrap()),
        ..provider(&idp)
    };
    let t = start(vec![explicit]).await;
    idp.set_behaviour(Behaviour::Slow(Duration::from_secs(30)));
    let started = Instant::now();
    assert_refused(&t, &idp.mint("k1", &idp.claims("ana")), "slow key set").await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(idp.jwks_fetches(), 1);
    assert_eq!(user_count(&t).await, 1);
}

/// A huge key set, one that is not JSON, and discovery naming another issuer are refused.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_providers_are_refused() {
    for behaviour in [
        Behaviour::Huge(512 * 1024),
        Behaviour::NotJson,
        Behaviour::WrongIssuer,
    ] {
        let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
        let t = start(vec![provider(&idp)]).await;
        idp.set_behaviour(behaviour.clone());
        assert_refused(
            &t,
            &idp.mint("k1", &idp.claims("ana")),
            &format!("{behaviour:?}"),
        )
        .await;
        assert_eq!(user_count(&t).await, 1, "{behaviour:?}");
        // The server still answers API tokens.
        assert_eq!(viewer(&t, &t.admin.token.clone()).await["name"], "admin");
    }
}

/// A provisioned user never fails on a name another user has: the name gets a short digest of
/// issuer and subject, the same on every sign-in.
#[tokio::test(flavor = "multi_thread")]
async fn provisioned_names_never_clash() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let t = start(vec![provider(&idp)]).await;
    admin::create_user(&t.app, "Ana").await.unwrap();
    let first = viewer(
        &t,
        &idp.mint("k1", &with(idp.claims("s1"), json!({"name": "ana"}))),
    )
    .await;
    let name = first["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("ana (") && name.ends_with(')'), "{name}");
    let second = viewer(
        &t,
        &idp.mint("k1", &with(idp.claims("s2"), json!({"name": "ANA"}))),
    )
    .await;
    let other = second["name"].as_str().unwrap();
    assert_ne!(other, name);
    assert!(other.starts_with("ANA ("), "{other}");
    // The operator's command line still refuses a clash with a provisioned name.
    assert!(
        admin::create_user(&t.app, &name.to_uppercase())
            .await
            .is_err()
    );
}

const MEMBERS_CLAIM: &str = "switchboard_workspaces";

/// The memberships claim decides the user's memberships at each sign-in: granted ones are
/// added with their role, others removed like the API removes a member (sessions end, audit).
/// A cached or already signed-in token changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn claimed_memberships_follow_each_sign_in() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let mapped = Provider {
        memberships_claim: Some(MEMBERS_CLAIM.to_owned()),
        console: None,
        ..provider(&idp)
    };
    let t = start(vec![mapped]).await;
    let first = t.admin.workspace_id;
    let second = t.new_workspace_admin("owner").await;
    let unknown = Uuid::now_v7();
    let grant = |grants: Value, jti: &str| {
        idp.mint(
            "k1",
            &with(
                idp.claims("ana"),
                json!({ MEMBERS_CLAIM: grants, "jti": jti }),
            ),
        )
    };
    let roles = |body: &Value| -> Vec<(String, String)> {
        let mut roles: Vec<(String, String)> = body["data"]["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["id"].as_str().unwrap().to_owned(),
                    w["role"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        roles.sort();
        roles
    };
    let sorted = |mut v: Vec<(String, String)>| {
        v.sort();
        v
    };

    let token1 = grant(
        json!({ first.to_string(): "editor", second.workspace_id.to_string(): "viewer", unknown.to_string(): "admin" }),
        "1",
    );
    let body = t.gql(Some(&token1), WORKSPACES, json!({})).await;
    assert_eq!(
        roles(&body),
        sorted(vec![
            (first.to_string(), "EDITOR".into()),
            (second.workspace_id.to_string(), "VIEWER".into()),
        ]),
        "{body}"
    );
    let user_id = viewer(&t, &token1).await["id"].as_str().unwrap().to_owned();

    // A socket opened with the first token, watching the second workspace.
    let mut socket = connect(&t, &token1).await;

    // The next sign-in grants only the first workspace, as admin: the second membership goes,
    // and with it the user's sessions.
    let token2 = grant(json!({ first.to_string(): "admin" }), "2");
    let body = t.gql(Some(&token2), WORKSPACES, json!({})).await;
    assert_eq!(
        roles(&body),
        vec![(first.to_string(), "ADMIN".into())],
        "{body}"
    );
    let (code, reason) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4403, "{reason}");

    // The removal is audited in the workspace, naming the issuer.
    let audit = t
        .ok(
            &second,
            "query($w: ID!) { workspace(id: $w) { auditEvents(first: 20) { edges { node { action targetId details actor { id } } } } } }",
            json!({ "w": second.workspace_id.to_string() }),
        )
        .await;
    let events = audit["workspace"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    let removal = events
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["action"] == "workspace.member.remove")
        .unwrap_or_else(|| panic!("no removal in {events:?}"));
    assert_eq!(removal["targetId"], user_id.as_str());
    assert_eq!(removal["details"]["issuer"], idp.issuer.as_str());
    assert_eq!(removal["details"]["role"], "viewer");

    // An admin removes the user through the API; the already signed-in token does not bring the
    // membership back, a new sign-in does.
    let admin_actor = t.admin.clone();
    t.ok(
        &admin_actor,
        "mutation($w: ID!, $u: ID!) { removeWorkspaceMember(workspaceId: $w, userId: $u) }",
        json!({ "w": first.to_string(), "u": user_id }),
    )
    .await;
    // The first workspace keeps its bootstrap admin, so the user was not its last admin.
    let body = t.gql(Some(&token2), WORKSPACES, json!({})).await;
    assert_eq!(roles(&body), vec![], "{body}");
    let token3 = grant(json!({ first.to_string(): "viewer" }), "3");
    // Concurrent first requests with one token: every answer already has the membership, and
    // it is applied once.
    let answers =
        futures_util::future::join_all((0..5).map(|_| t.gql(Some(&token3), WORKSPACES, json!({}))))
            .await;
    for body in &answers {
        assert_eq!(
            roles(body),
            vec![(first.to_string(), "VIEWER".into())],
            "{body}"
        );
    }
    let audit = t
        .ok(
            &admin_actor,
            "query($w: ID!) { workspace(id: $w) { auditEvents(first: 50) { edges { node { action targetId details } } } } }",
            json!({ "w": first.to_string() }),
        )
        .await;
    let viewer_adds = audit["workspace"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["node"]["action"] == "workspace.member.add"
                && e["node"]["targetId"] == user_id.as_str()
                && e["node"]["details"]["role"] == "viewer"
        })
        .count();
    assert_eq!(viewer_adds, 1, "{audit}");

    // A malformed claim refuses the token and changes nothing.
    for bad in [
        json!(["ws:viewer"]),
        json!({ first.to_string(): "owner" }),
        json!({ "x": "viewer" }),
    ] {
        assert_refused(&t, &grant(bad.clone(), "4"), &bad.to_string()).await;
    }
    let body = t.gql(Some(&token3), WORKSPACES, json!({})).await;
    assert_eq!(
        roles(&body),
        vec![(first.to_string(), "VIEWER".into())],
        "{body}"
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(t: &TestApp) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", t.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade")
        .0
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next JSON message, or the close code and reason.
async fn next(socket: &mut Socket, wait: Duration) -> Result<Value, (u16, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("nothing within {wait:?}"),
            Ok(None | Some(Err(_))) => return Err((1006, String::new())),
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "ping" {
                    return Ok(value);
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new())));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn closed(socket: &mut Socket, wait: Duration) -> (u16, String) {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(close) = next(socket, left).await {
            return close;
        }
    }
}

/// A socket whose `connection_init` carries `token`, acknowledged.
async fn connect(t: &TestApp, token: &str) -> Socket {
    let mut socket = open(t).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
    let ack = next(&mut socket, Duration::from_secs(10))
        .await
        .expect("ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

/// `connection_init` accepts a JWT: operations run as its user; the socket closes with 4401
/// when the token expires. A refused JWT closes the socket 4403 like a bad API token.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_opened_with_a_jwt_runs_as_its_user_and_closes_4401_at_expiry() {
    let idp = FakeOidc::start(&[KeyAlg::EdDsa]).await;
    let t = start(vec![provider(&idp)]).await;
    let claims = with(
        idp.claims("ana"),
        json!({ "name": "Ana", "exp": now_secs() + 3 }),
    );
    let token = idp.mint("k1", &claims);
    let mut socket = connect(&t, &token).await;
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": VIEWER } }),
    )
    .await;
    let answer = next(&mut socket, Duration::from_secs(5))
        .await
        .expect("next");
    assert_eq!(answer["type"], "next", "{answer}");
    assert_eq!(answer["payload"]["data"]["viewer"]["name"], "Ana");
    assert_eq!(
        answer["payload"]["data"]["viewer"]["authenticatedBy"]["method"],
        "IDENTITY_PROVIDER"
    );
    let started = Instant::now();
    let (code, reason) = closed(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // An expired token (beyond the skew) is refused at connection_init.
    let expired = idp.mint("k1", &with(claims, json!({ "exp": now_secs() - 120 })));
    let mut socket = open(&t).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {expired}") } }),
    )
    .await;
    let (code, _) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4403);
}

const WHOAMI: &str = "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"whoami\", arguments: {}) { content isError } }";

/// A membership the claim no longer grants ends like one an admin removes: the user's own
/// grant on the workspace's per-user server is revoked upstream and deleted, and the user's
/// calls there stop.
#[tokio::test(flavor = "multi_thread")]
async fn a_membership_no_longer_claimed_revokes_the_users_grants() {
    use crate::support::fake_as::{AsConfig, FakeAuthServer};
    use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, whoami_tool};

    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let mapped = Provider {
        memberships_claim: Some(MEMBERS_CLAIM.to_owned()),
        console: None,
        ..provider(&idp)
    };
    let t = start(vec![mapped]).await;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![whoami_tool()],
        ..McpConfig::default()
    })
    .await;
    let server = t
        .create_server(
            &t.admin,
            json!({ "name": "mine", "url": mcp.url(), "credentials": "PER_USER" }),
        )
        .await;
    let workspace = t.admin.workspace_id;
    let token = idp.mint(
        "k1",
        &with(
            idp.claims("ana"),
            json!({ MEMBERS_CLAIM: { workspace.to_string(): "viewer" } }),
        ),
    );
    let user_id = Uuid::parse_str(viewer(&t, &token).await["id"].as_str().unwrap()).unwrap();
    let ana = crate::support::Actor {
        user_id,
        token: token.clone(),
        workspace_id: workspace,
    };
    auth.set_subject("ana-upstream");
    let run = t.authorize_in_browser(&ana, &server).await;
    assert_eq!(run.status, 200, "{}", run.page);
    let body = t.gql(Some(&token), WHOAMI, json!({ "id": server })).await;
    assert_eq!(
        body["data"]["callMcpTool"]["content"][0]["text"], "ana-upstream",
        "{body}"
    );
    assert!(auth.revocations().is_empty());

    let next = idp.mint(
        "k1",
        &with(idp.claims("ana"), json!({ MEMBERS_CLAIM: {}, "jti": "2" })),
    );
    let body = t.gql(Some(&next), WORKSPACES, json!({})).await;
    assert_eq!(body["data"]["workspaces"], json!([]), "{body}");
    let revoked: Vec<Option<String>> = auth.revocations().into_iter().map(|r| r.subject).collect();
    assert!(!revoked.is_empty(), "the grant was revoked upstream");
    assert!(
        revoked.iter().all(|s| s.as_deref() == Some("ana-upstream")),
        "{revoked:?}"
    );
    let mut conn = t.app.db.conn().await.unwrap();
    let grant = switchboard::db::oauth::find_grant(
        &mut conn,
        Uuid::parse_str(&server).unwrap(),
        Some(user_id),
    )
    .await
    .unwrap();
    assert!(grant.is_none());
    drop(conn);
    let body = t.gql(Some(&next), WHOAMI, json!({ "id": server })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
}

/// Two providers of one issuer (two audiences) share its keys: each audience is accepted, one
/// key fetch serves both, and an audience neither names is refused.
#[tokio::test(flavor = "multi_thread")]
async fn providers_of_one_issuer_share_its_keys() {
    let idp = FakeOidc::start(&[KeyAlg::Rs256]).await;
    let web = provider(&idp);
    let mobile = Provider {
        audience: "switchboard-mobile".to_owned(),
        ..provider(&idp)
    };
    let t = start(vec![web, mobile]).await;
    let first = viewer(&t, &idp.mint("k1", &idp.claims("ana"))).await;
    let second = viewer(
        &t,
        &idp.mint(
            "k1",
            &with(idp.claims("ana"), json!({ "aud": "switchboard-mobile" })),
        ),
    )
    .await;
    assert_eq!(first["id"], second["id"], "one subject, one user");
    assert_refused(
        &t,
        &idp.mint(
            "k1",
            &with(idp.claims("ana"), json!({ "aud": "elsewhere" })),
        ),
        "neither audience",
    )
    .await;
    assert_eq!(idp.jwks_fetches(), 1);
}
