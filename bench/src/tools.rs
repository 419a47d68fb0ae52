//! Scenario 2: a tool call through Switchboard against the same `tools/call` sent straight to
//! the upstream.
//!
//! The upstream is the in-process fake MCP server with sessions on, as real Streamable HTTP
//! servers have them, and optionally (`--node-upstream`) a server built on the official
//! TypeScript SDK in stateless mode, which costs what a realistic upstream costs. The baseline
//! opens one session (`initialize`, `notifications/initialized`; a stateless server issues
//! none) and then posts `tools/call` with that session's id, which is the least any client can
//! send per call. The fake's request counter is read around each measured phase, so the
//! requests Switchboard sends per call are counted where they arrive.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::api::Api;
use crate::list::{checked, with_spent};
use crate::load::{self, Spec};
use crate::report::{Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, server_input};
use switchboard_testkit::fake_mcp::{FakeMcpServer, PROTOCOL_VERSION};

const CALL: &str = "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"echo\", \
    arguments: { message: \"hello\" }) { content structuredContent isError } }";

/// Calls whose upstream requests are broken down by kind in the notes.
const SAMPLE_CALLS: usize = 5;

/// The MCP server the calls go to.
pub struct ToolUpstream<'a> {
    /// How the scenario names it (`None` for the in-process fake).
    pub name: Option<&'a str>,
    /// Its endpoint.
    pub url: String,
    /// The in-process fake, when it is one: its request counter gives the upstream requests
    /// per call.
    pub fake: Option<&'a FakeMcpServer>,
}

impl<'a> ToolUpstream<'a> {
    /// The in-process fake every run has.
    pub fn fake(mcp: &'a FakeMcpServer) -> Self {
        ToolUpstream {
            name: None,
            url: mcp.url(),
            fake: Some(mcp),
        }
    }
}

/// Run the scenario through the server behind `api`.
pub async fn run(
    ctx: &Ctx,
    server: &Server,
    api: &Api,
    upstream: &ToolUpstream<'_>,
    label: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let scenario = match upstream.name {
        Some(name) => format!("2 tool call, {name} ({label})"),
        None => format!("2 tool call ({label})"),
    };
    let workspace = api.default_workspace().await?;
    let id = api
        .create_server(server_input(
            &workspace,
            &format!("Tools {}", upstream.name.unwrap_or("fake")),
            &upstream.url,
            "NONE",
        ))
        .await?;
    let data = api
        .ok(
            "mutation($id: ID!) { refreshMcpServer(id: $id) { toolCount } }",
            json!({ "id": id }),
        )
        .await?;
    ensure!(
        data["refreshMcpServer"]["toolCount"].as_u64() > Some(0),
        "the tool server listed no tools: {data}"
    );

    // What one call sends upstream today, by kind, for the notes.
    if let Some(mcp) = upstream.fake {
        let start = mcp.request_count();
        for _ in 0..SAMPLE_CALLS {
            api.ok(CALL, json!({ "id": id })).await?;
        }
        let mut kinds = BTreeMap::<String, usize>::new();
        for request in &mcp.requests()[start..] {
            let rpc = request.json()["method"]
                .as_str()
                .map(|m| format!(" {m}"))
                .unwrap_or_default();
            *kinds.entry(format!("{}{rpc}", request.method)).or_default() += 1;
        }
        let breakdown: Vec<String> = kinds
            .iter()
            .map(|(kind, n)| format!("{} × {kind}", *n as f64 / SAMPLE_CALLS as f64))
            .collect();
        report.note(format!(
            "{scenario}: upstream requests per call through Switchboard, averaged over the \
             first {SAMPLE_CALLS} calls after a catalogue refresh (the first call opens the \
             session): {}.",
            breakdown.join(", ")
        ));
    }

    let client = load::client(16);
    let session = open_session(&client, &upstream.url).await?;
    let direct_body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": { "name": "echo", "arguments": { "message": "hello" } },
    })
    .to_string();
    let mut headers = vec![
        ("accept", "application/json, text/event-stream".into()),
        ("mcp-protocol-version", PROTOCOL_VERSION.into()),
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    let direct = load::post_json(
        &client,
        upstream.url.clone(),
        headers,
        direct_body,
        direct_ok,
    );
    let through = load::post_json(
        &client,
        api.url("/graphql"),
        vec![("authorization", format!("Bearer {}", api.token()))],
        json!({ "query": CALL, "variables": { "id": id } }).to_string(),
        call_ok,
    );
    let spec = |concurrency| Spec {
        concurrency,
        warmup: ctx.plan.warmup,
        measure: ctx.plan.measure,
    };
    let fake = upstream.fake;
    let counted = |spec, request| async move {
        load::run_around(
            spec,
            request,
            || fake.map(FakeMcpServer::request_count),
            |before| Some(fake?.request_count() - before?),
        )
        .await
    };

    let phase = |name: &str| crate::progress(format_args!("{scenario}: {name}"));
    phase("direct, c=16");
    let (direct16, direct_upstream) = counted(spec(16), direct.clone()).await;
    let direct16 = checked(report, &scenario, "direct, c=16", direct16);
    phase("through Switchboard, c=16");
    let (through16, through_upstream) = counted(spec(16), through.clone()).await;
    let through16 = checked(report, &scenario, "through Switchboard, c=16", through16);
    phase("through Switchboard, c=16, server CPU");
    let (cpu16, cpu16_spent) = with_spent(server, spec(16), through.clone()).await?;
    let cpu16 = checked(report, &scenario, "through Switchboard, c=16", cpu16);
    let direct1 = checked(
        report,
        &scenario,
        "direct, c=1",
        load::run(spec(1), direct).await,
    );
    phase("through Switchboard, c=1");
    let through1 = checked(
        report,
        &scenario,
        "through Switchboard, c=1",
        load::run(spec(1), through).await,
    );

    let ratio = |upstream: usize, calls: u64| upstream as f64 / calls.max(1) as f64;
    let per_call = direct_upstream
        .zip(through_upstream)
        .map(|(direct, through)| {
            (
                ratio(direct, direct16.ok + direct16.errors),
                ratio(through, through16.ok + through16.errors),
            )
        });
    if let Some((direct_per_call, through_per_call)) = per_call
        && ((direct_per_call - 1.0).abs() > 1e-9 || through_per_call < 1.0)
    {
        report.fail(format!(
            "{scenario}: impossible upstream counts ({direct_per_call:.2} per direct call, \
             {through_per_call:.2} per call through Switchboard)"
        ));
    }

    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    report.push(
        Row::info(
            &scenario,
            "throughput, c=16",
            through16.throughput(),
            Unit::PerSecond,
        )
        .against(direct16.throughput(), "direct `tools/call`, c=16")
        .target(Target::RatioAtLeast(0.8)),
    );
    report.push(
        Row::info(
            &scenario,
            "p50 latency, c=1",
            ms(through1.percentile(50.0)),
            Unit::Millis,
        )
        .against(ms(direct1.percentile(50.0)), "direct, c=1")
        .target(Target::AboveBaselineAtMost(1.0)),
    );
    report.push(
        Row::info(
            &scenario,
            "p99 latency, c=1",
            ms(through1.percentile(99.0)),
            Unit::Millis,
        )
        .against(ms(direct1.percentile(99.0)), "direct, c=1"),
    );
    report.push(
        Row::info(
            &scenario,
            "Switchboard CPU per call, c=16",
            cpu16_spent.cpu_micros_per(cpu16.ok),
            Unit::Micros,
        )
        .target(Target::AtMost(200.0)),
    );
    report.push(Row::info(
        &scenario,
        "Switchboard threads' sleeps per call, c=16",
        cpu16_spent.sleeps_per(cpu16.ok),
        Unit::Number,
    ));
    if let Some((direct_per_call, through_per_call)) = per_call {
        report.push(
            Row::info(
                &scenario,
                "upstream HTTP requests per call, c=16",
                through_per_call,
                Unit::Number,
            )
            .against(direct_per_call, "direct")
            .target(Target::Exactly(1.0)),
        );
    }
    Ok(())
}

/// Open an MCP session the way a client does; returns its id (none from a stateless server).
async fn open_session(client: &reqwest::Client, url: &str) -> anyhow::Result<Option<String>> {
    let post = |message: Value, session: Option<&str>| {
        let mut request = client
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .json(&message);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let initialized = post(
        json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": { "name": "switchboard-bench", "version": "1" },
            },
        }),
        None,
    )
    .await?;
    ensure!(
        initialized.status().is_success(),
        "initialize answered {}",
        initialized.status()
    );
    let session = initialized
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .context("the upstream's session id is not text")?;
    let notified = post(
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        session.as_deref(),
    )
    .await?;
    ensure!(
        notified.status().is_success(),
        "notifications/initialized answered {}",
        notified.status()
    );
    Ok(session)
}

/// A tool result that is not an error (`isError` may be absent, which means false).
fn direct_ok(body: &[u8]) -> bool {
    load::contains(body, b"\"result\"") && !load::contains(body, b"\"isError\":true")
}

fn call_ok(body: &[u8]) -> bool {
    load::graphql_ok(body) && load::contains(body, b"\"isError\":false")
}
