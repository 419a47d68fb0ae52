//! The command line: `serve` (the default), `migrate`, `schema` and `admin …`.
//!
//! Settings come from flags or their `SWITCHBOARD_*` environment equivalents (see
//! [`crate::config`]); a bad value stops the command with a message naming the setting.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::app::{App, AppHandle, load_keys};
use crate::config::{Config, ConfigArgs};
use crate::crypto;
use crate::domain::access::Role;
use crate::domain::admin;

/// Switchboard connects workspaces to remote MCP servers through a GraphQL API.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
    /// Administrative tasks that work without the API.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Connect to one MCP server headlessly: detect its auth, run OAuth against an
    /// authorization server that redirects straight back, initialize, list the tools and call
    /// each with empty arguments, printing every step. Uses a throwaway database.
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
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create a user; prints its id.
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
        /// The admin's user id.
        #[arg(long)]
        admin: Uuid,
    },
    /// Add a user to a workspace (or change their role).
    AddMember {
        /// Workspace id.
        #[arg(long)]
        workspace: Uuid,
        /// User id.
        #[arg(long)]
        user: Uuid,
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Remove a user from a workspace (refused for its last admin). Running servers on
    /// PostgreSQL close the user's open WebSockets at once; on SQLite a socket closes when it
    /// next starts an operation.
    RemoveMember {
        /// Workspace id.
        #[arg(long)]
        workspace: Uuid,
        /// User id.
        #[arg(long)]
        user: Uuid,
    },
    /// Create an API token for a user; prints the token once.
    CreateToken {
        /// User id.
        #[arg(long)]
        user: Uuid,
        /// Label for the token.
        #[arg(long, default_value = "cli")]
        name: String,
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
    let cli = Cli::parse();
    if let Some(Command::Schema) = cli.command {
        print!("{}", crate::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match cli.config.validate() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("switchboard: {error}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let app = open(config).await?;
            let applied = app.db.migrate().await.context("running migrations")?;
            println!("{} migration(s) applied", applied.len());
            Ok(())
        }
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Command::Admin(admin) => run_admin(admin, config).await,
        Command::Connect {
            url,
            client_id,
            client_secret,
            allow_loopback,
        } => {
            let options = crate::headless::ConnectOptions {
                url,
                client_id: client_id.filter(|id| !id.is_empty()),
                client_secret: client_secret
                    .filter(|s| !s.is_empty())
                    .map(crypto::Secret::new),
                client_metadata_url: config.client_metadata_url.clone(),
                allow_loopback: allow_loopback || config.allow_private_networks,
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
    tracing::info!(address = %listener.local_addr()?, database = if app.db.is_postgres() { "postgres" } else { "sqlite" }, "Switchboard listening");
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
        AdminCommand::CreateWorkspace {
            name,
            admin: admin_id,
        } => {
            let workspace = admin::create_workspace(&app, &name, admin_id)
                .await
                .map_err(domain)?;
            println!("{}", workspace.id.0);
        }
        AdminCommand::AddMember {
            workspace,
            user,
            role,
        } => {
            admin::add_member(&app, workspace, user, role.into())
                .await
                .map_err(domain)?;
            println!("ok");
        }
        AdminCommand::RemoveMember { workspace, user } => {
            crate::domain::workspaces::remove_member_as_operator(&app, workspace, user)
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
            let token = admin::create_token(&app, user, &name)
                .await
                .map_err(domain)?;
            println!("{}", token.token.expose());
        }
        AdminCommand::RotateKey => {}
    }
    Ok(())
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
