//! Status subscriptions over a real WebSocket, with both protocols, and authentication in
//! `connection_init`.

use std::time::Duration;

use crate::support::{Options, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(t: &TestApp, protocol: &str, init: Value) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", t.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": init }).to_string(),
        ))
        .await
        .unwrap();
    socket
}

/// The next JSON message, skipping keep-alives; `None` when the socket closes.
pub(crate) async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("message in time")?;
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

const SUBSCRIPTION: &str = "subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId previous { authStatus } \
    current { connectionStatus authStatus reason } reason server { name } } }";

#[tokio::test(flavor = "multi_thread")]
async fn members_receive_status_changes_over_graphql_transport_ws() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let id = t
        .create_server(a, json!({ "name": "s", "url": "http://127.0.0.1:9/s" }))
        .await;

    let mut socket = connect(
        &t,
        "graphql-transport-ws",
        json!({ "Authorization": format!("Bearer {}", a.token) }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    // A message far larger than the socket's read buffer still arrives whole.
    let query = format!("# {}\n{SUBSCRIPTION}", "x".repeat(64 << 10));
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": { "w": a.workspace_id.to_string() } } })
                .to_string(),
        ))
        .await
        .unwrap();
    // Give the subscription a moment to attach before causing the change.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A change in another workspace must not arrive; the change in ours must.
    let b = t.new_workspace_admin("bea").await;
    t.create_server(
        &b,
        json!({ "name": "theirs", "url": "http://127.0.0.1:9/t" }),
    )
    .await;
    t.ok(
        a,
        "mutation($id: ID!) { updateMcpServer(id: $id, input: { authType: OAUTH }) { id } }",
        json!({ "id": id }),
    )
    .await;

    let message = next(&mut socket).await.expect("event");
    assert_eq!(message["type"], "next", "{message}");
    let event = &message["payload"]["data"]["mcpServerStatus"];
    assert_eq!(event["serverId"], id.as_str(), "{message}");
    assert_eq!(event["previous"]["authStatus"], "NOT_REQUIRED");
    assert_eq!(event["current"]["authStatus"], "AUTHORIZATION_REQUIRED");
    assert_eq!(event["reason"], "AUTH_TYPE_CHANGED");
    assert_eq!(event["server"]["name"], "s");

    // Deleting the server is announced too, so dashboards can drop it.
    t.ok(
        a,
        "mutation($id: ID!) { deleteMcpServer(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let message = next(&mut socket).await.expect("event");
    let event = &message["payload"]["data"]["mcpServerStatus"];
    assert_eq!(event["serverId"], id.as_str(), "{message}");
    assert_eq!(event["reason"], "DELETED");
    assert_eq!(event["current"]["authStatus"], "AUTHORIZATION_REQUIRED");
    assert!(event["server"].is_null(), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_graphql_ws_with_token_payload() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let mut socket = connect(&t, "graphql-ws", json!({ "token": a.token })).await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "start", "payload": { "query": SUBSCRIPTION, "variables": { "w": a.workspace_id.to_string() } } })
                .to_string(),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.create_server(a, json!({ "name": "new", "url": "http://127.0.0.1:9/n" }))
        .await;
    let message = next(&mut socket).await.expect("event");
    assert_eq!(message["type"], "data", "{message}");
    assert_eq!(
        message["payload"]["data"]["mcpServerStatus"]["previous"],
        Value::Null
    );
    assert_eq!(
        message["payload"]["data"]["mcpServerStatus"]["current"]["reason"],
        "DETECTION_FAILED"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_and_non_members_are_refused() {
    let t = TestApp::start().await;
    let a = &t.admin;

    // No token or a wrong token: the connection is closed without an ack.
    for init in [json!({}), json!({ "Authorization": "Bearer sbt_wrong" })] {
        let mut socket = connect(&t, "graphql-transport-ws", init.clone()).await;
        let reply = next(&mut socket).await;
        assert!(
            reply.is_none() || reply.as_ref().unwrap()["type"] == "connection_error",
            "{init}: {reply:?}"
        );
    }

    // A member of another workspace is refused at subscribe time.
    let b = t.new_workspace_admin("bea").await;
    let mut socket = connect(
        &t,
        "graphql-transport-ws",
        json!({ "Authorization": format!("Bearer {}", b.token) }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIPTION, "variables": { "w": a.workspace_id.to_string() } } })
                .to_string(),
        ))
        .await
        .unwrap();
    // The refusal arrives as a GraphQL error on the operation, and no event follows.
    let message = next(&mut socket).await.expect("reply");
    assert_eq!(message["payload"]["data"], Value::Null, "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{message}"
    );
    t.create_server(
        a,
        json!({ "name": "hidden", "url": "http://127.0.0.1:9/h" }),
    )
    .await;
    let after = tokio::time::timeout(Duration::from_millis(500), next(&mut socket)).await;
    assert!(
        matches!(after, Err(_) | Ok(None))
            || after.as_ref().unwrap().as_ref().unwrap()["type"] == "complete",
        "{after:?}"
    );
}

// Shared executions: subscribers of the same subscription with the same access share one
// execution; every other subscriber gets its own.

const FLIP: &str = "mutation($id: ID!, $t: McpAuthType!) { updateMcpServer(id: $id, input: { authType: $t }) { id } }";
const WATCH: &str = "subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId personal \
    current { authStatus reason } server { name } } }";

/// Wait until `/metrics` shows `value` for `name`.
async fn metric_reaches(t: &TestApp, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = t.metric(name).await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn authenticated(t: &TestApp, protocol: &str, token: &str) -> Socket {
    let mut socket = connect(
        t,
        protocol,
        json!({ "Authorization": format!("Bearer {token}") }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    socket
}

async fn start(socket: &mut Socket, kind: &str, id: &str, query: &str, variables: Value) {
    socket
        .send(Message::text(
            json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } })
                .to_string(),
        ))
        .await
        .unwrap();
}

async fn stop(socket: &mut Socket, id: &str) {
    socket
        .send(Message::text(
            json!({ "id": id, "type": "complete" }).to_string(),
        ))
        .await
        .unwrap();
}

/// Flip the server's auth type, which publishes one status change.
async fn flip(t: &TestApp, server: &str, oauth: bool) {
    let kind = if oauth { "OAUTH" } else { "NONE" };
    t.ok(&t.admin, FLIP, json!({ "id": server, "t": kind }))
        .await;
}

/// The next `count` messages, by operation id.
async fn by_id(socket: &mut Socket, count: usize) -> std::collections::BTreeMap<String, Value> {
    let mut messages = std::collections::BTreeMap::new();
    for _ in 0..count {
        let message = next(socket).await.expect("message");
        let id = message["id"].as_str().unwrap().to_owned();
        assert!(
            messages.insert(id.clone(), message).is_none(),
            "two messages for {id}"
        );
    }
    messages
}

/// Nothing more arrives within a moment.
async fn silent(socket: &mut Socket) {
    let more = tokio::time::timeout(Duration::from_millis(300), next(socket)).await;
    assert!(more.is_err(), "unexpected: {more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribers_of_the_same_subscription_share_one_execution() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let server = t
        .create_server(
            a,
            json!({ "name": "s", "url": "http://127.0.0.1:9/s", "authType": "NONE" }),
        )
        .await;
    let variables = json!({ "w": a.workspace_id.to_string() });
    // Three subscribers with the same token: two operations on a graphql-transport-ws socket,
    // one on a legacy graphql-ws socket.
    let mut modern = authenticated(&t, "graphql-transport-ws", &a.token).await;
    let mut legacy = authenticated(&t, "graphql-ws", &a.token).await;
    start(&mut modern, "subscribe", "one", WATCH, variables.clone()).await;
    start(&mut modern, "subscribe", "two", WATCH, variables.clone()).await;
    start(&mut legacy, "start", "three", WATCH, variables.clone()).await;
    metric_reaches(&t, "switchboard_open_subscriptions", 3.0).await;
    assert_eq!(t.metric("switchboard_subscription_executions").await, 1.0);
    let results = t.metric("switchboard_subscription_results_total").await;

    for (round, oauth) in [true, false, true].into_iter().enumerate() {
        flip(&t, &server, oauth).await;
        let on_modern = by_id(&mut modern, 2).await;
        let on_legacy = by_id(&mut legacy, 1).await;
        let status = if oauth {
            "AUTHORIZATION_REQUIRED"
        } else {
            "NOT_REQUIRED"
        };
        for (id, message) in on_modern.iter().chain(&on_legacy) {
            let kind = if id == "three" { "data" } else { "next" };
            assert_eq!(message["type"], kind, "{message}");
            let event = &message["payload"]["data"]["mcpServerStatus"];
            assert_eq!(event["serverId"], server.as_str(), "{message}");
            assert_eq!(event["current"]["authStatus"], status, "{message}");
            assert_eq!(event["server"]["name"], "s", "{message}");
            assert_eq!(message["payload"], on_legacy["three"]["payload"]);
        }
        assert_eq!(
            on_modern.keys().collect::<Vec<_>>(),
            ["one", "two"],
            "round {round}"
        );
        // One execution ran each change once, for all three.
        assert_eq!(
            t.metric("switchboard_subscription_results_total").await - results,
            round as f64 + 1.0
        );
    }

    // A subscriber that stops leaves the others running.
    stop(&mut modern, "one").await;
    metric_reaches(&t, "switchboard_open_subscriptions", 2.0).await;
    flip(&t, &server, false).await;
    assert_eq!(
        by_id(&mut modern, 1).await.keys().collect::<Vec<_>>(),
        ["two"]
    );
    assert_eq!(
        by_id(&mut legacy, 1).await.keys().collect::<Vec<_>>(),
        ["three"]
    );
    assert_eq!(t.metric("switchboard_subscription_executions").await, 1.0);
    assert_eq!(
        t.metric("switchboard_subscription_results_total").await - results,
        4.0
    );

    // A disconnect leaves too; the last one leaving ends the execution.
    drop(legacy);
    metric_reaches(&t, "switchboard_open_subscriptions", 1.0).await;
    assert_eq!(t.metric("switchboard_subscription_executions").await, 1.0);
    stop(&mut modern, "two").await;
    metric_reaches(&t, "switchboard_subscription_executions", 0.0).await;
    assert_eq!(t.metric("switchboard_open_subscriptions").await, 0.0);
    flip(&t, &server, true).await;
    silent(&mut modern).await;

    // Subscribing again starts a new execution, and an id may be used again.
    start(&mut modern, "subscribe", "one", WATCH, variables).await;
    metric_reaches(&t, "switchboard_subscription_executions", 1.0).await;
    flip(&t, &server, false).await;
    assert_eq!(
        by_id(&mut modern, 1).await.keys().collect::<Vec<_>>(),
        ["one"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_access_gets_its_own_execution_and_errors_stay_with_their_subscriber() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let server = t
        .create_server(
            a,
            json!({ "name": "s", "url": "http://127.0.0.1:9/s", "authType": "NONE" }),
        )
        .await;
    let variables = json!({ "w": a.workspace_id.to_string() });
    let created = t
        .ok(
            a,
            "mutation { createApiToken(name: \"second\") { token } }",
            json!({}),
        )
        .await;
    let second_token = created["createApiToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let viewer = t
        .new_member(
            "vic",
            a.workspace_id,
            switchboard::domain::access::Role::Viewer,
        )
        .await;
    let outsider = t.new_workspace_admin("oscar").await;

    let mut admin = authenticated(&t, "graphql-transport-ws", &a.token).await;
    let mut admin_again = authenticated(&t, "graphql-transport-ws", &second_token).await;
    let mut viewing = authenticated(&t, "graphql-transport-ws", &viewer.token).await;
    start(&mut admin, "subscribe", "s", WATCH, variables.clone()).await;
    start(&mut admin_again, "subscribe", "s", WATCH, variables.clone()).await;
    start(&mut viewing, "subscribe", "s", WATCH, variables.clone()).await;
    metric_reaches(&t, "switchboard_open_subscriptions", 3.0).await;
    // The same user with another token, and another user, run apart.
    assert_eq!(t.metric("switchboard_subscription_executions").await, 3.0);

    // The same subscription refused to someone else, and a broken one from a subscriber
    // already running it, are answered to them alone.
    let mut refused = authenticated(&t, "graphql-transport-ws", &outsider.token).await;
    start(&mut refused, "subscribe", "s", WATCH, variables.clone()).await;
    let message = next(&mut refused).await.unwrap();
    assert_eq!(message["id"], "s", "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{message}"
    );
    assert_eq!(next(&mut refused).await.unwrap()["type"], "complete");
    let broken = WATCH.replace("personal", "personnel");
    start(
        &mut admin,
        "subscribe",
        "broken",
        &broken,
        variables.clone(),
    )
    .await;
    let message = next(&mut admin).await.unwrap();
    assert_eq!(message["id"], "broken", "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{message}"
    );
    assert_eq!(next(&mut admin).await.unwrap()["type"], "complete");
    silent(&mut admin_again).await;
    silent(&mut viewing).await;
    assert_eq!(t.metric("switchboard_subscription_executions").await, 3.0);

    let results = t.metric("switchboard_subscription_results_total").await;
    flip(&t, &server, true).await;
    for socket in [&mut admin, &mut admin_again, &mut viewing] {
        let message = next(socket).await.unwrap();
        assert_eq!(message["id"], "s", "{message}");
        assert_eq!(
            message["payload"]["data"]["mcpServerStatus"]["current"]["authStatus"],
            "AUTHORIZATION_REQUIRED"
        );
        silent(socket).await;
    }
    assert_eq!(
        t.metric("switchboard_subscription_results_total").await - results,
        3.0
    );

    // A change of the viewer's own grant reaches the viewer's subscription only.
    let server_id = uuid::Uuid::parse_str(&server).unwrap();
    t.app.events.publish(status_event(
        a.workspace_id,
        server_id,
        Some(viewer.user_id),
    ));
    let message = next(&mut viewing).await.unwrap();
    assert_eq!(
        message["payload"]["data"]["mcpServerStatus"]["personal"], true,
        "{message}"
    );
    silent(&mut admin).await;
    silent(&mut admin_again).await;
    silent(&mut refused).await;
}

fn status_event(
    workspace_id: uuid::Uuid,
    server_id: uuid::Uuid,
    user_id: Option<uuid::Uuid>,
) -> switchboard::domain::status::StatusEvent {
    use switchboard::domain::status::{AuthStatus, ConnectionStatus, Status, StatusReason};
    switchboard::domain::status::StatusEvent {
        workspace_id,
        server_id,
        previous: None,
        current: Status {
            connection: ConnectionStatus::Disconnected,
            auth: AuthStatus::AuthorizationRequired,
            reason: Some(StatusReason::FlowStarted),
        },
        at: switchboard::db::now(),
        user_id,
    }
}

/// A subscription that falls behind the event bus says how many events it missed, and goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_that_falls_behind_the_bus_is_told() {
    let (t, server) = with_queue_of(100_000).await;
    let a = &t.admin;
    let server_id = uuid::Uuid::parse_str(&server).unwrap();
    let mut socket = authenticated(&t, "graphql-transport-ws", &a.token).await;
    let variables = json!({ "w": a.workspace_id.to_string() });
    start(&mut socket, "subscribe", "s", WATCH, variables).await;
    metric_reaches(&t, "switchboard_open_subscriptions", 1.0).await;

    // Far more events at once than the bus keeps for a subscriber that is still resolving
    // the first ones (each reads the server).
    let published = 20_000;
    for _ in 0..published {
        t.app
            .events
            .publish(status_event(a.workspace_id, server_id, None));
    }
    let mut events = 0;
    let missed = loop {
        let message = next(&mut socket).await.expect("a message");
        assert_eq!(message["id"], "s", "{message}");
        if message["payload"]["errors"].is_null() {
            events += 1;
            assert!(
                events < published,
                "every event arrived: nothing was missed"
            );
            continue;
        }
        let error = &message["payload"]["errors"][0];
        assert_eq!(error["extensions"]["code"], "EVENTS_MISSED", "{message}");
        break error["message"].as_str().unwrap().to_owned();
    };
    let count: u64 = missed.split(' ').next().unwrap().parse().unwrap();
    assert!(count > 0, "{missed}");
    assert!(
        t.metric("switchboard_subscription_events_missed_total")
            .await
            >= count as f64
    );
    // And the subscription goes on.
    loop {
        let message = next(&mut socket).await.expect("a message");
        if message["payload"]["errors"].is_null() {
            break;
        }
    }
}

/// A socket that does not read is closed with 4413 once more results wait for it than its
/// queue holds; the execution it shared carries on for the others.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_falls_behind_is_closed_and_the_others_carry_on() {
    let (t, server) = with_queue_of(4).await;
    let a = &t.admin;
    // Large results, so that the connection's buffers fill after a few.
    let fields: String = (0..1000).map(|n| format!(" a{n}: serverId")).collect();
    let query = format!(
        "subscription($w: ID!) {{ mcpServerStatus(workspaceId: $w) {{ current {{ authStatus }}{fields} }} }}"
    );
    let variables = json!({ "w": a.workspace_id.to_string() });

    let mut reader = authenticated(&t, "graphql-transport-ws", &a.token).await;
    // The other one reads nothing from the moment it subscribed, through a small receive
    // buffer.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(t.addr).await.unwrap();
    let mut request = format!("ws://{}/graphql/ws", t.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut idle, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    idle.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": a.token } }).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut idle).await.unwrap()["type"], "connection_ack");
    start(&mut idle, "subscribe", "idle", &query, variables.clone()).await;
    start(
        &mut reader,
        "subscribe",
        "reader",
        &query,
        variables.clone(),
    )
    .await;
    metric_reaches(&t, "switchboard_open_subscriptions", 2.0).await;
    assert_eq!(t.metric("switchboard_subscription_executions").await, 1.0);

    let closes = "switchboard_websocket_closes_total{code=\"4413\"}";
    let mut changes = 0;
    while t.metric(closes).await == 0.0 {
        changes += 1;
        assert!(changes <= 400, "the idle socket was never closed");
        flip(&t, &server, changes % 2 == 1).await;
        let message = next(&mut reader).await.unwrap();
        assert_eq!(message["id"], "reader", "{message}");
        assert!(message["payload"]["errors"].is_null(), "{message}");
    }
    assert!(changes > 4, "closed after {changes} changes");

    // The idle socket, reading at last, gets what was under way, then the close frame.
    let mut delivered = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), idle.next())
            .await
            .expect("the close frame in time")
        {
            Some(Ok(Message::Text(_))) => delivered += 1,
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame"),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 4413, "{close:?}");
    assert!(close.reason.starts_with("Too slow"), "{close:?}");
    assert!(delivered < changes, "{delivered} of {changes} were sent");

    // The other subscriber carries on.
    metric_reaches(&t, "switchboard_open_subscriptions", 1.0).await;
    flip(&t, &server, changes % 2 == 0).await;
    let message = next(&mut reader).await.unwrap();
    assert_eq!(message["id"], "reader", "{message}");
    assert_eq!(t.metric(closes).await, 1.0);
}

/// A server whose sockets queue at most `max_queued` results, with one server of its default
/// workspace (no auth, never reachable) to cause status changes on.
async fn with_queue_of(max_queued: usize) -> (TestApp, String) {
    let t = TestApp::start_configured(Options::default(), |config| {
        config.websocket.max_queued_messages = max_queued;
    })
    .await;
    let server = t
        .create_server(
            &t.admin,
            json!({ "name": "s", "url": "http://127.0.0.1:9/s", "authType": "NONE" }),
        )
        .await;
    (t, server)
}
