//! Replicas sharing one PostgreSQL: a status change made through one replica reaches the
//! dashboards subscribed on every other, once, in order, and only in its own workspace.
//!
//! On SQLite (one process, nothing to relay) only the backend-neutral checks run.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{Actor, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::db::DatabaseTarget;
use switchboard::db::notify::{Listener, Notification, notify};
use switchboard::domain::status::{
    AuthStatus, ConnectionStatus, Status, StatusEvent, StatusReason,
};
use switchboard::{App, AppHandle};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A second replica of the test app, on the same database, serving HTTP on its own port.
struct Replica {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start_replica(t: &TestApp) -> Replica {
    let app = App::build(t.app.config.clone(), t.app.keys.clone())
        .await
        .expect("build replica");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(switchboard::http::serve(
        app.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Replica { addr, _stop: stop }
}

/// Run a GraphQL operation that must succeed against the server at `addr`.
async fn ok_at(addr: SocketAddr, actor: &Actor, query: &str, variables: Value) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(&actor.token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

const SUBSCRIPTION: &str = "subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId previous { authStatus } \
    current { connectionStatus authStatus reason } reason server { name } } }";

/// A `graphql-transport-ws` subscription to `actor`'s workspace on the server at `addr`.
async fn subscribe(addr: SocketAddr, actor: &Actor) -> Socket {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    let init = json!({ "Authorization": format!("Bearer {}", actor.token) });
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": init }).to_string(),
        ))
        .await
        .unwrap();
    let ack = next(&mut socket, Duration::from_secs(10))
        .await
        .expect("ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIPTION, "variables": { "w": actor.workspace_id.to_string() } } })
                .to_string(),
        ))
        .await
        .unwrap();
    socket
}

/// The next JSON message within `wait`, skipping keep-alives; `None` when nothing came or the
/// socket closed.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        match message.ok()? {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "ka" || value["type"] == "ping" {
                    continue;
                }
                return Some(value);
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

fn postgres_url(t: &TestApp) -> Option<String> {
    match &t.app.config.database {
        DatabaseTarget::Postgres(url) => Some(url.clone()),
        DatabaseTarget::Sqlite(_) => None,
    }
}

/// A dashboard on replica A sees a change made through replica B exactly once, and a change in
/// another workspace reaches that workspace's dashboard only.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_through_one_replica_reaches_subscribers_on_another() {
    let t = TestApp::start().await;
    if !t.app.db.is_postgres() {
        return; // Replicas share PostgreSQL; SQLite serves one process.
    }
    let b = start_replica(&t).await;
    let ours = &t.admin;
    let theirs = t.new_workspace_admin("bea").await;
    let id = t
        .create_server(ours, json!({ "name": "s", "url": "http://127.0.0.1:9/s" }))
        .await;

    let mut ours_on_a = subscribe(t.addr, ours).await;
    let mut theirs_on_a = subscribe(t.addr, &theirs).await;
    // Give the subscriptions a moment to attach before causing the changes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let created = ok_at(
        b.addr,
        &theirs,
        "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }",
        json!({ "i": { "workspaceId": theirs.workspace_id.to_string(), "name": "theirs", "url": "http://127.0.0.1:9/t" } }),
    )
    .await;
    let their_id = created["createMcpServer"]["server"]["id"].as_str().unwrap();
    ok_at(
        b.addr,
        ours,
        "mutation($id: ID!) { updateMcpServer(id: $id, input: { authType: OAUTH }) { id } }",
        json!({ "id": id }),
    )
    .await;

    // Their change was published first; had it leaked past the workspace filter it would
    // arrive here before ours.
    let message = next(&mut ours_on_a, Duration::from_secs(10))
        .await
        .expect("event from the other replica");
    assert_eq!(message["type"], "next", "{message}");
    let event = &message["payload"]["data"]["mcpServerStatus"];
    assert_eq!(event["serverId"], id.as_str(), "{message}");
    assert_eq!(event["previous"]["authStatus"], "NOT_REQUIRED");
    assert_eq!(event["current"]["authStatus"], "AUTHORIZATION_REQUIRED");
    assert_eq!(event["reason"], "AUTH_TYPE_CHANGED");
    assert_eq!(event["server"]["name"], "s");

    let message = next(&mut theirs_on_a, Duration::from_secs(10))
        .await
        .expect("their event");
    let event = &message["payload"]["data"]["mcpServerStatus"];
    assert_eq!(event["serverId"], their_id, "{message}");
    // Created at an address that does not answer: registered, its auth type undetected.
    assert_eq!(event["reason"], "DETECTION_FAILED");
    assert_eq!(event["server"]["name"], "theirs");

    // Nothing else: no second copy, nothing from the other workspace.
    for socket in [&mut ours_on_a, &mut theirs_on_a] {
        let extra = next(socket, Duration::from_millis(1000)).await;
        assert!(extra.is_none(), "unexpected message: {extra:?}");
    }
}

fn event(workspace_id: Uuid) -> StatusEvent {
    StatusEvent {
        workspace_id,
        server_id: Uuid::new_v4(),
        previous: None,
        current: Status {
            connection: ConnectionStatus::Disconnected,
            auth: AuthStatus::NotRequired,
            reason: Some(StatusReason::Created),
        },
        at: switchboard::db::now(),
        user_id: None,
    }
}

async fn receive(receiver: &mut Receiver<StatusEvent>) -> StatusEvent {
    tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("event in time")
        .expect("event")
}

/// Both replicas publishing at once: each subscriber receives every event exactly once, and
/// each replica's events in the order it published them.
#[tokio::test(flavor = "multi_thread")]
async fn events_cross_replicas_once_and_in_publishing_order() {
    let t = TestApp::start().await;
    if !t.app.db.is_postgres() {
        return;
    }
    let a = t.app.clone();
    let b = App::build(t.app.config.clone(), t.app.keys.clone())
        .await
        .unwrap();
    let mut on_a = a.events.subscribe();
    let mut on_b = b.events.subscribe();

    let workspace = t.admin.workspace_id;
    let from_a: Vec<StatusEvent> = (0..100).map(|_| event(workspace)).collect();
    let from_b: Vec<StatusEvent> = (0..100).map(|_| event(workspace)).collect();
    let publish = |app: AppHandle, events: Vec<StatusEvent>| {
        tokio::spawn(async move {
            for (i, event) in events.into_iter().enumerate() {
                app.events.publish(event);
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let (done_a, done_b) = (
        publish(a.clone(), from_a.clone()),
        publish(b.clone(), from_b.clone()),
    );
    done_a.await.unwrap();
    done_b.await.unwrap();

    for receiver in [&mut on_a, &mut on_b] {
        let mut received = Vec::new();
        for _ in 0..from_a.len() + from_b.len() {
            received.push(receive(receiver).await);
        }
        let mine = |of: &[StatusEvent]| -> Vec<StatusEvent> {
            received
                .iter()
                .filter(|e| of.iter().any(|o| o.server_id == e.server_id))
                .cloned()
                .collect()
        };
        assert_eq!(mine(&from_a), from_a, "A's events, once each, in order");
        assert_eq!(mine(&from_b), from_b, "B's events, once each, in order");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(on_a.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(on_b.try_recv(), Err(TryRecvError::Empty)));
}

/// Sessions of this test's database whose last statement was a LISTEN.
async fn listening_sessions(url: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A replica's listening connection closes when the replica is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_replica_stops_listening() {
    let t = TestApp::start().await;
    let Some(url) = postgres_url(&t) else {
        return;
    };
    assert_eq!(listening_sessions(&url).await, 1);
    let replica = App::build(t.app.config.clone(), t.app.keys.clone())
        .await
        .unwrap();
    assert_eq!(listening_sessions(&url).await, 2);
    drop(replica);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listening_sessions(&url).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped replica still listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `notify` reaches a listener on PostgreSQL (channel names taken verbatim) and does nothing on
/// SQLite; a listener whose connection is killed reconnects and hears later notifications.
#[tokio::test(flavor = "multi_thread")]
async fn notifications_reach_listeners_and_survive_a_lost_connection() {
    let t = TestApp::start().await;
    let mut conn = t.app.db.conn().await.unwrap();
    notify(&mut conn, "Replica Test", "hello").await.unwrap();
    let Some(url) = postgres_url(&t) else {
        return;
    };
    let listener = Listener::start(&url, "Replica Test").await;
    let mut payloads = std::pin::pin!(listener.into_stream());
    notify(&mut conn, "replica test", "other channel")
        .await
        .unwrap();
    notify(&mut conn, "Replica Test", "hello").await.unwrap();
    let payload = tokio::time::timeout(Duration::from_secs(10), payloads.next())
        .await
        .expect("payload in time");
    assert_eq!(payload, Some(Notification::Payload("hello".to_owned())));

    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query = 'LISTEN \"Replica Test\"'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);

    // Notifications sent while it is reconnecting are lost, so the reconnection is announced
    // first; keep sending until a payload arrives.
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        let mut announced = false;
        loop {
            notify(&mut conn, "Replica Test", "again").await.unwrap();
            match tokio::time::timeout(Duration::from_millis(200), payloads.next()).await {
                Ok(Some(Notification::Reconnected)) => announced = true,
                Ok(payload) => return (announced, payload),
                Err(_) => {}
            }
        }
    })
    .await
    .expect("the listener reconnected");
    assert_eq!(
        received,
        (true, Some(Notification::Payload("again".to_owned())))
    );
}

/// The close code the server sends within `wait`, skipping other messages; `None` when the
/// socket stays open.
async fn close_code(socket: &mut Socket, wait: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(None) | Ok(Some(Err(_))) => return Some(1006),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A second token of `actor`'s user: the actor with that token, and the token's id.
async fn with_second_token(t: &TestApp, actor: &Actor) -> (Actor, String) {
    let data = t
        .ok(
            actor,
            "mutation { createApiToken(name: \"replica\") { token apiToken { id } } }",
            json!({}),
        )
        .await;
    let token = data["createApiToken"]["token"].as_str().unwrap().to_owned();
    let id = data["createApiToken"]["apiToken"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (
        Actor {
            token,
            ..actor.clone()
        },
        id,
    )
}

/// A token revoked through one replica closes, within a second, the socket opened with it on
/// another; a member removed through one replica loses their socket on another.
#[tokio::test(flavor = "multi_thread")]
async fn access_changes_through_one_replica_close_sockets_on_another() {
    let t = TestApp::start().await;
    if !t.app.db.is_postgres() {
        return;
    }
    let b = start_replica(&t).await;
    let admin = &t.admin;
    let (holder, token_id) = with_second_token(&t, admin).await;
    let mut revoked_on_b = subscribe(b.addr, &holder).await;
    let mut admin_on_b = subscribe(b.addr, admin).await;
    let viewer = t
        .new_member(
            "vic",
            admin.workspace_id,
            switchboard::domain::access::Role::Viewer,
        )
        .await;
    let mut viewer_on_b = subscribe(b.addr, &viewer).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let revoked_at = std::time::Instant::now();
    ok_at(
        t.addr,
        admin,
        "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
        json!({ "id": token_id }),
    )
    .await;
    assert_eq!(
        close_code(&mut revoked_on_b, Duration::from_secs(5)).await,
        Some(4403)
    );
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        revoked_at.elapsed()
    );

    ok_at(
        t.addr,
        admin,
        "mutation($w: ID!, $u: ID!) { removeWorkspaceMember(workspaceId: $w, userId: $u) }",
        json!({ "w": admin.workspace_id.to_string(), "u": viewer.user_id.to_string() }),
    )
    .await;
    assert_eq!(
        close_code(&mut viewer_on_b, Duration::from_secs(5)).await,
        Some(4403)
    );
    // The admin's own socket stays.
    assert_eq!(
        close_code(&mut admin_on_b, Duration::from_millis(500)).await,
        None
    );
}

/// A replica whose listening connection was lost checks every open socket again once it listens
/// again, so a revocation it never heard of still closes the socket.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_lost_its_listener_rechecks_its_sockets() {
    let t = TestApp::start().await;
    let Some(url) = postgres_url(&t) else {
        return;
    };
    let b = start_replica(&t).await;
    let admin = &t.admin;
    let (holder, token_id) = with_second_token(&t, admin).await;
    let mut socket = subscribe(b.addr, &holder).await;
    let mut untouched = subscribe(b.addr, admin).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Revoked in storage only: no replica is told.
    let mut conn = t.app.db.conn().await.unwrap();
    assert!(
        switchboard::db::access::revoke_token(
            &mut conn,
            Uuid::parse_str(&token_id).unwrap(),
            admin.user_id,
            switchboard::db::DbTime(switchboard::db::now()),
        )
        .await
        .unwrap()
    );
    assert_eq!(
        close_code(&mut socket, Duration::from_millis(500)).await,
        None
    );

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query = 'LISTEN \"switchboard_status\"'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 2, "both replicas listen");
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(15)).await,
        Some(4403)
    );
    assert_eq!(
        close_code(&mut untouched, Duration::from_millis(500)).await,
        None
    );
}

/// The answer of the server at `addr` to a workspace query with `actor`'s token: the error
/// code (`HIDDEN` when the workspace is not theirs), or `None` when they see it.
async fn workspace_code_at(addr: SocketAddr, actor: &Actor) -> Option<String> {
    let body: Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(&actor.token)
        .json(
            &json!({ "query": "query($w: ID!) { workspace(id: $w) { name } }",
                        "variables": { "w": actor.workspace_id } }),
        )
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => Some(code.to_owned()),
        // A workspace the caller is not a member of does not exist for them.
        None if body["data"]["workspace"].is_null() => Some("HIDDEN".to_owned()),
        None => None,
    }
}

/// Poll the server at `addr` until `actor`'s request is refused with `code`; how long it took.
async fn refused_within(addr: SocketAddr, actor: &Actor, code: &str) -> Duration {
    let started = std::time::Instant::now();
    loop {
        if workspace_code_at(addr, actor).await.as_deref() == Some(code) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {:?} after 5 s, not {code}",
            workspace_code_at(addr, actor).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Principals are cached per replica: a token revoked and a member removed through one replica
/// stop working on another within a second, not when the cache entry ages out.
#[tokio::test(flavor = "multi_thread")]
async fn cached_principals_on_another_replica_go_within_a_second() {
    let t = TestApp::start().await;
    if !t.app.db.is_postgres() {
        return;
    }
    let b = start_replica(&t).await;
    let admin = &t.admin;
    let (holder, token_id) = with_second_token(&t, admin).await;
    let viewer = t
        .new_member(
            "vic",
            admin.workspace_id,
            switchboard::domain::access::Role::Viewer,
        )
        .await;
    // Both are cached on the other replica.
    for _ in 0..3 {
        assert_eq!(workspace_code_at(b.addr, &holder).await, None);
        assert_eq!(workspace_code_at(b.addr, &viewer).await, None);
    }

    t.ok(
        admin,
        "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }",
        json!({ "id": token_id }),
    )
    .await;
    let took = refused_within(b.addr, &holder, "UNAUTHENTICATED").await;
    assert!(
        took < Duration::from_secs(1),
        "the revoked token worked for {took:?}"
    );

    t.ok(
        admin,
        "mutation($w: ID!, $u: ID!) { removeWorkspaceMember(workspaceId: $w, userId: $u) }",
        json!({ "w": admin.workspace_id, "u": viewer.user_id }),
    )
    .await;
    let took = refused_within(b.addr, &viewer, "HIDDEN").await;
    assert!(
        took < Duration::from_secs(1),
        "the removed member stayed for {took:?}"
    );
    // The admin, whose access did not change, is still served.
    assert_eq!(workspace_code_at(b.addr, admin).await, None);
}

/// One replica listens to a stateless server's tool changes; when it stops, another takes
/// over.
#[tokio::test(flavor = "multi_thread")]
async fn one_replica_listens_to_tool_changes_and_another_takes_over() {
    use crate::support::fake_mcp::{Era, FakeMcpServer, McpConfig, echo_tool};

    let t = TestApp::start_configured(Default::default(), |config| {
        config.catalogue_listeners = 8;
        config.catalogue_listen_every = Duration::from_millis(100);
        config.health_interval = Duration::ZERO;
    })
    .await;
    if !t.app.db.is_postgres() {
        return; // Replicas share PostgreSQL; SQLite serves one process.
    }
    let mcp = FakeMcpServer::start(McpConfig {
        era: Era::Modern,
        tools: vec![echo_tool()],
        ..McpConfig::default()
    })
    .await;
    let id = t
        .create_server(&t.admin, json!({ "name": "live", "url": mcp.url() }))
        .await;
    t.ok(
        &t.admin,
        "mutation($id: ID!) { refreshMcpServer(id: $id) { protocolVersion } }",
        json!({ "id": id }),
    )
    .await;
    let replicas: Vec<AppHandle> = vec![
        App::build(t.app.config.clone(), t.app.keys.clone())
            .await
            .unwrap(),
        App::build(t.app.config.clone(), t.app.keys.clone())
            .await
            .unwrap(),
    ];
    for replica in &replicas {
        switchboard::app::start_background_tasks(replica);
    }
    let wait_for = |count: usize, what: &'static str| {
        let mcp = &mcp;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while mcp.listeners() != count {
                assert!(tokio::time::Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(1, "nobody listens").await;
    // Several rounds later still one stream: the other replica does not listen too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mcp.listeners(), 1);
    assert_eq!(mcp.count("subscriptions/listen"), 1);

    // Stop the first replica. If it led, the second takes over (a second stream); if not, a
    // third replica starts and does not listen until the second, the leader, stops.
    replicas[0].stop_background_tasks();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last = if mcp.count("subscriptions/listen") == 1 {
        let third = App::build(t.app.config.clone(), t.app.keys.clone())
            .await
            .unwrap();
        switchboard::app::start_background_tasks(&third);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            mcp.count("subscriptions/listen"),
            1,
            "two replicas listened"
        );
        replicas[1].stop_background_tasks();
        third
    } else {
        replicas[1].clone()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mcp.count("subscriptions/listen") != 2 || mcp.listeners() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replica took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last.stop_background_tasks();
    drop(replicas);
    wait_for(0, "a stopped replica still listens").await;
}
