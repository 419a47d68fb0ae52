//! OpenTelemetry trace export, end to end: the binary, configured with the standard `OTEL_*`
//! variables, exports to an OTLP/HTTP receiver on 127.0.0.1. One tool call through GraphQL,
//! sent with a W3C `traceparent`, must come out as one trace (HTTP request → GraphQL
//! operation → tool call → MCP request → HTTP exchange, with SQL statements under their
//! callers), hand its context to the MCP server, and carry no argument, token or header value.
//!
//! The subscriber is process-global, so the server runs as a child process; the spans are
//! flushed by its graceful shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::{SinkExt as _, StreamExt as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use switchboard::db::DatabaseTarget;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::binary::{command, read, start_async, stop};
use crate::support::fake_mcp::{Era, FakeMcpServer, McpAuth, McpConfig};

const ARGUMENT: &str = "tool-argument-otel-5d2c";
const HEADER_VALUE: &str = "header-value-otel-a41b";
const COLLECTOR_KEY: &str = "collector-key-otel-77e0";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// What the OTLP receiver got: each export's body and headers.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

async fn receive(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    received.0.lock().unwrap().push((headers, body));
    StatusCode::OK
}

async fn start_receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), received)
}

async fn gql(
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
    traceparent: Option<&str>,
) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| value.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key) {
        Some(AnyValue::StringValue(text)) => Some(text),
        _ => None,
    }
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|span| span.name.as_str()).collect()
}

/// Every span as `trace/span<-parent name`, for failure messages.
fn tree(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{}/{}<-{} {}",
                hex::encode(&s.trace_id),
                hex::encode(&s.span_id),
                hex::encode(&s.parent_span_id),
                s.name
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The trace id of a `traceparent` header value.
fn trace_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_call_is_exported_as_one_trace_and_handed_on_without_secrets() {
    let (collector, received) = start_receiver().await;
    let modern = FakeMcpServer::start(McpConfig {
        era: Era::Modern,
        ..McpConfig::default()
    })
    .await;
    let legacy = FakeMcpServer::start(McpConfig {
        auth: McpAuth::StaticHeader {
            name: "x-api-key".into(),
            value: HEADER_VALUE.into(),
        },
        ..McpConfig::default()
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let headers = format!("api-key={COLLECTOR_KEY}");
    // The backend under test: PostgreSQL when the suite runs against it.
    let (database, system) = match crate::support::test_database(dir.path()).await {
        DatabaseTarget::Postgres(url) => (url, "postgresql"),
        DatabaseTarget::Sqlite(_) => ("sqlite://data/switchboard.db".to_owned(), "sqlite"),
    };
    let keys = format!("k1:{}", "7".repeat(64));
    let server = start_async(
        dir.path(),
        "otel",
        &[
            ("SWITCHBOARD_DATABASE_URL", &database),
            ("SWITCHBOARD_ENCRYPTION_KEYS", &keys),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
            ("OTEL_SERVICE_NAME", "switchboard-under-test"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test",
            ),
        ],
    )
    .await;
    let base = server.base.clone();
    let token = read(&dir.path().join("otel.stdout"))
        .split_whitespace()
        .find(|w| w.starts_with("sbt_"))
        .expect("bootstrap token printed")
        .to_owned();

    let workspace =
        gql(&base, &token, "{ workspaces { id } }", json!({}), None).await["workspaces"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let create =
        "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }";
    let modern_id = gql(
        &base,
        &token,
        create,
        json!({ "i": { "workspaceId": workspace, "name": "modern", "url": modern.url(), "authType": "NONE" } }),
        None,
    )
    .await["createMcpServer"]["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let legacy_id = gql(
        &base,
        &token,
        create,
        json!({ "i": { "workspaceId": workspace, "name": "legacy", "url": legacy.url(), "authType": "HEADERS",
                       "headers": [{ "name": "x-api-key", "value": HEADER_VALUE }] } }),
        None,
    )
    .await["createMcpServer"]["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [&modern_id, &legacy_id] {
        gql(
            &base,
            &token,
            "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
            json!({ "id": id }),
            None,
        )
        .await;
    }

    let call = "mutation CallTool($id: ID!, $a: JSON) { callMcpTool(serverId: $id, name: \"echo\", arguments: $a) { isError } }";
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    for id in [&modern_id, &legacy_id] {
        let data = gql(
            &base,
            &token,
            call,
            json!({ "id": id, "a": { "message": ARGUMENT } }),
            Some(&traceparent),
        )
        .await;
        assert_eq!(data["callMcpTool"]["isError"], false, "{data}");
    }

    // A query on a WebSocket whose upgrade request carried the trace context.
    let mut upgrade = format!("{}/graphql/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    upgrade.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    upgrade
        .headers_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    for message in [
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "query Workspaces { workspaces { id } }" } }),
    ] {
        socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if message.to_string().contains("\"complete\"") {
            break;
        }
    }
    socket.close(None).await.unwrap();
    // The server ends the socket's span once it has seen the close.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Graceful shutdown exports what is still buffered.
    let (_, stderr) = tokio::task::spawn_blocking(move || stop(server))
        .await
        .unwrap();
    assert!(!stderr.contains(COLLECTOR_KEY), "{stderr}");

    let exports = received.0.lock().unwrap().clone();
    assert!(!exports.is_empty(), "nothing was exported: {stderr}");
    let mut spans = Vec::new();
    for (headers, body) in &exports {
        assert_eq!(headers.get("api-key").unwrap(), COLLECTOR_KEY);
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/x-protobuf"
        );
        for secret in [ARGUMENT, HEADER_VALUE, COLLECTOR_KEY, token.as_str()] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} was exported"
            );
        }
        let request = ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
        for resource in request.resource_spans {
            let resource_attributes: HashMap<String, String> = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(text) => Some((kv.key.clone(), text.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(
                resource_attributes["service.name"],
                "switchboard-under-test"
            );
            assert_eq!(resource_attributes["deployment.environment.name"], "test");
            spans.extend(resource.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }

    // The two calls continue the caller's trace; everything in it is theirs.
    let trace_id = hex::decode(TRACE_ID).unwrap();
    let traced: Vec<Span> = spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .cloned()
        .collect();
    let by_id: HashMap<Vec<u8>, &Span> = traced.iter().map(|s| (s.span_id.clone(), s)).collect();
    let children = |parent: &Span, name: &str| -> Vec<&Span> {
        traced
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id && s.name == name)
            .collect()
    };
    let requests: Vec<&Span> = traced
        .iter()
        .filter(|s| s.name == "POST /graphql")
        .collect();
    assert_eq!(requests.len(), 2, "{}", tree(&spans));
    let upgrade = traced
        .iter()
        .find(|s| s.name == "GET /graphql/ws")
        .unwrap_or_else(|| panic!("{}", tree(&spans)));
    assert_eq!(upgrade.parent_span_id, hex::decode(CALLER_SPAN).unwrap());
    let query = children(upgrade, "query Workspaces");
    assert_eq!(query.len(), 1, "{}", tree(&spans));
    assert_eq!(text(query[0], "graphql.operation.type"), Some("query"));
    let mut upstream_spans = Vec::new();
    for request in &requests {
        assert_eq!(request.parent_span_id, hex::decode(CALLER_SPAN).unwrap());
        assert_eq!(text(request, "http.route"), Some("/graphql"));
        assert!(
            matches!(
                attribute(request, "http.response.status_code"),
                Some(AnyValue::IntValue(200))
            ),
            "{:?}",
            request.attributes
        );
        let operation = children(request, "mutation CallTool");
        assert_eq!(operation.len(), 1, "{:?}", names(&traced));
        let operation = operation[0];
        assert_eq!(text(operation, "graphql.operation.type"), Some("mutation"));
        assert_eq!(text(operation, "graphql.operation.name"), Some("CallTool"));
        let call = children(operation, "call_tool echo");
        assert_eq!(call.len(), 1, "{:?}", names(&traced));
        let call = call[0];
        assert_eq!(text(call, "gen_ai.tool.name"), Some("echo"));
        assert_eq!(text(call, "switchboard.outcome"), Some("ok"));
        // The call's own statements (catalogue, grant, status) are its children.
        let statements: Vec<&Span> = traced
            .iter()
            .filter(|s| s.parent_span_id == call.span_id && text(s, "db.system.name").is_some())
            .collect();
        assert!(!statements.is_empty(), "{:?}", names(&traced));
        let mcp = children(call, "tools/call echo");
        assert_eq!(mcp.len(), 1, "{:?}", names(&traced));
        let mcp = mcp[0];
        assert_eq!(text(mcp, "mcp.method.name"), Some("tools/call"));
        let exchange = children(mcp, "POST");
        assert_eq!(exchange.len(), 1, "{:?}", names(&traced));
        assert_eq!(text(exchange[0], "mcp.method.name"), Some("tools/call"));
        assert_eq!(text(exchange[0], "server.address"), Some("127.0.0.1"));
        assert!(
            matches!(
                attribute(exchange[0], "server.port"),
                Some(AnyValue::IntValue(_))
            ),
            "{:?}",
            exchange[0].attributes
        );
        upstream_spans.push(exchange[0].span_id.clone());
    }
    // Every statement is named by kind and table only, under a span of the trace.
    for statement in traced
        .iter()
        .filter(|s| text(s, "db.system.name").is_some())
    {
        assert_eq!(text(statement, "db.system.name"), Some(system));
        let operation = text(statement, "db.operation.name").unwrap();
        assert!(
            operation.chars().all(|c| c.is_ascii_uppercase()),
            "{operation}"
        );
        assert!(
            statement.name.starts_with(operation) && statement.name.len() <= operation.len() + 65,
            "{}",
            statement.name
        );
        assert!(
            by_id.contains_key(&statement.parent_span_id),
            "a statement outside its caller: {}",
            statement.name
        );
    }
    // Each MCP server saw the trace in a `traceparent` header naming the exchange's span;
    // the stateless revision also in `_meta`, the older one not.
    for (server, in_meta) in [(&modern, true), (&legacy, false)] {
        let calls: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.body.contains("\"tools/call\""))
            .collect();
        assert_eq!(calls.len(), 1);
        let header = calls[0]
            .header("traceparent")
            .expect("a traceparent header");
        assert_eq!(trace_id_of(header), TRACE_ID);
        let parent = header.split('-').nth(2).unwrap();
        assert!(
            upstream_spans.contains(&hex::decode(parent).unwrap()),
            "{header}"
        );
        let body: Value = serde_json::from_str(&calls[0].body).unwrap();
        let meta = &body["params"]["_meta"]["traceparent"];
        if in_meta {
            assert_eq!(trace_id_of(meta.as_str().unwrap()), TRACE_ID, "{body}");
        } else {
            assert!(meta.is_null(), "{body}");
        }
    }
    // The collector's key never reached the MCP servers' requests either.
    for server in [&modern, &legacy] {
        for request in server.requests() {
            assert!(
                !request
                    .header_lines
                    .iter()
                    .any(|(_, v)| v.contains(COLLECTOR_KEY))
            );
        }
    }
}

#[test]
fn bad_trace_settings_stop_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
    ] {
        let output = command(dir.path())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
}
