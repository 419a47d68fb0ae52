//! Scenario 3: the refresh storm. Two Switchboard processes share one PostgreSQL database and
//! one OAuth server whose access token has just expired; many tool calls arrive at once,
//! split across both. Exactly one token request may reach the authorization server, and every
//! call must succeed.
//!
//! The grant is a real one, obtained through the popup flow. "Just expired" means both sides
//! agree: the authorization server forgets the access token and the stored expiry is moved into
//! the past (through the `switchboard` library, on the same database). The baseline is the same
//! burst of calls a moment earlier, with the token still valid, after a smaller burst that
//! warms both processes up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use switchboard::db::{self, DatabaseTarget, Db, DbTime, PoolOptions};
use uuid::Uuid;

use crate::api::Api;
use crate::report::{Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, server_input};
use switchboard_testkit::fake_as::{AsConfig, FakeAuthServer};
use switchboard_testkit::fake_mcp::{FakeMcpServer, McpAuth, McpConfig};

const CALL: &str = "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"echo\", \
    arguments: { message: \"storm\" }) { isError } }";

/// A database of its own on a PostgreSQL server, for one run.
pub struct FreshDatabase {
    /// Its URL.
    pub url: String,
    admin_url: String,
    name: String,
}

impl FreshDatabase {
    /// Create `sb_bench_<random>` on the server at `admin_url`.
    pub async fn create(admin_url: &str) -> anyhow::Result<FreshDatabase> {
        let name = format!("sb_bench_{}", Uuid::new_v4().simple());
        let client = admin(admin_url).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL")?;
        url.set_path(&format!("/{name}"));
        Ok(FreshDatabase {
            url: url.to_string(),
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    /// Gather the planner's statistics on every table, as autovacuum keeps them in a running
    /// deployment; without them the plans of freshly seeded tables depend on when autovacuum
    /// last passed.
    pub async fn analyze(&self) -> anyhow::Result<()> {
        admin(&self.url)
            .await?
            .batch_execute("ANALYZE")
            .await
            .with_context(|| format!("analyzing database {}", self.name))
    }

    /// Drop the database (best effort: a leftover is reported, not fatal).
    pub async fn drop_it(self) {
        let dropped = async {
            admin(&self.admin_url)
                .await?
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = dropped {
            eprintln!(
                "switchboard-bench: could not drop database {}: {error:#}",
                self.name
            );
        }
    }
}

async fn admin(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

/// How a burst of calls went.
struct Burst {
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    drained: Duration,
}

/// Run the scenario on two servers sharing the database at `database_url`.
pub async fn run(
    ctx: &Ctx,
    servers: [&Server; 2],
    api: &Api,
    database_url: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let scenario = "3 refresh storm (PostgreSQL, 2 processes)";
    let calls = ctx.plan.storm_calls;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        sessions: true,
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let workspace = api.default_workspace().await?;
    let id = api
        .create_server(server_input(&workspace, "Storm", &mcp.url(), "OAUTH"))
        .await?;
    api.authorize(&id).await?;
    let apis = [api.at(&servers[0].url("")), api.at(&servers[1].url(""))];

    // Both processes open their database and upstream connections on first use; a small
    // burst first keeps that out of the baseline.
    let warmup = burst(&apis, &id, calls.min(64)).await;
    if let Some(error) = warmup.first_error {
        anyhow::bail!("{scenario}: warm-up calls failed: {error}");
    }
    crate::progress(format_args!("{scenario}: {calls} calls, token valid"));
    let before_baseline = auth.token_requests().len();
    let baseline = burst(&apis, &id, calls).await;
    let baseline_tokens = auth.token_requests().len() - before_baseline;

    auth.expire_access_tokens();
    expire_stored_token(database_url, &id).await?;
    crate::progress(format_args!("{scenario}: {calls} calls, token expired"));
    let before_storm = auth.token_requests().len();
    let storm = burst(&apis, &id, calls).await;
    let storm_tokens = auth.token_requests().len() - before_storm;

    for (name, burst) in [("token valid", &baseline), ("storm", &storm)] {
        if let Some(error) = &burst.first_error {
            report.note(format!(
                "{scenario}, {name}: {} of {calls} calls failed; first: {error}",
                burst.failed
            ));
        }
    }
    report.push(
        Row::info(
            scenario,
            &format!("token requests at the AS, {calls} calls"),
            storm_tokens as f64,
            Unit::Count,
        )
        .against(baseline_tokens as f64, "same calls, token valid")
        .must(Target::Exactly(1.0)),
    );
    report.push(
        Row::info(scenario, "calls succeeded", storm.ok as f64, Unit::Count)
            .against(calls as f64, "calls made")
            .must(Target::SameAsBaseline),
    );
    report.push(
        Row::info(
            scenario,
            "calls succeeded, token valid",
            baseline.ok as f64,
            Unit::Count,
        )
        .against(calls as f64, "calls made")
        .must(Target::SameAsBaseline),
    );
    report.push(
        Row::info(
            scenario,
            "time to drain",
            storm.drained.as_secs_f64(),
            Unit::Seconds,
        )
        .against(baseline.drained.as_secs_f64(), "same calls, token valid"),
    );
    Ok(())
}

/// Move the stored access-token expiry of a server's grant into the past.
async fn expire_stored_token(database_url: &str, server_id: &str) -> anyhow::Result<()> {
    let server_id: Uuid = server_id.parse().context("server id")?;
    let pool = Db::connect(
        &DatabaseTarget::Postgres(database_url.to_owned()),
        &PoolOptions {
            max_size: 1,
            ..PoolOptions::default()
        },
    )
    .await?;
    let mut conn = pool.conn().await?;
    let mut grant = db::oauth::find_grant(&mut conn, server_id, None)
        .await?
        .context("the storm server has no grant")?;
    ensure!(
        grant.tokens_sealed.is_some(),
        "the storm grant holds no tokens"
    );
    grant.access_expires_at = Some(DbTime(db::now() - chrono::TimeDelta::seconds(1)));
    ensure!(
        db::oauth::save_grant(&mut conn, &grant).await?,
        "the storm grant vanished"
    );
    Ok(())
}

/// Send `calls` tool calls at once, alternating between the servers, and wait for all.
async fn burst(apis: &[Api; 2], server_id: &str, calls: usize) -> Burst {
    // A client of its own: every call opens its own connection, as independent callers do.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client with default settings builds");
    let body = json!({ "query": CALL, "variables": { "id": server_id } }).to_string();
    let gate = Arc::new(tokio::sync::Barrier::new(calls + 1));
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let api = &apis[i % 2];
            let request = client
                .post(api.url("/graphql"))
                .bearer_auth(api.token())
                .header("content-type", "application/json")
                .body(body.clone());
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.wait().await;
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                if status.is_success()
                    && crate::load::graphql_ok(&body)
                    && crate::load::contains(&body, b"\"isError\":false")
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ))
                }
            })
        })
        .collect();
    gate.wait().await;
    let started = Instant::now();
    let mut outcome = Burst {
        ok: 0,
        failed: 0,
        first_error: None,
        drained: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok(Ok(())) => outcome.ok += 1,
            Ok(Err(error)) => {
                outcome.failed += 1;
                outcome.first_error.get_or_insert(error);
            }
            Err(error) => {
                outcome.failed += 1;
                outcome.first_error.get_or_insert(error.to_string());
            }
        }
    }
    outcome.drained = started.elapsed();
    outcome
}
