//! Test support: a `TestApp` that runs Switchboard in-process on 127.0.0.1:0 against a fresh
//! database, and helpers to call its GraphQL API as different users.
//!
//! The database is a temporary SQLite file, or, when `SWITCHBOARD_TEST_DATABASE_URL` names a
//! PostgreSQL server, a fresh database created on it for this test alone, so tests run in
//! parallel on either backend.
//!
//! The network peers Switchboard talks to are faked in-process on 127.0.0.1:0 as well, by the
//! `switchboard-testkit` crate: `fake_as` is an OAuth authorization server and `fake_mcp` a
//! remote MCP server, both built on `fake_http`, and both record every request they receive.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

pub use switchboard_testkit::{fake_as, fake_http, fake_mcp};

use std::net::SocketAddr;

use serde_json::{Value, json};
use switchboard::config::{Config, LogFormat, RateLimit};
use switchboard::crypto::KeyRing;
use switchboard::db::DatabaseTarget;
use switchboard::domain::access::Role;
use switchboard::domain::admin;
use switchboard::{App, AppHandle};
use tokio::sync::oneshot;
use uuid::Uuid;

/// A caller of the API: a user, their token and a workspace they belong to.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: Uuid,
    pub token: String,
    pub workspace_id: Uuid,
}

/// A running Switchboard.
pub struct TestApp {
    pub app: AppHandle,
    pub addr: SocketAddr,
    pub admin: Actor,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Options for [`TestApp::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    pub allow_private_networks: bool,
    pub app_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub max_query_depth: usize,
    pub max_query_complexity: usize,
    pub client_metadata_url: Option<String>,
    /// Last changes to the configuration, after the fields above.
    pub configure: fn(&mut Config),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_private_networks: true,
            app_origins: Vec::new(),
            max_body_bytes: 1 << 20,
            max_query_depth: 12,
            max_query_complexity: 20_000,
            client_metadata_url: None,
            configure: |_| {},
        }
    }
}

/// The database a test should use: a fresh PostgreSQL database when configured, else a
/// SQLite file in `dir`.
pub async fn test_database(dir: &std::path::Path) -> DatabaseTarget {
    match std::env::var("SWITCHBOARD_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let name = format!("sb_test_{}", Uuid::new_v4().simple());
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test PostgreSQL server");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            let mut parsed = url::Url::parse(&url).expect("test database URL");
            parsed.set_path(&format!("/{name}"));
            DatabaseTarget::Postgres(parsed.to_string())
        }
        _ => DatabaseTarget::Sqlite(dir.join("switchboard.db")),
    }
}

/// A configuration for tests, for a server reachable at `addr`.
pub fn test_config(database: DatabaseTarget, options: &Options) -> Config {
    test_config_at(database, options, "127.0.0.1:0".parse().expect("address"))
}

/// A configuration for tests whose public URL is `http://{addr}`.
pub fn test_config_at(database: DatabaseTarget, options: &Options, addr: SocketAddr) -> Config {
    let mut config = Config::defaults(database);
    config.bind = addr;
    config.public_url = url::Url::parse(&format!("http://{addr}")).expect("url");
    config.app_origins = options.app_origins.clone();
    config.client_metadata_url = options
        .client_metadata_url
        .as_deref()
        .map(|u| url::Url::parse(u).expect("metadata URL"));
    config.allow_private_networks = options.allow_private_networks;
    config.log_format = LogFormat::Text;
    config.health_interval = std::time::Duration::ZERO;
    config.health_concurrency = 4;
    config.db_pool_size = 8;
    config.max_body_bytes = options.max_body_bytes;
    config.max_query_depth = options.max_query_depth;
    config.max_query_complexity = options.max_query_complexity;
    // Tests run many outbound operations as one user in a burst; `limits` turns the rate
    // limits back on where it tests them.
    config.user_outbound = RateLimit::OFF;
    config.workspace_outbound = RateLimit::OFF;
    (options.configure)(&mut config);
    config
}

impl TestApp {
    /// Start with default options.
    pub async fn start() -> TestApp {
        TestApp::start_with(Options::default()).await
    }

    /// Start with options.
    pub async fn start_with(options: Options) -> TestApp {
        TestApp::start_configured(options, |_| {}).await
    }

    /// Start with options, and settings adjusted by `configure`.
    pub async fn start_configured(
        options: Options,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = test_database(dir.path()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = test_config_at(database, &options, addr);
        configure(&mut config);
        let app = App::build(config, KeyRing::generate())
            .await
            .expect("build app");
        app.db.migrate().await.expect("migrate");
        let first = admin::bootstrap(&app)
            .await
            .expect("bootstrap")
            .expect("empty database");
        let admin = Actor {
            user_id: first.user.id.0,
            token: first.token.token.expose().to_owned(),
            workspace_id: first.workspace.id.0,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(switchboard::http::serve(
            app.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        TestApp {
            app,
            addr,
            admin,
            http: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Base URL of the running server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POST a GraphQL request; returns the JSON body (whatever the status).
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.gql_raw(token, query, variables).await.1
    }

    /// POST a GraphQL request; returns the status and the JSON body.
    pub async fn gql_raw(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (u16, Value) {
        let response = self.post_graphql(token, query, variables).await;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, body)
    }

    /// POST a GraphQL request; returns the body's text as it came.
    pub async fn gql_text(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let response = self.post_graphql(token, query, variables).await;
        response.text().await.expect("body")
    }

    async fn post_graphql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    /// A series of `/metrics`: the value of the line naming exactly `series` (labels
    /// included), or 0 when there is none.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        metric_in(&text, series)
    }

    /// Run a query that must succeed; returns `data`.
    pub async fn ok(&self, actor: &Actor, query: &str, variables: Value) -> Value {
        let body = self.gql(Some(&actor.token), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// A new user, admin of a new workspace.
    pub async fn new_workspace_admin(&self, name: &str) -> Actor {
        let user = admin::create_user(&self.app, name).await.expect("user");
        let workspace =
            admin::create_workspace(&self.app, &format!("{name}'s workspace"), user.id.0)
                .await
                .expect("workspace");
        let token = admin::create_token(&self.app, user.id.0, "test")
            .await
            .expect("token");
        Actor {
            user_id: user.id.0,
            token: token.token.expose().to_owned(),
            workspace_id: workspace.id.0,
        }
    }

    /// A new user with `role` in `workspace_id`.
    pub async fn new_member(&self, name: &str, workspace_id: Uuid, role: Role) -> Actor {
        let user = admin::create_user(&self.app, name).await.expect("user");
        admin::add_member(&self.app, workspace_id, user.id.0, role)
            .await
            .expect("member");
        let token = admin::create_token(&self.app, user.id.0, "test")
            .await
            .expect("token");
        Actor {
            user_id: user.id.0,
            token: token.token.expose().to_owned(),
            workspace_id,
        }
    }

    /// Create a server in the actor's workspace; returns its id.
    pub async fn create_server(&self, actor: &Actor, input: Value) -> String {
        let mut input = input;
        input["workspaceId"] = json!(actor.workspace_id.to_string());
        let data = self
            .ok(actor, "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }", json!({ "i": input }))
            .await;
        data["createMcpServer"]["server"]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Stop the server gracefully and wait for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `extensions.code` of the first error.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

pub fn query_value(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// What the browser went through.
pub struct Popup {
    pub begin_url: String,
    pub begin_cookie: String,
    pub callback_url: String,
}

/// What the browser went through.
pub struct BrowserRun {
    pub begin_cookie: String,
    pub callback_url: String,
    pub status: u16,
    pub page: String,
}

/// The popup, as a browser runs it: the begin link (cookie + redirect), the authorization
/// server (which approves at once), and the callback with the cookie.
impl TestApp {
    /// The OAuth popup up to the callback: start, follow the begin link (keeping its cookie),
    /// and let the fake authorization server approve.
    pub async fn popup(&self, actor: &Actor, server_id: &str) -> Popup {
        let data = self
            .ok(actor, START_OAUTH, json!({ "id": server_id }))
            .await;
        assert_eq!(data["startMcpOauth"]["status"], "REDIRECT", "{data}");
        let begin_url = data["startMcpOauth"]["authorizationUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            begin_url.starts_with(&self.url("/oauth/begin/")),
            "{begin_url}"
        );
        // The begin link and the fake server (which approves at once) must both answer 302.
        let popup = switchboard_testkit::popup::follow_begin_link(&begin_url)
            .await
            .expect("the popup reaches the callback");
        let set_cookie = popup.set_cookie;
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
            "{set_cookie}"
        );
        let (begin_cookie, callback_url) = (popup.begin_cookie, popup.callback_url);
        assert!(
            callback_url.starts_with(&self.url("/oauth/callback")),
            "{callback_url}"
        );
        Popup {
            begin_url,
            begin_cookie,
            callback_url,
        }
    }

    /// The OAuth popup as a browser runs it.
    pub async fn authorize_in_browser(&self, actor: &Actor, server_id: &str) -> BrowserRun {
        let Popup {
            begin_url: _,
            begin_cookie,
            callback_url,
        } = self.popup(actor, server_id).await;
        let callback = switchboard_testkit::popup::load_callback(&callback_url, &begin_cookie)
            .await
            .expect("the callback page");
        BrowserRun {
            begin_cookie,
            callback_url,
            status: callback.status,
            page: callback.page,
        }
    }
}

/// `startMcpOauth`, as the console calls it.
pub const START_OAUTH: &str =
    "mutation($id: ID!) { startMcpOauth(serverId: $id) { status authorizationUrl expiresAt } }";

/// `McpAuth::oauth(auth)` with some fields changed by `edit`.
pub fn oauth_with(
    auth: &fake_as::FakeAuthServer,
    edit: impl FnOnce(&mut fake_mcp::McpAuth),
) -> fake_mcp::McpAuth {
    let mut mcp_auth = fake_mcp::McpAuth::oauth(auth);
    edit(&mut mcp_auth);
    mcp_auth
}

/// A series of a `/metrics` text: the value of the line naming exactly `series` (labels
/// included), or 0 when there is none.
pub fn metric_in(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}
