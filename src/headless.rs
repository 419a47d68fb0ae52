//! `switchboard connect`: the headless client. It runs the whole product path against one MCP
//! server without a browser — register the server in a throwaway embedded database, detect its
//! auth, run the OAuth flow against an authorization server that redirects straight back
//! (reading the code from the `Location` header), then open a session, list the tools and call
//! each (with empty arguments, or as told), printing every step. A server that asks for input
//! mid-call (`input_required`) gets the answer of `--elicit`, or a decline, and the call is
//! retried with it, at most [`MAX_ROUNDS`] times. Operators use it to debug a server; the MCP
//! conformance suite drives Switchboard's client through it.

use std::io::Write;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use crate::app::App;
use crate::config::{Config, LogFormat};
use crate::crypto::{KeyRing, Secret};
use crate::db::DatabaseTarget;
use crate::db::models::McpServerRow;
use crate::domain::access::{Credential, Principal, Role};
use crate::domain::mcp::catalogue;
use crate::domain::mcp::input::{self, MAX_ROUNDS};
use crate::domain::oauth::challenge::Challenge;
use crate::domain::oauth::flow::{self, Binding, CallbackParams, Started};
use crate::domain::oauth::{Holder, tokens};
use crate::domain::servers::{self, AuthType, NewServer};
use crate::domain::{self, Error, admin};
use crate::mcp::{CallResult, InputRequired, Resume, ToolCall, UnansweredInput, may_run_twice};
use crate::net::{ClientOptions, GuardedClient, NetPolicy};

/// Options of `switchboard connect`.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// The MCP server URL.
    pub url: String,
    /// Pre-registered client id.
    pub client_id: Option<String>,
    /// Pre-registered client secret.
    pub client_secret: Option<Secret>,
    /// Client ID Metadata Document URL to use as client id where accepted.
    pub client_metadata_url: Option<Url>,
    /// Allow loopback and private addresses (local servers, test suites).
    pub allow_loopback: bool,
    /// Reach the server as a machine client (client-credentials grant, no user): the client id
    /// with the secret or the private key.
    pub client_credentials: bool,
    /// The machine client's private key (PEM), for `private_key_jwt`.
    pub private_key: Option<Secret>,
    /// Call only these tools, in order, with these arguments (instead of every tool).
    pub calls: Vec<(String, Map<String, Value>)>,
    /// Arguments for every tool when `calls` is empty (default none).
    pub arguments: Option<Map<String, Value>>,
    /// The answer to every input request (a URL request gets its action alone); without
    /// one, every request is declined.
    pub elicit: Option<Elicit>,
}

/// How `connect` answers what a server asks for mid-call.
#[derive(Clone, Debug, PartialEq)]
pub struct Elicit {
    /// `accept`, `decline` or `cancel`.
    pub action: input::Action,
    /// The form's content, for `accept`.
    pub content: Option<Value>,
}

/// `NAME=JSON` of `--call`.
pub fn parse_call(text: &str) -> anyhow::Result<(String, Map<String, Value>)> {
    let (name, json) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("--call takes NAME=JSON"))?;
    if name.is_empty() {
        bail!("--call takes NAME=JSON, with a tool name");
    }
    Ok((name.to_owned(), parse_arguments("--call", json)?))
}

/// A JSON object of arguments.
pub fn parse_arguments(option: &str, text: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => bail!("{option}: the arguments must be a JSON object"),
        Err(error) => bail!("{option}: the arguments are not JSON ({error})"),
    }
}

/// The `--elicit` file: `{"action": "accept" | "decline" | "cancel", "content": {...}}`.
pub fn parse_elicit(text: &str) -> anyhow::Result<Elicit> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("--elicit: not JSON ({e})"))?;
    let action = value
        .get("action")
        .cloned()
        .and_then(|action| serde_json::from_value(action).ok())
        .ok_or_else(|| anyhow!("--elicit: \"action\" must be accept, decline or cancel"))?;
    let content = value.get("content").cloned();
    if content.as_ref().is_some_and(|c| !c.is_object()) {
        bail!("--elicit: \"content\" must be a JSON object");
    }
    if content.is_some() && action != input::Action::Accept {
        bail!("--elicit: \"content\" goes only with accept");
    }
    Ok(Elicit { action, content })
}

/// Authorization attempts per operation (the first plus step-ups) before giving up.
const MAX_AUTHORIZATIONS_PER_OPERATION: usize = 3;

/// Run the headless client, printing each step to `out`.
pub async fn connect(options: ConnectOptions, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut config = Config::defaults(DatabaseTarget::Sqlite(dir.path().join("connect.db")));
    config.bind = "127.0.0.1:0".parse()?;
    config.public_url = Url::parse("http://localhost:3000")?;
    config.client_metadata_url = options.client_metadata_url.clone();
    config.allow_private_networks = options.allow_loopback;
    config.log_format = LogFormat::Text;
    config.health_interval = std::time::Duration::ZERO;
    config.health_concurrency = 4;
    config.db_pool_size = 4;
    let app = App::build(config, KeyRing::generate()).await?;
    app.db.migrate().await?;
    let first = admin::bootstrap(&app)
        .await
        .map_err(domain_error)?
        .ok_or_else(|| anyhow!("fresh database expected"))?;
    let principal = Principal::of(
        &first.user,
        Credential::ApiToken {
            token_id: first.token.row.id.0,
        },
        [(first.workspace.id.0, Role::Admin)].into(),
    );
    // The command line is one caller making one request per step, under the same limits.
    let budget = app.limits.request_budget();
    let created = servers::create(
        &app,
        &principal,
        app.limits
            .admit(&budget, &principal)
            .map_err(domain_error)?,
        first.workspace.id.0,
        NewServer {
            name: "connect".into(),
            url: options.url.clone(),
            auth_type: options.client_id.as_ref().map(|_| AuthType::Oauth),
            oauth_client_id: options.client_id.clone(),
            oauth_client_secret: options.client_secret.clone(),
            oauth_client_key: options.private_key.clone(),
            credentials: options
                .client_credentials
                .then_some(servers::CredentialMode::ClientCredentials),
            ..NewServer::default()
        },
    )
    .await
    .map_err(domain_error)?;
    writeln!(
        out,
        "server: {} (auth: {})",
        created.server.url,
        created.auth_type.as_str()
    )?;
    if options.client_credentials {
        let server = &created.server;
        writeln!(
            out,
            "machine client: {} (status: {}, reason: {})",
            created
                .server
                .oauth_client_id
                .as_deref()
                .unwrap_or_default(),
            server.auth_status.as_str(),
            server.status_reason.map_or("none", |r| r.as_str())
        )?;
    }
    let session = Session {
        app: &app,
        principal: &principal,
        server_id: created.server.id.0,
    };

    // Initialize and list, authorizing when the server asks.
    let tools = session
        .with_authorization(out, |server| async move {
            let (mcp, _) = catalogue::connect(session.app, &server, Holder::Workspace).await?;
            let tools = mcp
                .list_tools(catalogue::listing_caps(session.app))
                .await
                .map(|listing| listing.tools)
                .map_err(|e| catalogue::mcp_error(&server, e));
            mcp.close().await;
            tools
        })
        .await?;
    writeln!(
        out,
        "initialized; {} tool(s): {}",
        tools.len(),
        tools
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;

    let calls = if options.calls.is_empty() {
        let arguments = options.arguments.clone().unwrap_or_default();
        tools
            .iter()
            .map(|tool| (tool.name.clone(), arguments.clone()))
            .collect()
    } else {
        options.calls.clone()
    };
    for (name, arguments) in calls {
        let listed = tools.iter().find(|tool| tool.name == name);
        let header_parameters = listed
            .filter(|tool| tool.names_header_parameters())
            .map(|_| catalogue::listing_caps(&app));
        let rerunnable = listed
            .and_then(|tool| tool.annotations.as_ref())
            .is_some_and(may_run_twice);
        // All rounds of a call go out on one session, so each retry has a new request id.
        let (outcome, transcript) = session
            .with_authorization(out, |server| {
                let name = name.clone();
                let arguments = arguments.clone();
                let elicit = options.elicit.clone();
                async move {
                    let (mcp, _) =
                        catalogue::connect(session.app, &server, Holder::Workspace).await?;
                    let mut transcript = Vec::new();
                    let mut resume: Option<Resume> = None;
                    let mut rounds = 0;
                    let outcome = loop {
                        let call = ToolCall {
                            name: name.clone(),
                            arguments: arguments.clone(),
                            header_parameters,
                            resume: resume.take(),
                            rerunnable,
                        };
                        match mcp.call(call).await {
                            Ok(CallResult::Complete(outcome)) => break Ok(outcome),
                            Ok(CallResult::InputRequired(required)) => {
                                rounds += 1;
                                if rounds > MAX_ROUNDS {
                                    break Err(Error::Upstream(format!(
                                        "{name} asked for input more than {MAX_ROUNDS} times"
                                    )));
                                }
                                match answer(&mut transcript, &name, elicit.as_ref(), required) {
                                    Ok(answers) => resume = Some(answers),
                                    Err(error) => break Err(Error::Upstream(error.to_string())),
                                }
                            }
                            Err(error) => break Err(catalogue::mcp_error(&server, error)),
                        }
                    };
                    mcp.close().await;
                    outcome.map(|outcome| (outcome, transcript))
                }
            })
            .await?;
        out.write_all(&transcript)?;
        for asked in &outcome.unanswered {
            let (UnansweredInput::Form { message } | UnansweredInput::Url { message, .. }) = asked;
            writeln!(
                out,
                "{name} asked for input mid-call and was answered cancel: {message}"
            )?;
        }
        let text: Vec<String> = outcome.content.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "called {name}: isError={} content={}",
            outcome.is_error,
            text.join(" ")
        )?;
    }
    writeln!(out, "done")?;
    Ok(())
}

/// The answers to one `input_required`: `elicit`'s answer to each request (its action alone
/// for a URL, and a decline for a form its content does not fit), or a decline without it.
fn answer(
    out: &mut Vec<u8>,
    name: &str,
    elicit: Option<&Elicit>,
    required: InputRequired,
) -> anyhow::Result<Resume> {
    let mut responses = Map::new();
    for request in &required.requests {
        if request.method != "elicitation/create" {
            bail!(
                "{name} asked for {}, which Switchboard does not offer",
                request.method
            );
        }
        let message = request.params.get("message").and_then(Value::as_str);
        writeln!(
            out,
            "{name} asks for input {:?}: {}",
            request.key,
            message.unwrap_or("(no message)")
        )?;
        let form = request.params.get("mode").and_then(Value::as_str) != Some("url");
        let mut reply = Map::new();
        let action = match elicit {
            Some(Elicit {
                action: input::Action::Accept,
                content: Some(content),
            }) if form => {
                let schema = request
                    .params
                    .get("requestedSchema")
                    .unwrap_or(&Value::Null);
                match input::check_form(schema, content) {
                    Ok(()) => {
                        reply.insert("content".into(), content.clone());
                        input::Action::Accept
                    }
                    Err(why) => {
                        writeln!(out, "the --elicit content does not fit the form ({why})")?;
                        input::Action::Decline
                    }
                }
            }
            Some(Elicit {
                action: input::Action::Accept,
                content: None,
            }) if form => input::Action::Decline,
            Some(elicit) => elicit.action,
            None => input::Action::Decline,
        };
        reply.insert("action".into(), serde_json::to_value(action)?);
        writeln!(out, "answered {:?}: {}", request.key, reply["action"])?;
        responses.insert(request.key.clone(), Value::Object(reply));
    }
    Ok(Resume {
        responses,
        request_state: required.request_state,
    })
}

#[derive(Clone, Copy)]
struct Session<'a> {
    app: &'a App,
    principal: &'a Principal,
    server_id: Uuid,
}

impl Session<'_> {
    async fn server(&self) -> anyhow::Result<McpServerRow> {
        let mut conn = self.app.db.conn().await?;
        crate::db::servers::find(&mut conn, self.server_id)
            .await?
            .ok_or_else(|| anyhow!("the server disappeared"))
    }

    /// Run one MCP operation; on a 401 refresh once, then authorize; on a 403
    /// `insufficient_scope` authorize again with the union of scopes; at most
    /// [`MAX_AUTHORIZATIONS_PER_OPERATION`] authorizations.
    async fn with_authorization<T, F, Fut>(
        &self,
        out: &mut (dyn Write + Send),
        operation: F,
    ) -> anyhow::Result<T>
    where
        F: Fn(McpServerRow) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut authorizations = 0;
        let mut refreshed = false;
        loop {
            let server = self.server().await?;
            let challenge = match operation(server.clone()).await {
                Ok(value) => return Ok(value),
                // A 401 from a server not (yet) known to use OAuth reads as rejected headers:
                // the client asks the server again, and switches it to OAuth when it says so.
                // A machine client has nobody to authorize it: a new token, once, or give up.
                Err(Error::ReauthRequired { .. } | Error::InsufficientScope { .. })
                    if server.credential_mode == servers::CredentialMode::ClientCredentials =>
                {
                    if !refreshed
                        && tokens::refresh(self.app, &server, Holder::Workspace, None)
                            .await
                            .is_ok()
                    {
                        refreshed = true;
                        writeln!(out, "machine token renewed")?;
                        continue;
                    }
                    bail!(
                        "the authorization server did not give the machine client a usable token"
                    );
                }
                Err(Error::ReauthRequired { .. } | Error::HeadersRejected { .. }) => {
                    // Try the refresh token once before asking for a new authorization.
                    if !refreshed
                        && tokens::refresh(self.app, &server, Holder::Workspace, None)
                            .await
                            .is_ok()
                    {
                        refreshed = true;
                        writeln!(out, "token refreshed")?;
                        continue;
                    }
                    self.challenge(&server).await
                }
                Err(Error::InsufficientScope { scope, .. }) => {
                    writeln!(
                        out,
                        "server asks for more scopes: {}",
                        scope.as_deref().unwrap_or("(unspecified)")
                    )?;
                    catalogue::note_insufficient_scope(
                        self.app,
                        self.server_id,
                        Holder::Workspace,
                        scope.as_deref(),
                    )
                    .await
                    .map_err(domain_error)?;
                    Some(Challenge {
                        scope,
                        error: Some("insufficient_scope".into()),
                        ..Challenge::default()
                    })
                }
                Err(other) => return Err(domain_error(other)),
            };
            authorizations += 1;
            if authorizations > MAX_AUTHORIZATIONS_PER_OPERATION {
                bail!(
                    "still not authorized after {MAX_AUTHORIZATIONS_PER_OPERATION} authorizations; giving up"
                );
            }
            if server.auth_type != AuthType::Oauth {
                // Detected as something else, but the server wants OAuth: switch it.
                let budget = self.app.limits.request_budget();
                servers::update(
                    self.app,
                    self.principal,
                    self.app
                        .limits
                        .admit(&budget, self.principal)
                        .map_err(domain_error)?,
                    self.server_id,
                    servers::ServerChanges {
                        auth_type: servers::Patch::Set(AuthType::Oauth),
                        ..Default::default()
                    },
                )
                .await
                .map_err(domain_error)?;
            }
            self.authorize(out, challenge).await?;
        }
    }

    /// The server's current challenge, from an unauthenticated request.
    async fn challenge(&self, server: &McpServerRow) -> Option<Challenge> {
        let url = Url::parse(&server.url).ok()?;
        crate::domain::oauth::probe::probe(&self.app.http, &url, server.transport)
            .await
            .challenge
            .filter(|c| c.signals_oauth())
    }

    /// Run the flow headlessly: start, follow the authorization URL without a browser, and
    /// complete with the code from the redirect.
    async fn authorize(
        &self,
        out: &mut (dyn Write + Send),
        challenge: Option<Challenge>,
    ) -> anyhow::Result<()> {
        let budget = self.app.limits.request_budget();
        let outbound = self
            .app
            .limits
            .admit(&budget, self.principal)
            .map_err(domain_error)?;
        let started = flow::start(
            self.app,
            self.principal,
            outbound,
            self.server_id,
            challenge,
        )
        .await
        .map_err(domain_error)?;
        let Started::Redirect { upstream_url, .. } = started else {
            writeln!(out, "already authorized")?;
            return Ok(());
        };
        writeln!(out, "authorizing at {}", origin_and_path(&upstream_url))?;
        // No redirects are followed: the authorization server's answer is read, not obeyed.
        let http = GuardedClient::new(
            NetPolicy {
                allow_private_networks: self.app.config.allow_private_networks,
            },
            ClientOptions::default(),
        )?;
        let response = http.get(upstream_url).await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                anyhow!(
                    "the authorization endpoint answered {} without a redirect",
                    response.status()
                )
            })?;
        let redirect = Url::parse(location).context("the authorization redirect is not a URL")?;
        let value = |key: &str| {
            redirect
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let params = CallbackParams {
            code: value("code"),
            state: value("state"),
            iss: value("iss"),
            error: value("error"),
        };
        match flow::complete(self.app, params, Binding::User(self.principal)).await {
            Ok(_) => {
                writeln!(out, "authorized")?;
                Ok(())
            }
            Err(failure) => bail!("authorization failed: {}", failure.reason.code()),
        }
    }
}

fn origin_and_path(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

fn domain_error(error: domain::Error) -> anyhow::Error {
    anyhow!("{error}")
}
