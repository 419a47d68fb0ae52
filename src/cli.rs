//! The command line: `serve` (the default), `migrate`, `schema`, `admin …` and `connect`.
//!
//! Settings come from flags or their `SWITCHBOARD_*` environment equivalents (see
//! [`crate::config`]); a bad value stops the command with a message naming the setting. The
//! server's settings follow the command (`switchboard serve --bind …`) or stand alone
//! (`switchboard --bind …`); the `admin` commands take only the database URL and the keys.
//!
//! Wherever an admin command names a user or a workspace, it takes an id or a name; a name
//! several of them share is refused with the candidates listed.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use uuid::Uuid;

use crate::app::{App, AppHandle, load_keys};
use crate::config::{AdminArgs, Config, ConfigArgs};
use crate::crypto;
use crate::db::DbTime;
use crate::domain::access::Role;
use crate::domain::admin;

/// Switchboard connects workspaces to remote MCP servers through a GraphQL API.
#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The server's settings when no command is given.
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ConfigArgs),
    /// Apply pending database migrations and exit.
    Migrate(ConfigArgs),
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
    /// Administrative tasks that work without the API.
    Admin(Admin),
    /// Connect to one MCP server headlessly: detect its auth, run OAuth against an
    /// authorization server that redirects straight back, open a session (stateless or with
    /// `initialize`, whichever the server speaks), list the tools and call each with empty
    /// arguments (or those of --arguments, or only the --call ones), answering what a server
    /// asks for mid-call from --elicit, printing every step. Uses a throwaway database.
    Connect {
        /// The MCP server URL.
        url: String,
        /// Pre-registered OAuth client id.
        #[arg(long, env = "SWITCHBOARD_CONNECT_CLIENT_ID")]
        client_id: Option<String>,
        /// Pre-registered OAuth client secret.
        #[arg(
            long,
            env = "SWITCHBOARD_CONNECT_CLIENT_SECRET",
            hide_env_values = true
        )]
        client_secret: Option<String>,
        /// Allow loopback and private addresses (same as --allow-private-networks).
        #[arg(long)]
        allow_loopback: bool,
        /// Connect as a machine client (OAuth client-credentials grant, no user), with
        /// --client-id and --client-secret or --private-key-file.
        #[arg(long, requires = "client_id")]
        client_credentials: bool,
        /// The machine client's private key (PEM) for private_key_jwt (RS256 or ES256).
        #[arg(long, requires = "client_credentials")]
        private_key_file: Option<std::path::PathBuf>,
        /// Call only this tool, with these arguments: `NAME=JSON` (a JSON object). Repeatable;
        /// the calls run in order.
        #[arg(long = "call", value_name = "NAME=JSON")]
        calls: Vec<String>,
        /// Arguments for every tool when no --call is given (a JSON object; default `{}`).
        #[arg(long, value_name = "JSON", conflicts_with = "calls")]
        arguments: Option<String>,
        /// How to answer a server that asks for input mid-call: a JSON file holding one answer,
        /// `{"action": "accept", "content": {...}}` (or `"decline"`, `"cancel"`), used for every
        /// request (a URL request gets the action alone). Without it every request is declined.
        #[arg(long, value_name = "FILE")]
        elicit: Option<std::path::PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `switchboard admin …`: its settings and one command.
#[derive(Args, Debug)]
struct Admin {
    #[command(flatten)]
    settings: AdminArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create a user; prints its id. User names are unique, whatever their case.
    CreateUser {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Create a workspace administered by a user; prints its id.
    CreateWorkspace {
        /// Display name.
        #[arg(long)]
        name: String,
        /// The admin: a user id or name.
        #[arg(long, value_name = "USER")]
        admin: String,
    },
    /// Add a user to a workspace (or change their role).
    AddMember {
        /// Workspace id or name.
        #[arg(long)]
        workspace: String,
        /// User id or name.
        #[arg(long)]
        user: String,
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Remove a user from a workspace (refused for its last admin). Running servers on
    /// PostgreSQL close the user's open WebSockets at once; on SQLite a socket closes when it
    /// next starts an operation.
    RemoveMember {
        /// Workspace id or name.
        #[arg(long)]
        workspace: String,
        /// User id or name.
        #[arg(long)]
        user: String,
    },
    /// Create an API token for a user; prints the token once.
    CreateToken {
        /// User id or name.
        #[arg(long)]
        user: String,
        /// Label for the token.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Make a person an instance operator: through the API they may then onboard users,
    /// workspaces, memberships and tokens in every workspace, and manage instance-wide service
    /// accounts. The first user is one already.
    GrantOperator {
        /// User id or name.
        #[arg(long)]
        user: String,
    },
    /// Withdraw the instance operator privilege from a person.
    RevokeOperator {
        /// User id or name.
        #[arg(long)]
        user: String,
    },
    /// List users, oldest first: id, creation time (UTC), number of workspaces, name. With
    /// --workspace, its members only, with their role instead.
    ListUsers {
        /// Only the members of this workspace (id or name).
        #[arg(long)]
        workspace: Option<String>,
        /// Print JSON (every user with their workspaces and roles) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List workspaces, oldest first: id, creation time (UTC), number of members, name.
    /// `list-users --workspace <id or name>` shows who the members are.
    ListWorkspaces {
        /// Print JSON (every workspace with its members and their roles) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-seal every secret under a new key. With a key file, a new key is generated and put
    /// first (old keys stay so running servers keep reading); with SWITCHBOARD_ENCRYPTION_KEYS,
    /// put the new key first in the list, then run this.
    RotateKey,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Viewer,
    Editor,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Editor => Role::Editor,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = parse();
    let command = cli.command.unwrap_or(Command::Serve(cli.config));
    let settings = match &command {
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            return ExitCode::SUCCESS;
        }
        Command::Serve(config) | Command::Migrate(config) | Command::Connect { config, .. } => {
            config.validate()
        }
        Command::Admin(admin) => admin.settings.validate(),
    };
    let config = match settings {
        Ok(config) => config,
        Err(error) => {
            eprintln!("switchboard: {error}");
            return ExitCode::from(2);
        }
    };
    // Trace export is for the server only; the other commands never read its settings.
    let traces = match &command {
        Command::Serve(_) => {
            match crate::telemetry::OtelSettings::from_env(|name| std::env::var(name).ok()) {
                Ok(traces) => traces,
                Err(error) => {
                    eprintln!("switchboard: {error}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let runtime = match runtime(config.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = {
        // The exporter sends its batches from the runtime.
        let _runtime = runtime.enter();
        match crate::telemetry::init(config.log_format, traces.as_ref()) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("switchboard: {error}");
                return ExitCode::from(2);
            }
        }
    };
    let outcome = runtime.block_on(run(command, config));
    // On this thread, outside the workers, which send the last batch.
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime the commands run on: `workers` threads run requests, one per CPU core when
/// not given.
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

/// Parse the command line. The server's settings before any command read the environment
/// too, so a server-only variable with a bad value would stop every command; when the first
/// parse fails, a second one without the environment for those settings tells whether a
/// command was given (a command excludes them), and runs that command if so.
fn parse() -> Cli {
    let error = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(error) => error,
    };
    let without_environment = Cli::command().mut_args(|arg| arg.env(None::<&str>));
    match without_environment
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) if cli.command.is_some() => cli,
        _ => error.exit(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate(_) => {
            let app = open(config).await?;
            let applied = app.db.migrate().await.context("running migrations")?;
            println!("{} migration(s) applied", applied.len());
            Ok(())
        }
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Command::Admin(admin) => run_admin(admin.command, config).await,
        Command::Connect {
            url,
            client_id,
            client_secret,
            allow_loopback,
            client_credentials,
            private_key_file,
            calls,
            arguments,
            elicit,
            config: _,
        } => {
            let calls = calls
                .iter()
                .map(|call| crate::headless::parse_call(call))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let arguments = arguments
                .as_deref()
                .map(|text| crate::headless::parse_arguments("--arguments", text))
                .transpose()?;
            let elicit = match elicit {
                Some(path) => Some(crate::headless::parse_elicit(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?),
                None => None,
            };
            let private_key = match private_key_file {
                Some(path) => Some(crypto::Secret::new(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading the private key {}", path.display()))?,
                )),
                None => None,
            };
            let options = crate::headless::ConnectOptions {
                url,
                client_id: client_id.filter(|id| !id.is_empty()),
                client_secret: client_secret
                    .filter(|s| !s.is_empty())
                    .map(crypto::Secret::new),
                client_metadata_url: config.client_metadata_url.clone(),
                allow_loopback: allow_loopback || config.allow_private_networks,
                client_credentials,
                private_key,
                calls,
                arguments,
                elicit,
            };
            let mut out = std::io::stdout();
            crate::headless::connect(options, &mut out).await
        }
    }
}

async fn open(config: Config) -> anyhow::Result<AppHandle> {
    let keys = load_keys(&config)?;
    App::build(config, keys).await
}

/// Start the server: migrate, bootstrap an empty database, listen until SIGINT or SIGTERM.
async fn serve(config: Config) -> anyhow::Result<()> {
    let app = open(config).await?;
    app.db.migrate().await.context("running migrations")?;
    if let Some(first) = admin::bootstrap(&app)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        println!(
            "\nFirst start: created workspace \"{}\" ({}) and user \"{}\" ({}).\n\
             Admin API token (shown once, store it now):\n\n    {}\n",
            first.workspace.name,
            first.workspace.id.0,
            first.user.name,
            first.user.id.0,
            first.token.token.expose()
        );
    }
    crate::app::start_background_tasks(&app);
    let listener = tokio::net::TcpListener::bind(app.config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", app.config.bind))?;
    // Metrics on a listener of their own stop when the main server has stopped.
    let (metrics_stop, metrics_stopped) = tokio::sync::watch::channel(false);
    let metrics = match app.config.metrics_bind {
        Some(address) => {
            let metrics_listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} for metrics"))?;
            tracing::info!(address = %metrics_listener.local_addr()?, "serving metrics");
            let mut stopped = metrics_stopped;
            Some(tokio::spawn(crate::http::metrics::serve(
                app.clone(),
                metrics_listener,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };
    tracing::info!(
        address = %listener.local_addr()?,
        database = if app.db.is_postgres() { "postgres" } else { "sqlite" },
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "Switchboard listening"
    );
    crate::http::serve(app.clone(), listener, shutdown_signal())
        .await
        .context("serving")?;
    let _ = metrics_stop.send(true);
    if let Some(metrics) = metrics {
        metrics
            .await
            .context("the metrics listener stopped")?
            .context("serving metrics")?;
    }
    app.stop_background_tasks();
    tracing::info!("Switchboard stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Grant or withdraw the instance operator privilege; prints `ok`.
async fn set_operator(app: &crate::app::App, user: &str, operator: bool) -> anyhow::Result<()> {
    let domain = |e: crate::domain::Error| anyhow::anyhow!("{e}");
    let user = admin::find_user(app, "--user", user)
        .await
        .map_err(domain)?;
    admin::set_operator(app, user.id.0, operator)
        .await
        .map_err(domain)?;
    println!("ok");
    Ok(())
}

async fn run_admin(command: AdminCommand, config: Config) -> anyhow::Result<()> {
    let domain = |e: crate::domain::Error| anyhow::anyhow!("{e}");
    // Key rotation builds the app with the rotated ring itself.
    let app = match command {
        AdminCommand::RotateKey => return rotate_key(config).await,
        _ => open(config).await?,
    };
    app.db.migrate().await.context("running migrations")?;
    match command {
        AdminCommand::CreateUser { name } => {
            let user = admin::create_user(&app, &name).await.map_err(domain)?;
            println!("{}", user.id.0);
        }
        AdminCommand::CreateWorkspace { name, admin: user } => {
            let user = admin::find_user(&app, "--admin", &user)
                .await
                .map_err(domain)?;
            let workspace = admin::create_workspace(&app, &name, user.id.0)
                .await
                .map_err(domain)?;
            println!("{}", workspace.id.0);
        }
        AdminCommand::AddMember {
            workspace,
            user,
            role,
        } => {
            let workspace = admin::find_workspace(&app, "--workspace", &workspace)
                .await
                .map_err(domain)?;
            let user = admin::find_user(&app, "--user", &user)
                .await
                .map_err(domain)?;
            admin::add_member(&app, workspace.id.0, user.id.0, role.into())
                .await
                .map_err(domain)?;
            println!("ok");
        }
        AdminCommand::RemoveMember { workspace, user } => {
            let workspace = admin::find_workspace(&app, "--workspace", &workspace)
                .await
                .map_err(domain)?;
            let user = admin::find_user(&app, "--user", &user)
                .await
                .map_err(domain)?;
            crate::domain::workspaces::remove_member_as_operator(&app, workspace.id.0, user.id.0)
                .await
                .map_err(domain)?;
            // The running servers hear of it through the database: send before exiting.
            if !app.events.flush(std::time::Duration::from_secs(10)).await {
                eprintln!(
                    "switchboard: the change could not be announced to running servers; \
                     open WebSockets of the user close at their next operation"
                );
            }
            println!("ok");
        }
        AdminCommand::CreateToken { user, name } => {
            let user = admin::find_user(&app, "--user", &user)
                .await
                .map_err(domain)?;
            let token = admin::create_token(&app, user.id.0, &name)
                .await
                .map_err(domain)?;
            println!("{}", token.token.expose());
        }
        AdminCommand::GrantOperator { user } => set_operator(&app, &user, true).await?,
        AdminCommand::RevokeOperator { user } => set_operator(&app, &user, false).await?,
        AdminCommand::ListUsers { workspace, json } => {
            let only = match workspace {
                Some(reference) => Some(
                    admin::find_workspace(&app, "--workspace", &reference)
                        .await
                        .map_err(domain)?,
                ),
                None => None,
            };
            let users = admin::list_users(&app).await.map_err(domain)?;
            print!(
                "{}",
                user_listing(&users, only.as_ref().map(|w| w.id.0), json)?
            );
        }
        AdminCommand::ListWorkspaces { json } => {
            let workspaces = admin::list_workspaces(&app).await.map_err(domain)?;
            print!("{}", workspace_listing(&workspaces, json)?);
        }
        AdminCommand::RotateKey => {}
    }
    Ok(())
}

/// A user, a workspace, or a membership as `--json` lists it: a workspace's members, a
/// user's workspaces.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    id: Uuid,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspaces: Option<Vec<Listed<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<Listed<'a>>>,
}

impl<'a> Listed<'a> {
    fn new(id: Uuid, name: &'a str) -> Self {
        Listed {
            id,
            name,
            created_at: None,
            role: None,
            workspaces: None,
            members: None,
        }
    }
}

fn to_json(listed: &[Listed<'_>]) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(listed)?))
}

/// The users (or, with `only`, that workspace's members) as a table or as JSON.
fn user_listing(
    users: &[admin::UserEntry],
    only: Option<Uuid>,
    json: bool,
) -> anyhow::Result<String> {
    let role_in = |entry: &admin::UserEntry, id: Uuid| {
        entry
            .workspaces
            .iter()
            .find(|(workspace, _)| workspace.id.0 == id)
            .map(|(_, role)| *role)
    };
    let shown = users
        .iter()
        .filter(|entry| only.is_none_or(|id| role_in(entry, id).is_some()));
    if json {
        let listed: Vec<Listed<'_>> = shown
            .map(|entry| Listed {
                created_at: Some(timestamp(entry.user.created_at)),
                workspaces: Some(
                    entry
                        .workspaces
                        .iter()
                        .map(|(workspace, role)| Listed {
                            role: Some(role.as_str()),
                            ..Listed::new(workspace.id.0, &workspace.name)
                        })
                        .collect(),
                ),
                ..Listed::new(entry.user.id.0, &entry.user.name)
            })
            .collect();
        return to_json(&listed);
    }
    let rows = shown
        .map(|entry| {
            let third = match only {
                Some(id) => role_in(entry, id)
                    .map(Role::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                None => entry.workspaces.len().to_string(),
            };
            vec![
                entry.user.id.0.to_string(),
                timestamp(entry.user.created_at),
                third,
                entry.user.name.clone(),
            ]
        })
        .collect();
    let third = if only.is_some() { "ROLE" } else { "WORKSPACES" };
    Ok(table(["ID", "CREATED", third, "NAME"], rows))
}

/// The workspaces as a table or as JSON.
fn workspace_listing(workspaces: &[admin::WorkspaceEntry], json: bool) -> anyhow::Result<String> {
    if json {
        let listed: Vec<Listed<'_>> = workspaces
            .iter()
            .map(|entry| Listed {
                created_at: Some(timestamp(entry.workspace.created_at)),
                members: Some(
                    entry
                        .members
                        .iter()
                        .map(|(user, role)| Listed {
                            role: Some(role.as_str()),
                            ..Listed::new(user.id.0, &user.name)
                        })
                        .collect(),
                ),
                ..Listed::new(entry.workspace.id.0, &entry.workspace.name)
            })
            .collect();
        return to_json(&listed);
    }
    let rows = workspaces
        .iter()
        .map(|entry| {
            vec![
                entry.workspace.id.0.to_string(),
                timestamp(entry.workspace.created_at),
                entry.members.len().to_string(),
                entry.workspace.name.clone(),
            ]
        })
        .collect();
    Ok(table(["ID", "CREATED", "MEMBERS", "NAME"], rows))
}

/// RFC 3339 in UTC to the second: sortable as text.
fn timestamp(at: DbTime) -> String {
    at.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A header and rows, columns aligned and separated by two spaces. The last column (a name,
/// which may hold spaces but never tabs or line breaks) is not padded, so each line splits
/// into its columns at the first runs of spaces.
fn table<const N: usize>(header: [&str; N], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index == last {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn rotate_key(config: Config) -> anyhow::Result<()> {
    let keys = if config.encryption_keys.is_some() {
        load_keys(&config)?
    } else {
        let path = config.key_file_path().context(
            "no key file configured: set SWITCHBOARD_KEY_FILE or SWITCHBOARD_ENCRYPTION_KEYS",
        )?;
        let current = crypto::load_or_create_key_file(&path, false)
            .with_context(|| format!("loading key file {}", path.display()))?;
        let rotated = current.with_new_primary();
        crypto::write_key_file(&path, &rotated)
            .with_context(|| format!("writing key file {}", path.display()))?;
        rotated
    };
    let primary = keys.primary_kid().to_owned();
    let app = App::build(config, keys).await?;
    app.db.migrate().await.context("running migrations")?;
    let report = admin::reseal_all(&app)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "re-sealed {} value(s) under key {primary}; {} value(s) could not be opened with any key",
        report.resealed, report.unreadable
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_has_the_workers_asked_for_or_one_per_core() {
        for workers in [1, 3] {
            let built = runtime(Some(workers)).unwrap();
            assert_eq!(built.metrics().num_workers(), workers);
        }
        // Without a count, tokio's own: its variable when set, else one per core.
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            assert_eq!(runtime(None).unwrap().metrics().num_workers(), cores);
        }
    }

    fn ids(command: &clap::Command) -> Vec<String> {
        command
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect()
    }

    /// Every server setting is missing from `admin` and each of its commands (a setting made
    /// global at the top would reach them), and present on `serve` and the bare command.
    #[test]
    fn admin_commands_take_only_the_admin_settings() {
        let mut cli = Cli::command();
        cli.build();
        let server = ids(&ConfigArgs::augment_args(clap::Command::new("serve")));
        let admin_settings = ids(&AdminArgs::augment_args(clap::Command::new("admin")));
        assert_eq!(
            admin_settings,
            ["database_url", "encryption_keys", "key_file"]
        );
        let server_only: Vec<&String> = server
            .iter()
            .filter(|id| !admin_settings.contains(id))
            .collect();
        assert!(server_only.len() > 20, "{server_only:?}");

        let admin = cli.find_subcommand("admin").expect("admin");
        let mut commands = vec![admin];
        commands.extend(admin.get_subcommands().filter(|c| c.get_name() != "help"));
        assert!(commands.len() > 8);
        for command in commands {
            let own = ids(command);
            for id in &server_only {
                assert!(!own.contains(id), "{} takes {id}", command.get_name());
            }
            for id in &admin_settings {
                assert!(own.contains(id), "{} lacks {id}", command.get_name());
            }
        }
        for command in [&cli, cli.find_subcommand("serve").expect("serve")] {
            let own = ids(command);
            for id in &server {
                assert!(own.contains(id), "{} lacks {id}", command.get_name());
            }
        }
    }

    #[test]
    fn tables_align_every_column_but_the_name() {
        let text = table(
            ["ID", "COUNT", "NAME"],
            vec![
                vec!["a".into(), "12345".into(), "first name".into()],
                vec!["bbbb".into(), "1".into(), "x".into()],
            ],
        );
        assert_eq!(
            text,
            "ID    COUNT  NAME\n\
             a     12345  first name\n\
             bbbb  1      x\n"
        );
        assert_eq!(table(["ID", "NAME"], Vec::new()), "ID  NAME\n");
    }
}
