//! `switchboard-bench`: a benchmark of Switchboard that anyone can rerun.
//!
//! It starts the real `switchboard` binary as a child process (so memory figures are the
//! server's own), on SQLite in a temporary directory and, when given a PostgreSQL server, on a
//! fresh database there; serves the upstreams Switchboard talks to (the fake OAuth
//! authorization server and fake MCP servers of `switchboard-testkit`, the ones the tests use)
//! from this process on 127.0.0.1; seeds data through the API, OAuth popup included, so every grant is a real
//! sealed grant; drives load; and prints a markdown table.
//!
//! The machine's cores are shared by the load generator, the server and the upstreams, so
//! absolute figures say as much about the machine as about Switchboard. Every speed figure is
//! therefore measured next to a baseline taken in the same run under the same conditions
//! (`{ __typename }` on the same server, the same `tools/call` sent straight to the upstream),
//! and the ratio is what carries from one run to the next.
//!
//! `--smoke` uses tiny counts so that the whole run takes seconds: it checks that the harness
//! works (every request answered, every count possible), not the speed. A run exits non-zero
//! when the harness breaks or a correctness target is missed (exactly one token refresh in the
//! storm, every call answered, every event delivered), never because of a speed target.

mod api;
mod list;
mod load;
mod node;
mod report;
mod server;
mod storm;
mod subscriptions;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use api::Api;
use load::Amount;
use report::{Report, Row, Target, Unit};
use server::{Launch, Server};
use switchboard_testkit::fake_as::{AsConfig, FakeAuthServer};
use switchboard_testkit::fake_mcp::{
    FakeMcpServer, McpAuth, McpConfig, echo_tool, fail_tool, tool,
};

/// Benchmark Switchboard: throughput, latency, SQL per request, upstream requests per tool
/// call, the refresh storm, subscription fan-out, start-up and memory.
#[derive(Parser, Debug)]
#[command(name = "switchboard-bench")]
struct Args {
    /// The `switchboard` binary to measure.
    #[arg(long)]
    switchboard: PathBuf,
    /// Tiny counts: checks that the harness works, in seconds.
    #[arg(long)]
    smoke: bool,
    /// A PostgreSQL server URL. A fresh database is created on it for the run (and dropped
    /// afterwards) to run the list, tool-call and refresh-storm scenarios on PostgreSQL too.
    #[arg(long)]
    postgres: Option<String>,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds measured per load phase (default 8; smoke mode counts requests instead).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of warm-up before each load phase (default 2).
    #[arg(long)]
    warmup: Option<f64>,
    /// Servers in the listed workspace, ascending; SQL statements per request are counted at
    /// each size and throughput is measured at the first size of at least 100 (default
    /// 10,100,1000).
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<usize>>,
    /// WebSocket subscribers (default 10000).
    #[arg(long)]
    subscribers: Option<usize>,
    /// Status changes published to the subscribers (default 20).
    #[arg(long)]
    events: Option<usize>,
    /// Concurrent tool calls in the refresh storm (default 1000).
    #[arg(long)]
    storm_calls: Option<usize>,
    /// `bench/node/upstream.mjs` beside a `node_modules` holding the MCP TypeScript SDK: the
    /// tool-call scenario then runs against that server too (`scripts/bench.sh
    /// --node-upstream` installs it).
    #[arg(long)]
    node_upstream: Option<PathBuf>,
    /// The Node binary that runs `--node-upstream` (Node 22 or later).
    #[arg(long, default_value = "node")]
    node: PathBuf,
}

/// The sizes of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Smoke mode.
    pub smoke: bool,
    /// Warm-up per load phase.
    pub warmup: Amount,
    /// Measured per load phase.
    pub measure: Amount,
    /// Workspace sizes at which SQL statements per list request are counted.
    pub server_counts: Vec<usize>,
    /// The size at which list throughput and latency are measured.
    pub list_at: usize,
    /// Sequential requests per statement count.
    pub statement_samples: usize,
    /// WebSocket subscribers.
    pub subscribers: usize,
    /// Status changes published.
    pub events: usize,
    /// Concurrent calls in the storm.
    pub storm_calls: usize,
}

impl Plan {
    fn from_args(args: &Args) -> anyhow::Result<Plan> {
        let seconds = |s: f64| Amount::Time(Duration::from_secs_f64(s));
        let (warmup, measure) = if args.smoke {
            (
                args.warmup.map_or(Amount::Requests(10), seconds),
                args.duration.map_or(Amount::Requests(40), seconds),
            )
        } else {
            (
                seconds(args.warmup.unwrap_or(2.0)),
                seconds(args.duration.unwrap_or(8.0)),
            )
        };
        let mut server_counts = args.servers.clone().unwrap_or_else(|| {
            if args.smoke {
                vec![2, 5, 10]
            } else {
                vec![10, 100, 1000]
            }
        });
        server_counts.sort_unstable();
        server_counts.dedup();
        anyhow::ensure!(
            server_counts.first().is_some_and(|&n| n > 0),
            "--servers needs at least one size above zero"
        );
        let list_at = server_counts
            .iter()
            .copied()
            .find(|&n| n >= 100)
            .or(server_counts.last().copied())
            .context("no server counts")?;
        let pick = |given: Option<usize>, smoke: usize, full: usize| {
            given.unwrap_or(if args.smoke { smoke } else { full })
        };
        Ok(Plan {
            smoke: args.smoke,
            warmup,
            measure,
            server_counts,
            list_at,
            statement_samples: if args.smoke { 10 } else { 50 },
            subscribers: pick(args.subscribers, 20, 10_000).max(1),
            events: pick(args.events, 3, 20).max(1),
            storm_calls: pick(args.storm_calls, 20, 1000).max(2),
        })
    }
}

/// The upstreams every scenario shares.
pub struct Upstreams {
    /// The OAuth authorization server of the listed servers.
    pub auth: FakeAuthServer,
    /// The OAuth-protected MCP server behind every listed server.
    pub list_mcp: FakeMcpServer,
    /// An MCP server without auth, for tool calls and status changes.
    pub tool_mcp: FakeMcpServer,
    /// The TypeScript SDK server, when asked for.
    pub node: Option<node::NodeUpstream>,
}

/// What every scenario needs.
pub struct Ctx {
    /// The sizes.
    pub plan: Plan,
    /// The binary and where logs go.
    pub launch: Launch,
    /// The upstreams.
    pub upstreams: Upstreams,
    /// `switchboard --version` wall time.
    pub exec_baseline: Duration,
}

/// Tools each listed server has (the catalogue is part of what a list shows).
pub const LIST_TOOLS: usize = 5;

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("switchboard-bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(run(&args, plan));
    let text = format!("{}\n{}", header(&args), report.markdown());
    print!("{text}");
    if let Some(path) = &args.out
        && let Err(error) = std::fs::write(path, &text)
    {
        eprintln!(
            "switchboard-bench: cannot write {}: {error}",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(args: &Args, plan: Plan) -> Report {
    let mut report = Report::default();
    if let Err(error) = run_all(args, plan, &mut report).await {
        report.fail(format!("{error:#}"));
    }
    report
}

async fn run_all(args: &Args, plan: Plan, report: &mut Report) -> anyhow::Result<()> {
    progress("starting");
    let binary = args
        .switchboard
        .canonicalize()
        .with_context(|| format!("no binary at {}", args.switchboard.display()))?;
    // Each subscriber holds a socket in this process and one in the server.
    let needed = plan.subscribers as u64 + 1024;
    if let Some(limit) = server::open_files_limit()
        && limit < needed
    {
        anyhow::bail!(
            "{} subscribers need about {needed} open files per process but the limit is \
             {limit}: raise it (`ulimit -n {needed}`) or pass --subscribers",
            plan.subscribers
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("switchboard-bench.")
        .tempdir()
        .context("creating the run's temporary directory")?;
    let exec_baseline = server::exec_baseline(&binary)?;

    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mut tools = vec![echo_tool(), fail_tool()];
    tools.extend(["search", "fetch", "summarize"].map(tool));
    debug_assert_eq!(tools.len(), LIST_TOOLS);
    let list_mcp = FakeMcpServer::start(McpConfig {
        sessions: true,
        tools,
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let tool_mcp = FakeMcpServer::start(McpConfig {
        sessions: true,
        ..McpConfig::default()
    })
    .await;
    let node = match &args.node_upstream {
        Some(script) => {
            progress("starting the Node upstream");
            Some(node::NodeUpstream::start(
                &args.node,
                script,
                &dir.path().join("node-upstream.log"),
            )?)
        }
        None => None,
    };
    let ctx = Ctx {
        plan,
        launch: Launch {
            binary,
            name: String::new(),
            database_url: String::new(),
            encryption_keys: None,
            log_dir: dir.path().to_owned(),
        },
        upstreams: Upstreams {
            auth,
            list_mcp,
            tool_mcp,
            node,
        },
        exec_baseline,
    };

    if let Err(error) = sqlite(&ctx, dir.path(), report).await {
        report.fail(format!("SQLite: {error:#}"));
    }
    if let Some(url) = &args.postgres
        && let Err(error) = postgres(&ctx, url, report).await
    {
        report.fail(format!("PostgreSQL: {error:#}"));
    }
    if report.failures.is_empty() {
        // Keep the logs of a failed run for inspection; a good run leaves nothing behind.
        drop(dir);
    } else {
        let kept = dir.keep();
        report.note(format!("server logs kept in {}", kept.display()));
    }
    Ok(())
}

/// Scenarios 1, 2, 4 and 5 on SQLite.
async fn sqlite(ctx: &Ctx, dir: &std::path::Path, report: &mut Report) -> anyhow::Result<()> {
    let label = "SQLite";
    let launch = Launch {
        name: "sqlite".into(),
        database_url: format!("sqlite://{}", dir.join("switchboard.db").display()),
        ..ctx.launch.clone()
    };
    let server = Server::start(&launch).await?;
    progress(format_args!(
        "{label}: server pid {} on {}",
        server.pid(),
        server.addr
    ));
    let started_fresh = server.started_in;
    let api = Api::new(&server.url(""), &server.bootstrap_token().await?)?;
    let idle = settled_memory(&server).await?;
    footprint_rows(ctx, label, started_fresh, "empty database", idle, report);

    list::run(ctx, &server, &api, label, None, report).await?;
    tool_scenarios(ctx, &server, &api, label, report).await?;
    let peak = server.memory()?.peak_kib;
    report.push(Row::info(
        &format!("5 footprint ({label})"),
        "peak RSS (VmHWM) through seeding and scenarios 1–2",
        mib(peak),
        Unit::MiB,
    ));
    server.stop().await?;

    // A fresh process for the subscribers, so its memory is theirs and not what the load
    // before left in the allocator.
    let launch = Launch {
        name: "sqlite-restart".into(),
        ..launch
    };
    let server = Server::start(&launch).await?;
    progress(format_args!(
        "{label}: restarted, pid {} on {}",
        server.pid(),
        server.addr
    ));
    report.push(
        Row::info(
            &format!("5 footprint ({label})"),
            "start-up to healthy /healthz, existing database",
            server.started_in.as_secs_f64(),
            Unit::Seconds,
        )
        .against(ctx.exec_baseline.as_secs_f64(), "`switchboard --version`")
        .target(Target::AtMost(0.2)),
    );
    let api = api.at(&server.url(""));
    subscriptions::run(ctx, &server, &api, label, report).await?;
    server.stop().await?;
    Ok(())
}

/// Scenarios 1, 2 and 3 on a fresh PostgreSQL database.
async fn postgres(ctx: &Ctx, admin_url: &str, report: &mut Report) -> anyhow::Result<()> {
    let label = "PostgreSQL";
    let database = storm::FreshDatabase::create(admin_url).await?;
    let outcome = async {
        let launch = Launch {
            name: "postgres-a".into(),
            database_url: database.url.clone(),
            encryption_keys: Some(random_key()?),
            ..ctx.launch.clone()
        };
        let first = Server::start(&launch).await?;
        progress(format_args!(
            "{label}: server pid {} on {}",
            first.pid(),
            first.addr
        ));
        let api = Api::new(&first.url(""), &first.bootstrap_token().await?)?;
        let idle = settled_memory(&first).await?;
        footprint_rows(ctx, label, first.started_in, "empty database", idle, report);
        list::run(ctx, &first, &api, label, Some(&database), report).await?;
        tool_scenarios(ctx, &first, &api, label, report).await?;
        report.push(Row::info(
            &format!("5 footprint ({label})"),
            "peak RSS (VmHWM) through seeding and scenarios 1–2",
            mib(first.memory()?.peak_kib),
            Unit::MiB,
        ));
        let second = Server::start(&Launch {
            name: "postgres-b".into(),
            ..launch
        })
        .await?;
        progress(format_args!(
            "{label}: second server pid {} on {}",
            second.pid(),
            second.addr
        ));
        storm::run(ctx, [&first, &second], &api, &database.url, report).await?;
        second.stop().await?;
        first.stop().await?;
        anyhow::Ok(())
    }
    .await;
    database.drop_it().await;
    outcome
}

/// Scenario 2 against the in-process fake, and against the Node upstream when there is one.
async fn tool_scenarios(
    ctx: &Ctx,
    server: &Server,
    api: &Api,
    label: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let fake = tools::ToolUpstream::fake(&ctx.upstreams.tool_mcp);
    tools::run(ctx, server, api, &fake, label, report).await?;
    if let Some(node) = &ctx.upstreams.node {
        let upstream = tools::ToolUpstream {
            name: Some("TypeScript SDK upstream"),
            url: node.url.clone(),
            fake: None,
        };
        tools::run(ctx, server, api, &upstream, label, report).await?;
    }
    Ok(())
}

/// Memory after start-up and a short settle.
async fn settled_memory(server: &Server) -> anyhow::Result<server::Memory> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.memory()
}

fn footprint_rows(
    ctx: &Ctx,
    label: &str,
    started_in: Duration,
    database: &str,
    idle: server::Memory,
    report: &mut Report,
) {
    let scenario = format!("5 footprint ({label})");
    let start = Row::info(
        &scenario,
        &format!("start-up to healthy /healthz, {database}"),
        started_in.as_secs_f64(),
        Unit::Seconds,
    )
    .against(ctx.exec_baseline.as_secs_f64(), "`switchboard --version`");
    // The start-up target is for the embedded database; PostgreSQL's depends on the server.
    report.push(if label == "SQLite" {
        start.target(Target::AtMost(0.2))
    } else {
        start
    });
    report.push(
        Row::info(
            &scenario,
            "idle RSS (VmRSS) 1 s after start",
            mib(idle.rss_kib),
            Unit::MiB,
        )
        .target(Target::AtMost(30.0)),
    );
}

/// A progress line on standard error (the report itself goes to standard output), with the
/// time since the run started.
pub fn progress(message: impl std::fmt::Display) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    eprintln!("[{:7.1}s] {message}", elapsed.as_secs_f64());
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A fresh encryption key in the form `SWITCHBOARD_ENCRYPTION_KEYS` takes.
fn random_key() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0_u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("bench:{hex}"))
}

/// The machine and the run, above the table.
fn header(args: &Args) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1048576.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |s| s.trim().to_owned());
    format!(
        "## Switchboard benchmark ({mode}{pg})\n\n{cores} cores ({cpu}), {memory} RAM, Linux {kernel}; \
         load generator, server and upstreams share the cores.\n",
        mode = if args.smoke { "smoke" } else { "full" },
        pg = if args.postgres.is_some() {
            ", SQLite and PostgreSQL"
        } else {
            ", SQLite"
        },
    )
}

/// The input of `createMcpServer`.
pub fn server_input(workspace: &str, name: &str, url: &str, auth_type: &str) -> serde_json::Value {
    json!({ "workspaceId": workspace, "name": name, "url": url, "authType": auth_type })
}
