//! GraphQL over WebSocket as a client sees it: sessions that end with their credentials (a
//! revoked token, a removed member), a demoted member who keeps a socket with the new role,
//! the protocol's close codes, the caps and timeouts, graceful shutdown, and member removal
//! through the API and the command line.

use std::time::{Duration, Instant};

use crate::support::{Actor, Options, TestApp, error_code};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::db::{DatabaseTarget, DbTime};
use switchboard::domain::access::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SUBSCRIPTION: &str =
    "subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId current { reason } } }";
const CREATE_TOKEN: &str =
    "mutation($n: String!) { createApiToken(name: $n) { token apiToken { id name } } }";
const REMOVE_MEMBER: &str =
    "mutation($w: ID!, $u: ID!) { removeWorkspaceMember(workspaceId: $w, userId: $u) }";
const SET_ROLE: &str = "mutation($w: ID!, $u: ID!, $r: WorkspaceRole!) { \
    addWorkspaceMember(workspaceId: $w, userId: $u, role: $r) { role } }";

/// Open a socket speaking `protocol`, without sending anything.
async fn open(t: &TestApp, protocol: &str) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", t.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

async fn init(socket: &mut Socket, token: &str) {
    send(
        socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
}

/// A `graphql-transport-ws` socket authenticated with `token` and acknowledged.
async fn connect(t: &TestApp, token: &str) -> Socket {
    let mut socket = open(t, "graphql-transport-ws").await;
    init(&mut socket, token).await;
    match next(&mut socket, Duration::from_secs(10)).await {
        Some(Frame::Json(ack)) => assert_eq!(ack["type"], "connection_ack", "{ack}"),
        other => panic!("expected connection_ack, got {other:?}"),
    }
    socket
}

async fn subscribe(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    send(
        socket,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
}

async fn watch_status(socket: &mut Socket, id: &str, workspace: Uuid) {
    subscribe(
        socket,
        id,
        SUBSCRIPTION,
        json!({ "w": workspace.to_string() }),
    )
    .await;
}

#[derive(Debug)]
enum Frame {
    Json(Value),
    Closed { code: u16, reason: String },
}

/// The next message within `wait`, skipping keep-alives; `None` when nothing came.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Frame> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(None) | Ok(Some(Err(_))) => {
                return Some(Frame::Closed {
                    code: 1006,
                    reason: String::new(),
                });
            }
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "ka" || value["type"] == "ping" {
                    continue;
                }
                return Some(Frame::Json(value));
            }
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return Some(Frame::Closed { code, reason });
            }
            _ => {}
        }
    }
}

/// The next JSON message within `wait`, which must come.
async fn message(socket: &mut Socket, wait: Duration) -> Value {
    match next(socket, wait).await {
        Some(Frame::Json(value)) => value,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Read until the server closes the socket, within `wait`: the close code and reason, and the
/// messages that came before.
async fn closed(socket: &mut Socket, wait: Duration) -> (u16, String, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(socket, left).await {
            Some(Frame::Json(value)) => before.push(value),
            Some(Frame::Closed { code, reason }) => return (code, reason, before),
            None => panic!("the socket was not closed within {wait:?}; got {before:?}"),
        }
    }
}

/// Nothing arrives within `wait`, and the socket stays open.
async fn quiet(socket: &mut Socket, wait: Duration) {
    if let Some(frame) = next(socket, wait).await {
        panic!("expected silence, got {frame:?}");
    }
}

/// A second token of `actor`'s user: (token, id).
async fn second_token(t: &TestApp, actor: &Actor, name: &str) -> (String, Uuid) {
    let data = t.ok(actor, CREATE_TOKEN, json!({ "n": name })).await;
    let token = data["createApiToken"]["token"].as_str().unwrap().to_owned();
    let id = data["createApiToken"]["apiToken"]["id"].as_str().unwrap();
    (token, Uuid::parse_str(id).unwrap())
}

async fn token_names(t: &TestApp, actor: &Actor) -> Vec<String> {
    let data = t.ok(actor, "{ apiTokens { name } }", json!({})).await;
    data["apiTokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|token| token["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn create_server(t: &TestApp, actor: &Actor, name: &str) -> String {
    t.create_server(
        actor,
        json!({ "name": name, "url": format!("http://127.0.0.1:9/{name}"), "authType": "NONE" }),
    )
    .await
}

/// A status event of `id` carrying `reason`.
fn is_event(message: &Value, id: &str, reason: &str) -> bool {
    message["type"] == "next"
        && message["id"] == id
        && message["payload"]["data"]["mcpServerStatus"]["current"]["reason"] == reason
}

/// (a) An operation started with a token revoked behind the server's back (no announcement)
/// is refused and closes the socket 4403; nothing runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_starts_no_operation() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (token, token_id) = second_token(&t, a, "socket").await;
    let mut socket = connect(&t, &token).await;

    subscribe(&mut socket, "1", CREATE_TOKEN, json!({ "n": "before" })).await;
    let minted = message(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(minted["type"], "next", "{minted}");
    assert!(
        minted["payload"]["data"]["createApiToken"]["token"]
            .as_str()
            .unwrap()
            .starts_with("sbt_"),
        "{minted}"
    );
    assert_eq!(
        message(&mut socket, Duration::from_secs(10)).await["type"],
        "complete"
    );

    let mut conn = t.app.db.conn().await.unwrap();
    assert!(
        switchboard::db::access::revoke_token(
            &mut conn,
            token_id,
            a.user_id,
            DbTime(switchboard::db::now())
        )
        .await
        .unwrap()
    );
    drop(conn);

    subscribe(&mut socket, "2", CREATE_TOKEN, json!({ "n": "after" })).await;
    let (code, _, before) = closed(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, 4403);
    assert!(before.is_empty(), "nothing ran: {before:?}");
    let names = token_names(&t, a).await;
    assert!(names.contains(&"before".to_owned()), "{names:?}");
    assert!(!names.contains(&"after".to_owned()), "{names:?}");
    // The minted token outlives nothing either: HTTP refuses the revoked one.
    let (status, _) = t
        .gql_raw(Some(&token), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(status, 401);
}

/// (a) Revoking a token through the API closes every socket opened with it, at once, and only
/// those.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_token_closes_its_sockets() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let (token, token_id) = second_token(&t, a, "socket").await;
    let mut first = connect(&t, &token).await;
    let mut second = connect(&t, &token).await;
    let mut other = connect(&t, &a.token).await;
    watch_status(&mut first, "1", a.workspace_id).await;

    let revoked_at = Instant::now();
    t.ok(
        a,
        "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }",
        json!({ "id": token_id.to_string() }),
    )
    .await;
    for socket in [&mut first, &mut second] {
        let (code, reason, _) = closed(socket, Duration::from_secs(5)).await;
        assert_eq!(code, 4403, "{reason}");
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "closed in {:?}",
        revoked_at.elapsed()
    );

    // The admin's own token is untouched: its socket still works.
    watch_status(&mut other, "1", a.workspace_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    create_server(&t, a, "after").await;
    let event = message(&mut other, Duration::from_secs(10)).await;
    assert!(is_event(&event, "1", "CREATED"), "{event}");
}

/// (c) A removed member's socket closes 4403 and its subscription delivers nothing more; the
/// removal is audited.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_member_is_disconnected() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let vic = t.new_member("vic", a.workspace_id, Role::Viewer).await;
    let mut socket = connect(&t, &vic.token).await;
    watch_status(&mut socket, "1", a.workspace_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    create_server(&t, a, "one").await;
    let event = message(&mut socket, Duration::from_secs(10)).await;
    assert!(is_event(&event, "1", "CREATED"), "{event}");

    let data = t
        .ok(
            a,
            REMOVE_MEMBER,
            json!({ "w": a.workspace_id.to_string(), "u": vic.user_id.to_string() }),
        )
        .await;
    assert_eq!(data["removeWorkspaceMember"], vic.user_id.to_string());
    let removed_at = Instant::now();
    create_server(&t, a, "two").await;
    let (code, _, before) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4403);
    assert!(removed_at.elapsed() < Duration::from_secs(1));
    assert!(
        before.iter().all(|m| m["type"] != "next"),
        "no event after the removal: {before:?}"
    );

    // Reconnecting works (the token is valid) but the workspace is out of reach.
    let mut again = connect(&t, &vic.token).await;
    watch_status(&mut again, "1", a.workspace_id).await;
    let refused = message(&mut again, Duration::from_secs(10)).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{refused}"
    );

    let audit = t
        .ok(
            a,
            "query($w: ID!) { workspace(id: $w) { auditEvents(first: 20) { edges { node { action targetId details } } } } }",
            json!({ "w": a.workspace_id.to_string() }),
        )
        .await;
    let removal = audit["workspace"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| &edge["node"])
        .find(|node| node["action"] == "workspace.member.remove")
        .cloned()
        .expect("an audit event");
    assert_eq!(removal["targetId"], vic.user_id.to_string());
    assert_eq!(removal["details"]["role"], "viewer");
}

/// (c) A demoted member keeps the socket: the running subscription keeps delivering, and every
/// operation started afterwards runs with the new role.
#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_member_keeps_the_socket_with_the_new_role() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let eve = t.new_member("eve", a.workspace_id, Role::Editor).await;
    let mut socket = connect(&t, &eve.token).await;
    let create = "mutation($w: ID!, $n: String!) { createMcpServer(input: { workspaceId: $w, \
        name: $n, url: \"http://127.0.0.1:9/x\", authType: NONE }) { server { id } } }";
    subscribe(
        &mut socket,
        "as-editor",
        create,
        json!({ "w": a.workspace_id.to_string(), "n": "by-editor" }),
    )
    .await;
    let created = message(&mut socket, Duration::from_secs(10)).await;
    assert!(
        created["payload"]["errors"].is_null(),
        "an editor creates servers: {created}"
    );
    assert_eq!(
        message(&mut socket, Duration::from_secs(10)).await["type"],
        "complete"
    );
    watch_status(&mut socket, "status", a.workspace_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    t.ok(
        a,
        SET_ROLE,
        json!({ "w": a.workspace_id.to_string(), "u": eve.user_id.to_string(), "r": "VIEWER" }),
    )
    .await;
    create_server(&t, a, "after-demotion").await;
    let event = message(&mut socket, Duration::from_secs(10)).await;
    assert!(is_event(&event, "status", "CREATED"), "{event}");

    subscribe(
        &mut socket,
        "as-viewer",
        create,
        json!({ "w": a.workspace_id.to_string(), "n": "by-viewer" }),
    )
    .await;
    let refused = message(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(refused["id"], "as-viewer", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert_eq!(
        message(&mut socket, Duration::from_secs(10)).await["type"],
        "complete"
    );
    quiet(&mut socket, Duration::from_millis(300)).await;
}

/// Removing members: admins only, never the last admin, and two admins removing each other at
/// once leave exactly one.
#[tokio::test(flavor = "multi_thread")]
async fn removing_members_keeps_an_admin() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let w = a.workspace_id.to_string();
    let editor = t.new_member("ed", a.workspace_id, Role::Editor).await;
    let outsider = t.new_workspace_admin("out").await;

    let body = t
        .gql(
            Some(&editor.token),
            REMOVE_MEMBER,
            json!({ "w": w, "u": a.user_id.to_string() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let body = t
        .gql(
            Some(&outsider.token),
            REMOVE_MEMBER,
            json!({ "w": w, "u": editor.user_id.to_string() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
    let body = t
        .gql(
            Some(&a.token),
            REMOVE_MEMBER,
            json!({ "w": w, "u": outsider.user_id.to_string() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "not a member: {body}");
    let body = t
        .gql(
            Some(&a.token),
            REMOVE_MEMBER,
            json!({ "w": w, "u": "nope" }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = t
        .gql(
            Some(&a.token),
            REMOVE_MEMBER,
            json!({ "w": w, "u": a.user_id.to_string() }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        Some("CONFLICT"),
        "the last admin: {body}"
    );

    let second = t.new_member("ad", a.workspace_id, Role::Admin).await;
    let (one, two) = tokio::join!(
        t.gql(
            Some(&a.token),
            REMOVE_MEMBER,
            json!({ "w": w, "u": second.user_id.to_string() })
        ),
        t.gql(
            Some(&second.token),
            REMOVE_MEMBER,
            json!({ "w": w, "u": a.user_id.to_string() })
        ),
    );
    // The loser either lost the race inside the lock (the last admin stays) or was already
    // removed when its request was authenticated.
    let mut codes = [error_code(&one), error_code(&two)];
    codes.sort();
    assert!(
        codes == [None, Some("CONFLICT")] || codes == [None, Some("NOT_FOUND")],
        "exactly one removal succeeds: {one} {two}"
    );
    let survivor = if error_code(&one).is_none() {
        a
    } else {
        &second
    };
    let data = t
        .ok(
            survivor,
            "query($w: ID!) { workspace(id: $w) { role } }",
            json!({ "w": w }),
        )
        .await;
    assert_eq!(data["workspace"]["role"], "ADMIN");

    // Demoting another admin is fine while one admin remains.
    let third = t.new_member("ad3", a.workspace_id, Role::Admin).await;
    t.ok(
        survivor,
        SET_ROLE,
        json!({ "w": w, "u": third.user_id.to_string(), "r": "EDITOR" }),
    )
    .await;
}

/// (d) A socket that never sends `connection_init` is closed 4408; meanwhile it is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_without_connection_init_is_closed() {
    let t = TestApp::start_configured(Options::default(), |config| {
        config.websocket.init_timeout = Duration::from_millis(500);
    })
    .await;
    let opened = Instant::now();
    let mut socket = open(&t, "graphql-transport-ws").await;
    assert_eq!(t.metric("switchboard_websockets_open").await, 1.0);
    let (code, _, _) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4408);
    assert!(opened.elapsed() >= Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.metric("switchboard_websockets_open").await != 0.0 {
        assert!(Instant::now() < deadline, "the socket is still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        t.metric("switchboard_websocket_closes_total{code=\"4408\"}")
            .await,
        1.0
    );

    // An acknowledged socket is not held to the init timeout.
    let mut socket = connect(&t, &t.admin.token).await;
    quiet(&mut socket, Duration::from_millis(800)).await;
}

/// A socket reaches its lifetime: closed 1001 with a reason that says to reconnect.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_is_closed_at_the_end_of_its_lifetime() {
    let t = TestApp::start_configured(Options::default(), |config| {
        config.websocket.max_lifetime = Duration::from_millis(800);
    })
    .await;
    let mut socket = connect(&t, &t.admin.token).await;
    let (code, reason, _) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 1001);
    assert!(reason.contains("reconnect"), "{reason}");
}

/// (e) Sockets per user: the one over the cap is closed 1013 after `connection_init`; a place
/// freed is usable again. Another user is not affected.
#[tokio::test(flavor = "multi_thread")]
async fn sockets_per_user_are_capped() {
    let t = TestApp::start_configured(Options::default(), |config| {
        config.websocket.max_sockets_per_user = 2;
    })
    .await;
    let a = &t.admin;
    let first = connect(&t, &a.token).await;
    let _second = connect(&t, &a.token).await;
    let mut third = open(&t, "graphql-transport-ws").await;
    init(&mut third, &a.token).await;
    let (code, reason, before) = closed(&mut third, Duration::from_secs(5)).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(before.is_empty(), "no ack: {before:?}");

    let bea = t.new_workspace_admin("bea").await;
    let _theirs = connect(&t, &bea.token).await;

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = open(&t, "graphql-transport-ws").await;
        init(&mut again, &a.token).await;
        match next(&mut again, Duration::from_secs(5)).await {
            Some(Frame::Json(ack)) if ack["type"] == "connection_ack" => break,
            other => assert!(
                Instant::now() < deadline,
                "the freed place was not reused: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (e) Sockets per process, authenticated or not: the one over the cap is refused with 503
/// before the upgrade.
#[tokio::test(flavor = "multi_thread")]
async fn sockets_per_process_are_capped() {
    let t = TestApp::start_configured(Options::default(), |config| {
        config.websocket.max_sockets = 2;
    })
    .await;
    let _authenticated = connect(&t, &t.admin.token).await;
    let silent = open(&t, "graphql-transport-ws").await;
    let mut request = format!("ws://{}/graphql/ws", t.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio_tungstenite::connect_async(request.clone())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the freed place was not reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (e) Operations per socket: the one over the cap is refused with `RATE_LIMITED` and the
/// socket and its other subscriptions carry on; completing one makes room.
#[tokio::test(flavor = "multi_thread")]
async fn operations_per_socket_are_capped() {
    let t = TestApp::start_configured(Options::default(), |config| {
        config.websocket.max_subscriptions_per_socket = 2;
    })
    .await;
    let a = &t.admin;
    let mut socket = connect(&t, &a.token).await;
    watch_status(&mut socket, "1", a.workspace_id).await;
    watch_status(&mut socket, "2", a.workspace_id).await;
    watch_status(&mut socket, "3", a.workspace_id).await;
    let refused = message(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "3");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    create_server(&t, a, "one").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let event = message(&mut socket, Duration::from_secs(10)).await;
        assert_eq!(event["type"], "next", "{event}");
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["1", "2"]);

    send(&mut socket, json!({ "id": "1", "type": "complete" })).await;
    watch_status(&mut socket, "3", a.workspace_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    create_server(&t, a, "two").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let event = message(&mut socket, Duration::from_secs(10)).await;
        assert_eq!(event["type"], "next", "{event}");
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["2", "3"]);
    assert_eq!(
        t.metric("switchboard_graphql_errors_total{code=\"RATE_LIMITED\"}")
            .await,
        1.0
    );
}

/// (f) The protocol's close codes.
#[tokio::test(flavor = "multi_thread")]
async fn protocol_violations_close_with_their_codes() {
    let t = TestApp::start().await;
    let a = &t.admin;

    // 4409: an id that is already running.
    let mut socket = connect(&t, &a.token).await;
    watch_status(&mut socket, "same", a.workspace_id).await;
    watch_status(&mut socket, "same", a.workspace_id).await;
    let (code, reason, _) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(
        (code, reason.as_str()),
        (4409, "Subscriber for same already exists")
    );

    // 4400: not JSON, an unknown type, a subscribe without a query.
    for bad in [
        Message::text("{not json"),
        Message::text(json!({ "type": "hello" }).to_string()),
        Message::text(json!({ "id": "1", "type": "subscribe" }).to_string()),
    ] {
        let mut socket = connect(&t, &a.token).await;
        socket.send(bad.clone()).await.unwrap();
        let (code, _, _) = closed(&mut socket, Duration::from_secs(5)).await;
        assert_eq!(code, 4400, "{bad:?}");
    }

    // 4401: subscribe before connection_ack.
    let mut socket = open(&t, "graphql-transport-ws").await;
    watch_status(&mut socket, "1", a.workspace_id).await;
    let (code, _, before) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4401);
    assert!(before.is_empty(), "{before:?}");

    // 4403: no token, a wrong one, a malformed payload.
    for payload in [
        json!({}),
        json!({ "Authorization": "Bearer sbt_wrong" }),
        json!("sbt_x"),
    ] {
        let mut socket = open(&t, "graphql-transport-ws").await;
        send(
            &mut socket,
            json!({ "type": "connection_init", "payload": payload }),
        )
        .await;
        let (code, _, before) = closed(&mut socket, Duration::from_secs(5)).await;
        assert_eq!(code, 4403, "{payload}");
        assert!(before.is_empty(), "no ack: {before:?}");
    }

    // 4429: a second connection_init.
    let mut socket = connect(&t, &a.token).await;
    init(&mut socket, &a.token).await;
    let (code, _, _) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4429);

    // Ping is answered with pong, before and after the ack.
    let mut socket = open(&t, "graphql-transport-ws").await;
    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(
        message(&mut socket, Duration::from_secs(5)).await["type"],
        "pong"
    );

    // No supported sub-protocol: refused before the upgrade.
    let request = format!("ws://{}/graphql/ws", t.addr)
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 400)
        }
        other => panic!("expected 400, got {:?}", other.map(|(_, r)| r.status())),
    }
}

/// (h) The legacy protocol: a refused `connection_init` is answered with `connection_error`
/// before the close, `stop` is confirmed with `complete`, `connection_terminate` closes 1000.
#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_protocol_refuses_and_stops_its_way() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mut socket = open(&t, "graphql-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "token": "sbt_wrong" } }),
    )
    .await;
    let (code, _, before) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4403);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["type"], "connection_error");

    let mut socket = open(&t, "graphql-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "token": a.token } }),
    )
    .await;
    assert_eq!(
        message(&mut socket, Duration::from_secs(5)).await["type"],
        "connection_ack"
    );
    send(
        &mut socket,
        json!({ "id": "1", "type": "start", "payload": { "query": SUBSCRIPTION, "variables": { "w": a.workspace_id.to_string() } } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    create_server(&t, a, "legacy").await;
    let event = message(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(event["type"], "data", "{event}");
    send(&mut socket, json!({ "id": "1", "type": "stop" })).await;
    let done = message(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(
        (done["type"].as_str(), done["id"].as_str()),
        (Some("complete"), Some("1"))
    );
    create_server(&t, a, "unheard").await;
    quiet(&mut socket, Duration::from_millis(300)).await;
    send(&mut socket, json!({ "type": "connection_terminate" })).await;
    let (code, _, _) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 1000);
}

/// (g) A graceful shutdown sends every socket a close frame (1001) before the server stops.
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_shutdown_closes_sockets_with_a_frame() {
    let t = TestApp::start().await;
    let a = t.admin.clone();
    let mut acknowledged = connect(&t, &a.token).await;
    watch_status(&mut acknowledged, "1", a.workspace_id).await;
    let mut silent = open(&t, "graphql-transport-ws").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(t.stop());
    for socket in [&mut acknowledged, &mut silent] {
        let (code, reason, _) = closed(socket, Duration::from_secs(10)).await;
        assert_eq!(code, 1001, "{reason}");
    }
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the server stops")
        .unwrap();
}

/// `switchboard admin remove-member`: refuses the last admin; removes a member, whose open
/// socket then closes 4403 — at once on PostgreSQL (the change is announced through the
/// database), at its next operation on SQLite (the command line is another process).
#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_removes_members() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let vic = t.new_member("vic", a.workspace_id, Role::Viewer).await;
    let mut socket = connect(&t, &vic.token).await;
    watch_status(&mut socket, "1", a.workspace_id).await;

    let database_url = match &t.app.config.database {
        DatabaseTarget::Postgres(url) => url.clone(),
        DatabaseTarget::Sqlite(path) => format!("sqlite://{}", path.display()),
    };
    let workspace = a.workspace_id;
    let url = database_url.clone();
    let admin = a.user_id;
    let (ok, _, stderr) =
        tokio::task::spawn_blocking(move || remove_member_cli(&url, workspace, admin))
            .await
            .unwrap();
    assert!(
        !ok && stderr.contains("admin"),
        "the last admin stays: {stderr}"
    );

    let vic_id = vic.user_id;
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || remove_member_cli(&database_url, workspace, vic_id))
            .await
            .unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "ok");
    if !t.app.db.is_postgres() {
        watch_status(&mut socket, "2", a.workspace_id).await;
    }
    let (code, _, before) = closed(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 4403);
    assert!(before.is_empty(), "{before:?}");
}

/// Run `switchboard admin remove-member` against the database at `url`: (success, stdout,
/// stderr).
fn remove_member_cli(url: &str, workspace: Uuid, user: Uuid) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_DATABASE_URL", url)
        .env(
            "SWITCHBOARD_ENCRYPTION_KEYS",
            format!("k1:{}", "ab".repeat(32)),
        )
        .args([
            "admin",
            "remove-member",
            "--workspace",
            &workspace.to_string(),
            "--user",
            &user.to_string(),
        ])
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
