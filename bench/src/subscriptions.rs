//! Scenario 4: status subscriptions. Many dashboards hold a `graphql-transport-ws` subscription
//! to one workspace's `mcpServerStatus` on one process; status changes are caused through the
//! API, one at a time, and each subscriber's receipt of each change is timed from the moment the
//! mutation that caused it was sent.
//!
//! The change is a server's auth type flipped between `NONE` and `OAUTH` (its auth status moves
//! between `NOT_REQUIRED` and `AUTHORIZATION_REQUIRED`): a real status change that contacts no
//! upstream and can be repeated forever. The baseline is the same changes delivered to a
//! single subscriber on the same process; the memory baseline is the process before anyone
//! subscribed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::api::Api;
use crate::load::percentile_us;
use crate::report::{Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, mib, server_input};

/// The README's dashboard subscription.
const SUBSCRIPTION: &str = "subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId \
    previous { authStatus } current { connectionStatus authStatus reason } at } }";

const FLIP: &str = "mutation($id: ID!, $t: McpAuthType!) { updateMcpServer(id: $id, \
    input: { authType: $t }) { authStatus } }";

/// WebSocket handshakes in flight at once while subscribing.
const CONNECT_CONCURRENCY: usize = 64;

/// How long one change may take to reach every subscriber before the run moves on.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// Subscribers in flight, and what they saw.
struct Audience {
    tasks: Vec<JoinHandle<Result<Vec<Instant>, String>>>,
    /// How many subscribers have received the k-th change.
    received: Arc<Vec<AtomicUsize>>,
    stop: watch::Sender<bool>,
}

/// Delivery figures of a series of changes.
struct Delivery {
    latencies_us: Vec<u64>,
    delivered: usize,
    failures: Vec<String>,
}

/// Run the scenario on `server`.
pub async fn run(
    ctx: &Ctx,
    server: &Server,
    api: &Api,
    label: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let scenario = format!("4 subscriptions ({label})");
    let plan = &ctx.plan;
    let workspace = api.default_workspace().await?;
    let url = format!("{}?status", ctx.upstreams.tool_mcp.url());
    let server_id = api
        .create_server(server_input(&workspace, "Status", &url, "NONE"))
        .await?;
    let idle = server.memory()?.rss_kib;
    let mut flips = 0;

    crate::progress(format_args!("{scenario}: 1 subscriber"));
    // Baseline: the same changes, one subscriber.
    let one = subscribe(server, api, &workspace, 1, plan.events).await?;
    wait_for_subscriptions(api, 1).await?;
    let single = publish(api, &server_id, &mut flips, one, plan.events).await?;
    wait_for_subscriptions(api, 0).await?;

    crate::progress(format_args!("{scenario}: subscribing {}", plan.subscribers));
    let connecting = Instant::now();
    let audience = subscribe(server, api, &workspace, plan.subscribers, plan.events).await?;
    wait_for_subscriptions(api, plan.subscribers).await?;
    let connected_in = connecting.elapsed();
    let rss_subscribed = server.memory()?.rss_kib;
    crate::progress(format_args!("{scenario}: {} changes", plan.events));
    let many = publish(api, &server_id, &mut flips, audience, plan.events).await?;
    let rss_delivered = server.memory()?.rss_kib;

    let expected = plan.subscribers * plan.events;
    for failure in single.failures.iter().chain(&many.failures).take(3) {
        report.note(format!("{scenario}: a subscriber failed: {failure}"));
    }
    let ms = |us: &[u64], p| percentile_us(us, p).as_secs_f64() * 1000.0;
    let n = plan.subscribers;
    report.push(
        Row::info(
            &scenario,
            &format!("delivery p50, {n} subscribers"),
            ms(&many.latencies_us, 50.0),
            Unit::Millis,
        )
        .against(ms(&single.latencies_us, 50.0), "1 subscriber"),
    );
    report.push(
        Row::info(
            &scenario,
            &format!("delivery p99, {n} subscribers"),
            ms(&many.latencies_us, 99.0),
            Unit::Millis,
        )
        .against(ms(&single.latencies_us, 99.0), "1 subscriber")
        .target(Target::AtMost(100.0)),
    );
    report.push(
        Row::info(
            &scenario,
            &format!("server RSS with {n} subscribers"),
            mib(rss_subscribed.max(rss_delivered)),
            Unit::MiB,
        )
        .against(mib(idle), "same process, before subscribing")
        .target(Target::AtMost(150.0)),
    );
    report.push(
        Row::info(
            &scenario,
            "events delivered",
            many.delivered as f64,
            Unit::Count,
        )
        .against(
            expected as f64,
            &format!("{n} subscribers × {} changes", plan.events),
        )
        .must(Target::SameAsBaseline),
    );
    report.push(
        Row::info(
            &scenario,
            "events delivered, 1 subscriber",
            single.delivered as f64,
            Unit::Count,
        )
        .against(
            plan.events as f64,
            &format!("1 subscriber × {} changes", plan.events),
        )
        .must(Target::SameAsBaseline),
    );
    report.push(Row::info(
        &scenario,
        &format!("time to subscribe {n}"),
        connected_in.as_secs_f64(),
        Unit::Seconds,
    ));
    report.note(format!(
        "{scenario}: latency runs from sending the mutation that causes a change to a \
         subscriber reading the `next` message, so it includes the mutation itself; changes \
         are sent one at a time, each after the previous one reached every subscriber."
    ));
    Ok(())
}

/// Open `count` subscriptions, at most [`CONNECT_CONCURRENCY`] handshakes at a time; returns
/// once every one has been sent its `subscribe`.
async fn subscribe(
    server: &Server,
    api: &Api,
    workspace: &str,
    count: usize,
    events: usize,
) -> anyhow::Result<Audience> {
    let received: Arc<Vec<AtomicUsize>> =
        Arc::new((0..events).map(|_| AtomicUsize::new(0)).collect());
    let (stop, stopped) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let url = server.url("/graphql/ws").replacen("http://", "ws://", 1);
    let mut tasks = Vec::with_capacity(count);
    let mut ready = Vec::with_capacity(count);
    for _ in 0..count {
        let (attached, attached_rx) = tokio::sync::oneshot::channel();
        ready.push(attached_rx);
        let gate = gate.clone();
        let url = url.clone();
        let token = api.token().to_owned();
        let workspace = workspace.to_owned();
        let received = received.clone();
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let socket = match open(&url, &token, &workspace).await {
                Ok(socket) => socket,
                Err(error) => {
                    let error = format!("{error:#}");
                    let _ = attached.send(Err(error.clone()));
                    return Err(error);
                }
            };
            drop(permit);
            let _ = attached.send(Ok(()));
            listen(socket, received, stopped).await
        }));
    }
    for attached in ready {
        match attached.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => bail!("a subscriber could not subscribe: {error}"),
            Err(_) => bail!("a subscriber task ended before subscribing"),
        }
    }
    Ok(Audience {
        tasks,
        received,
        stop,
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect, authenticate in `connection_init`, wait for the ack and subscribe.
async fn open(url: &str, token: &str, workspace: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("graphql-transport-ws"),
    );
    // Ten thousand sockets with the default 128 KiB read buffer each would make the harness
    // the biggest process on the machine; status events are a few hundred bytes.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .context("WebSocket handshake")?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await?;
    let ack = tokio::time::timeout(Duration::from_secs(30), socket.next())
        .await
        .context("no connection_ack within 30 s")?
        .context("closed before connection_ack")??;
    let ack = ack.into_text().unwrap_or_default();
    if !ack.contains("\"connection_ack\"") {
        bail!("expected connection_ack, got {ack}");
    }
    let subscribe = json!({
        "id": "1",
        "type": "subscribe",
        "payload": { "query": SUBSCRIPTION, "variables": { "w": workspace } },
    });
    socket.send(Message::text(subscribe.to_string())).await?;
    Ok(socket)
}

/// Time every `next` message until told to stop; any other outcome is a failure.
async fn listen(
    mut socket: Socket,
    received: Arc<Vec<AtomicUsize>>,
    mut stopped: watch::Receiver<bool>,
) -> Result<Vec<Instant>, String> {
    let mut times = Vec::with_capacity(received.len());
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            message = socket.next() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => return Err(error.to_string()),
                    None => return Err("the server closed the socket".into()),
                };
                let now = Instant::now();
                match message {
                    Message::Text(text) if text.contains("\"type\":\"next\"") => {
                        if let Some(count) = received.get(times.len()) {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        times.push(now);
                    }
                    Message::Text(text) if text.contains("\"type\":\"ping\"") => {
                        let _ = socket.send(Message::text(r#"{"type":"pong"}"#)).await;
                    }
                    Message::Text(text) => return Err(format!("unexpected message: {text}")),
                    Message::Close(frame) => return Err(format!("closed by the server: {frame:?}")),
                    _ => {}
                }
            }
        }
    }
    let _ = socket.close(None).await;
    Ok(times)
}

/// Cause `events` status changes, one at a time, each once the previous one reached every
/// subscriber (or [`DELIVERY_WAIT`] passed); then close the subscriptions and collect.
async fn publish(
    api: &Api,
    server_id: &str,
    flips: &mut usize,
    audience: Audience,
    events: usize,
) -> anyhow::Result<Delivery> {
    let subscribers = audience.tasks.len();
    let mut caused = Vec::with_capacity(events);
    for k in 0..events {
        let auth_type = if flips.is_multiple_of(2) {
            "OAUTH"
        } else {
            "NONE"
        };
        *flips += 1;
        caused.push(Instant::now());
        api.ok(FLIP, json!({ "id": server_id, "t": auth_type }))
            .await
            .context("causing a status change")?;
        let deadline = Instant::now() + DELIVERY_WAIT;
        while audience.received[k].load(Ordering::Relaxed) < subscribers
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // A pause between changes, so each is measured on its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = audience.stop.send(true);
    let mut delivery = Delivery {
        latencies_us: Vec::with_capacity(subscribers * events),
        delivered: 0,
        failures: Vec::new(),
    };
    for task in audience.tasks {
        match task.await {
            Ok(Ok(times)) => {
                if times.len() > events {
                    bail!(
                        "a subscriber received {} changes, {events} were made",
                        times.len()
                    );
                }
                delivery.delivered += times.len();
                for (at, cause) in times.iter().zip(&caused) {
                    let us = at.saturating_duration_since(*cause).as_micros();
                    delivery
                        .latencies_us
                        .push(u64::try_from(us).unwrap_or(u64::MAX));
                }
            }
            Ok(Err(error)) => delivery.failures.push(error),
            Err(error) => delivery.failures.push(error.to_string()),
        }
    }
    delivery.latencies_us.sort_unstable();
    Ok(delivery)
}

/// Wait until the server counts exactly `count` open subscriptions.
async fn wait_for_subscriptions(api: &Api, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = api.metric("switchboard_open_subscriptions").await?;
        if open as usize == count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server counts {open} open subscriptions, expected {count}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
