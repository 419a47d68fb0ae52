//! Scenario 1: listing a workspace's servers, the query a dashboard sends most.
//!
//! Every listed server is OAuth-protected and was authorized through the real popup flow
//! against the fake authorization server, so each has a sealed grant and a catalogue of
//! [`crate::LIST_TOOLS`] tools. The workspace grows through the configured sizes; at each, the
//! SQL statements one list request costs are counted through `/metrics`; at the measuring size,
//! throughput and latency are measured against `{ __typename }` on the same server, which is
//! what the HTTP stack and GraphQL executor cost with no resolver work (the framework ceiling).

use anyhow::{Context, bail, ensure};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::api::Api;
use crate::load::{self, Spec};
use crate::report::{Report, Row, Target, Unit};
use crate::server::Server;
use crate::storm::FreshDatabase;
use crate::{Ctx, LIST_TOOLS, server_input};

/// The list query: one page of up to 100 servers with their status, tool count and grant.
pub const LIST_QUERY: &str = "query($w: ID!) { workspace(id: $w) { mcpServers(first: 100) { \
    edges { node { id name url authType connectionStatus authStatus toolCount oauth { expiresAt } } } \
    pageInfo { hasNextPage endCursor } } } }";

/// The framework ceiling: answered by the executor alone.
const CEILING_QUERY: &str = "{ __typename }";

/// OAuth flows run at once while seeding.
const SEED_CONCURRENCY: usize = 8;

/// Run the scenario on `server`; on PostgreSQL, `database` is its database, whose statistics
/// are gathered after each round of seeding.
pub async fn run(
    ctx: &Ctx,
    server: &Server,
    api: &Api,
    label: &str,
    database: Option<&FreshDatabase>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let scenario = format!("1 list ({label})");
    let plan = &ctx.plan;
    let workspace = api.create_workspace("Listed servers").await?;
    let mut seeded = 0;
    let mut statements = Vec::new();
    for &size in &plan.server_counts {
        crate::progress(format_args!("{scenario}: seeding up to {size} servers"));
        seed(ctx, api, &workspace, seeded, size).await?;
        if let Some(database) = database {
            database.analyze().await?;
        }
        seeded = size;
        check_page(api, &workspace, size).await?;
        let per_request = statements_per_request(api, &workspace, plan.statement_samples).await?;
        if per_request < 1.0 {
            bail!(
                "{per_request:.2} SQL statements per list request is impossible: the counter is broken"
            );
        }
        statements.push((size, per_request));
        if size == plan.list_at {
            measure(ctx, server, api, &workspace, size, &scenario, report).await?;
        }
    }
    let (first_size, first) = statements[0];
    for (size, per_request) in statements {
        report.push(
            Row::info(
                &scenario,
                &format!("SQL statements per request, {size} servers"),
                per_request,
                Unit::Number,
            )
            .against(first, &format!("{first_size} servers"))
            .target(Target::SameAsBaseline),
        );
    }
    report.note(format!(
        "1 list ({label}): the page holds min(servers, 100) servers; SQL statements are read from \
         `switchboard_db_statements_total` on `/metrics` around {} sequential requests (lowest of \
         3 rounds, minus the scrape's own query).",
        plan.statement_samples
    ));
    Ok(())
}

/// Register servers `from..to` in the workspace and authorize each through the popup.
async fn seed(ctx: &Ctx, api: &Api, workspace: &str, from: usize, to: usize) -> anyhow::Result<()> {
    let base = ctx.upstreams.list_mcp.url();
    futures_util::stream::iter(from..to)
        .map(|i| {
            let base = base.clone();
            async move {
                // One upstream serves every server; the query keeps the URLs distinct, as the
                // workspace requires.
                let url = format!("{base}?tenant={i}");
                let id = api
                    .create_server(server_input(
                        workspace,
                        &format!("server {i:04}"),
                        &url,
                        "OAUTH",
                    ))
                    .await
                    .with_context(|| format!("registering server {i}"))?;
                api.authorize(&id)
                    .await
                    .with_context(|| format!("authorizing server {i}"))
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The first page must show authorized servers with their tools and grants.
async fn check_page(api: &Api, workspace: &str, size: usize) -> anyhow::Result<()> {
    let data = api.ok(LIST_QUERY, json!({ "w": workspace })).await?;
    let edges = data["workspace"]["mcpServers"]["edges"]
        .as_array()
        .context("no edges in the list")?;
    ensure!(
        edges.len() == size.min(100),
        "the list shows {} servers, expected {}",
        edges.len(),
        size.min(100)
    );
    for edge in edges {
        let node = &edge["node"];
        let ready = node["authStatus"] == "AUTHORIZED"
            && node["connectionStatus"] == "CONNECTED"
            && node["toolCount"] == LIST_TOOLS
            && node["oauth"]["expiresAt"].is_string();
        ensure!(ready, "a seeded server is not ready: {node}");
    }
    Ok(())
}

/// Statements per list request: the lowest of three rounds, so that a background task's query
/// landing in one round does not count.
async fn statements_per_request(api: &Api, workspace: &str, samples: usize) -> anyhow::Result<f64> {
    const SERIES: &str = "switchboard_db_statements_total";
    // A scrape runs its own query before reading the counter; measure what that adds.
    let first = api.metric(SERIES).await?;
    let own = api.metric(SERIES).await? - first;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let before = api.metric(SERIES).await?;
        for _ in 0..samples {
            api.ok(LIST_QUERY, json!({ "w": workspace })).await?;
        }
        let after = api.metric(SERIES).await?;
        best = best.min((after - before - own) / samples as f64);
    }
    Ok(best)
}

/// Throughput at concurrency 16 and latency at concurrency 1, for the list and the ceiling.
async fn measure(
    ctx: &Ctx,
    server: &Server,
    api: &Api,
    workspace: &str,
    size: usize,
    scenario: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let plan = &ctx.plan;
    let url = server.url("/graphql");
    let bearer = vec![("authorization", format!("Bearer {}", api.token()))];
    let list_body = json!({ "query": LIST_QUERY, "variables": { "w": workspace } }).to_string();
    let ceiling_body = json!({ "query": CEILING_QUERY }).to_string();
    let client = load::client(16);
    let list = load::post_json(
        &client,
        url.clone(),
        bearer.clone(),
        list_body,
        load::graphql_ok,
    );
    let ceiling = load::post_json(
        &client,
        url.clone(),
        Vec::new(),
        ceiling_body.clone(),
        load::graphql_ok,
    );
    let ceiling_with_token = load::post_json(&client, url, bearer, ceiling_body, load::graphql_ok);
    let spec = |concurrency| Spec {
        concurrency,
        warmup: plan.warmup,
        measure: plan.measure,
    };

    let phase = |name: &str| crate::progress(format_args!("{scenario}: {name}"));
    phase("`{ __typename }`, c=16");
    let (ceiling16, ceiling16_spent) = with_spent(server, spec(16), ceiling.clone()).await?;
    let ceiling16 = checked(report, scenario, "`{ __typename }`, c=16", ceiling16);
    phase("list, c=16");
    let (list16, list16_spent) = with_spent(server, spec(16), list.clone()).await?;
    let list16 = checked(report, scenario, "list, c=16", list16);
    phase("`{ __typename }` with token, c=16");
    let token16 = checked(
        report,
        scenario,
        "`{ __typename }` with token, c=16",
        load::run(spec(16), ceiling_with_token).await,
    );
    phase("`{ __typename }`, c=1");
    let ceiling1 = checked(
        report,
        scenario,
        "`{ __typename }`, c=1",
        load::run(spec(1), ceiling).await,
    );
    phase("list, c=1");
    let list1 = checked(
        report,
        scenario,
        "list, c=1",
        load::run(spec(1), list).await,
    );

    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let servers = size.min(100);
    report.push(
        Row::info(
            scenario,
            &format!("throughput, {servers} servers, c=16"),
            list16.throughput(),
            Unit::PerSecond,
        )
        .against(ceiling16.throughput(), "`{ __typename }`, c=16")
        .target(Target::AtLeast(5000.0)),
    );
    report.push(
        Row::info(
            scenario,
            "share of the framework ceiling, c=16",
            list16.throughput(),
            Unit::PerSecond,
        )
        .against(ceiling16.throughput(), "`{ __typename }`, c=16")
        .target(Target::RatioAtLeast(0.15)),
    );
    // What the server spent on a list request, beside what it spent on the ceiling's.
    let mut against_ceiling = |metric: &str, list: f64, ceiling: f64, unit: Unit| {
        report.push(
            Row::info(scenario, metric, list, unit).against(ceiling, "`{ __typename }`, c=16"),
        );
    };
    against_ceiling(
        "server CPU per request, c=16",
        list16_spent.cpu_micros_per(list16.ok),
        ceiling16_spent.cpu_micros_per(ceiling16.ok),
        Unit::Micros,
    );
    against_ceiling(
        "server threads' sleeps per request, c=16",
        list16_spent.sleeps_per(list16.ok),
        ceiling16_spent.sleeps_per(ceiling16.ok),
        Unit::Number,
    );
    report.push(
        Row::info(
            scenario,
            "p50 latency, c=1",
            ms(list1.percentile(50.0)),
            Unit::Millis,
        )
        .against(ms(ceiling1.percentile(50.0)), "`{ __typename }`, c=1")
        .target(Target::AtMost(1.0)),
    );
    report.push(
        Row::info(
            scenario,
            "p99 latency, c=1",
            ms(list1.percentile(99.0)),
            Unit::Millis,
        )
        .against(ms(ceiling1.percentile(99.0)), "`{ __typename }`, c=1"),
    );
    report.push(
        Row::info(
            scenario,
            "p99 latency, c=16",
            ms(list16.percentile(99.0)),
            Unit::Millis,
        )
        .against(ms(ceiling16.percentile(99.0)), "`{ __typename }`, c=16"),
    );
    report.push(
        Row::info(
            scenario,
            "`{ __typename }` with an API token, c=16",
            token16.throughput(),
            Unit::PerSecond,
        )
        .against(ceiling16.throughput(), "without a token"),
    );
    Ok(())
}

/// What the server spent during a load phase's measured part (the warm-up excluded), read
/// from `/proc` around it.
#[derive(Clone, Copy, Debug)]
pub struct Spent {
    /// CPU time, user and system, every thread.
    pub cpu: std::time::Duration,
    /// Times its threads went to sleep waiting for work (see [`Server::sleeps`]).
    pub sleeps: u64,
}

impl Spent {
    fn now(server: &Server) -> anyhow::Result<Self> {
        Ok(Self {
            cpu: server.cpu_time()?,
            sleeps: server.sleeps()?,
        })
    }

    /// What was spent from `before` to this reading.
    fn since(&self, before: &Spent) -> Spent {
        Spent {
            cpu: self.cpu.saturating_sub(before.cpu),
            sleeps: self.sleeps.saturating_sub(before.sleeps),
        }
    }

    /// CPU time per request, in microseconds.
    pub fn cpu_micros_per(&self, requests: u64) -> f64 {
        self.cpu.as_secs_f64() * 1_000_000.0 / requests.max(1) as f64
    }

    /// Sleeps per request.
    pub fn sleeps_per(&self, requests: u64) -> f64 {
        self.sleeps as f64 / requests.max(1) as f64
    }
}

/// A load phase and what the server spent during its measured part.
pub async fn with_spent<F, Fut>(
    server: &Server,
    spec: Spec,
    request: F,
) -> anyhow::Result<(load::Outcome, Spent)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let (outcome, spent) = load::run_around(
        spec,
        request,
        || Spent::now(server),
        |before| Ok::<_, anyhow::Error>(Spent::now(server)?.since(&before?)),
    )
    .await;
    Ok((outcome, spent?))
}

/// A load phase's outcome, with any failed request recorded as a harness failure.
pub fn checked(
    report: &mut Report,
    scenario: &str,
    phase: &str,
    outcome: load::Outcome,
) -> load::Outcome {
    if outcome.errors > 0 || outcome.ok == 0 {
        report.fail(format!(
            "{scenario}, {phase}: {} of {} requests failed; first: {}",
            outcome.errors,
            outcome.errors + outcome.ok,
            outcome
                .first_error
                .as_deref()
                .unwrap_or("no request completed")
        ));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn what_was_spent_is_the_difference_of_two_readings_per_request() {
        let before = Spent {
            cpu: Duration::from_millis(100),
            sleeps: 40,
        };
        let after = Spent {
            cpu: Duration::from_millis(130),
            sleeps: 70,
        };
        let spent = after.since(&before);
        assert_eq!(spent.cpu, Duration::from_millis(30));
        assert_eq!(spent.sleeps, 30);
        assert!((spent.cpu_micros_per(10) - 3_000.0).abs() < 1e-6);
        assert!((spent.sleeps_per(10) - 3.0).abs() < 1e-9);
        // No request measured: divided by one, not by zero.
        assert_eq!(spent.sleeps_per(0), 30.0);
    }
}
