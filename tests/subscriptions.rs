//! Status subscriptions over a real WebSocket, with both protocols, and authentication in
//! `connection_init`.

use std::time::Duration;

use crate::support::TestApp;
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
