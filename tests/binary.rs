//! The `switchboard` binary as an operator runs it: first start, the printed token, the modes
//! of the key and database files, graceful shutdown, the admin commands, the request threads
//! it is given, the metrics on a listener of their own, and that no secret ever reaches a
//! response, a log line (even at trace level, through WebSocket sign-in, an OAuth flow and
//! tool calls) or the database file in plaintext.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn command(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_DATABASE_URL", "sqlite://data/switchboard.db")
        .env("SWITCHBOARD_ALLOW_PRIVATE_NETWORKS", "true")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null());
    command
}

/// Start the binary in `dir` on a free port, with `env` added to [`command`]'s environment.
fn spawn(dir: &Path, tag: &str, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let stdout = dir.join(format!("{tag}.stdout"));
    let stderr = dir.join(format!("{tag}.stderr"));
    let mut command = command(dir);
    command
        .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    Server {
        child: command.spawn().expect("spawn switchboard"),
        base: format!("http://127.0.0.1:{port}"),
        stdout,
        stderr,
    }
}

fn start(dir: &Path, tag: &str) -> Server {
    start_with(dir, tag, &[])
}

/// [`start`] with `env` added to [`command`]'s environment.
pub(crate) fn start_with(dir: &Path, tag: &str, env: &[(&str, &str)]) -> Server {
    let mut server = spawn(dir, tag, env);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let healthy = reqwest::blocking::get(format!("{}/healthz", server.base))
            .is_ok_and(|response| response.status().is_success());
        match settle(server, healthy, dir, tag, env, deadline) {
            Ok(ready) => return ready,
            Err(waiting) => server = waiting,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`start`] for async tests, without blocking the runtime the fakes run on.
pub(crate) async fn start_async(dir: &Path, tag: &str, env: &[(&str, &str)]) -> Server {
    let mut server = spawn(dir, tag, env);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let healthy = reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_ok_and(|response| response.status().is_success());
        match settle(server, healthy, dir, tag, env, deadline) {
            Ok(ready) => return ready,
            Err(waiting) => server = waiting,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One check of a starting server: `Ok` once it answers healthy while still running (a
/// healthy answer from a port it failed to bind would be another process's). A port taken
/// between [`free_port`] and the child's bind starts it again on another port; any other
/// exit, or no health within the deadline, fails the test with the server's log.
fn settle(
    mut server: Server,
    healthy: bool,
    dir: &Path,
    tag: &str,
    env: &[(&str, &str)],
    deadline: Instant,
) -> Result<Server, Server> {
    match server.child.try_wait().expect("poll the server process") {
        None if healthy => Ok(server),
        None => {
            assert!(
                Instant::now() < deadline,
                "server did not become healthy: {}",
                read(&server.stderr)
            );
            Err(server)
        }
        Some(status) => {
            let log = read(&server.stderr);
            assert!(
                log.contains("cannot listen on")
                    && log.contains("Address already in use")
                    && Instant::now() < deadline,
                "server exited ({status}) before it was healthy: {log}"
            );
            Err(spawn(dir, tag, env))
        }
    }
}

pub(crate) fn read(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

pub(crate) fn stop(mut server: Server) -> (String, String) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    (read(&server.stdout), read(&server.stderr))
}

pub(crate) fn gql(
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
    bodies: &mut Vec<String>,
) -> Value {
    let text = reqwest::blocking::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .unwrap()
        .text()
        .unwrap();
    bodies.push(text.clone());
    serde_json::from_str(&text).unwrap()
}

fn token_in(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("sbt_"))
        .expect("bootstrap token printed")
        .to_owned()
}

#[test]
fn first_start_secrets_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "first");
    let token = token_in(&read(&server.stdout));

    // The key, the database and SQLite's files beside it are the owner's alone, in a
    // directory only the owner can enter.
    let data = dir.path().join("data");
    let mode = |name: &str| {
        let mode = std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        format!("{:o}", mode & 0o777)
    };
    assert_eq!(mode(""), "700", "the data directory");
    for file in [
        "switchboard.key",
        "switchboard.db",
        "switchboard.db-wal",
        "switchboard.db-shm",
    ] {
        assert_eq!(mode(file), "600", "{file}");
    }

    let secrets = [
        "header-value-7f3a91",
        "client-secret-c0ffee",
        "client-secret-rotated-beef",
    ];
    let mut bodies = Vec::new();
    let data = gql(
        &server.base,
        &token,
        "{ workspaces { id } }",
        json!({}),
        &mut bodies,
    );
    let ws = data["data"]["workspaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = gql(
        &server.base,
        &token,
        "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id headerNames hasOauthClientSecret } } }",
        json!({ "i": { "workspaceId": ws, "name": "s", "url": "http://127.0.0.1:9/mcp", "authType": "OAUTH",
                       "headers": [{ "name": "X-Api-Key", "value": secrets[0] }],
                       "oauthClientId": "cid", "oauthClientSecret": secrets[1] } }),
        &mut bodies,
    );
    let id = created["data"]["createMcpServer"]["server"]["id"]
        .as_str()
        .expect("created")
        .to_owned();
    gql(
        &server.base,
        &token,
        "mutation($id: ID!) { updateMcpServer(id: $id, input: { oauthClientSecret: \"client-secret-rotated-beef\" }) { hasOauthClientSecret } }",
        json!({ "id": id }),
        &mut bodies,
    );
    // A bad header value is refused without being echoed.
    gql(
        &server.base,
        &token,
        "mutation($id: ID!, $v: String!) { updateMcpServer(id: $id, input: { headers: [{ name: \"X-A\", value: $v }] }) { id } }",
        json!({ "id": id, "v": format!("{}\n", secrets[0]) }),
        &mut bodies,
    );
    gql(
        &server.base,
        &token,
        "query($w: ID!) { workspace(id: $w) { mcpServers { edges { node { id headerNames oauthClientId hasOauthClientSecret } } } \
         auditEvents { edges { node { action details } } } } }",
        json!({ "w": ws }),
        &mut bodies,
    );
    let ready = reqwest::blocking::get(format!("{}/readyz", server.base)).unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let (stdout, stderr) = stop(server);
    assert!(
        stderr.contains("Switchboard listening"),
        "logs are written: {stderr}"
    );
    for secret in secrets {
        for body in &bodies {
            assert!(
                !body.contains(secret),
                "a response contains a secret: {body}"
            );
        }
        assert!(!stderr.contains(secret), "the log contains a secret");
        assert!(!stdout.contains(secret), "stdout contains a secret");
        for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "a secret is stored in plaintext"
            );
        }
    }
    assert!(
        !stderr.contains(&token),
        "the bootstrap token is printed once, never logged"
    );

    // Second start: no new bootstrap, the same token still works.
    let server = start(dir.path(), "second");
    assert!(
        !read(&server.stdout).contains("sbt_"),
        "the token is printed only on first start"
    );
    let data = gql(
        &server.base,
        &token,
        "{ viewer { name } }",
        json!({}),
        &mut Vec::new(),
    );
    assert_eq!(data["data"]["viewer"]["name"], "admin");
    stop(server);
}

#[test]
fn admin_commands_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = command(dir.path()).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    assert!(run(&["migrate"]).contains("migration"));
    let user = run(&["admin", "create-user", "--name", "ops"]);
    let workspace = run(&[
        "admin",
        "create-workspace",
        "--name",
        "Ops",
        "--admin",
        &user,
    ]);
    let viewer = run(&["admin", "create-user", "--name", "watcher"]);
    assert_eq!(
        run(&[
            "admin",
            "add-member",
            "--workspace",
            &workspace,
            "--user",
            &viewer,
            "--role",
            "viewer"
        ]),
        "ok"
    );
    let token = run(&["admin", "create-token", "--user", &user, "--name", "ops"]);
    assert!(token.starts_with("sbt_"));
    let rotated = run(&["admin", "rotate-key"]);
    assert!(rotated.starts_with("re-sealed"), "{rotated}");
    let key_file = std::fs::read_to_string(dir.path().join("data/switchboard.key")).unwrap();
    assert_eq!(
        key_file
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count(),
        2
    );

    let server = start(dir.path(), "cli");
    assert!(
        !read(&server.stdout).contains("sbt_"),
        "users exist, so no bootstrap"
    );
    let data = gql(
        &server.base,
        &token,
        "{ viewer { name } workspaces { id role } }",
        json!({}),
        &mut Vec::new(),
    );
    assert_eq!(data["data"]["viewer"]["name"], "ops");
    assert_eq!(data["data"]["workspaces"][0]["id"], workspace.as_str());
    stop(server);

    let schema = run(&["schema"]);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert_eq!(schema, committed.trim());

    for (name, value) in [
        ("SWITCHBOARD_BIND", "not-an-address"),
        ("SWITCHBOARD_PUBLIC_URL", "ftp://x"),
        ("SWITCHBOARD_ALLOW_PRIVATE_NETWORKS", "perhaps"),
        ("SWITCHBOARD_DB_POOL_SIZE", "0"),
    ] {
        let output = command(dir.path()).env(name, value).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let flag = name
            .trim_start_matches("SWITCHBOARD_")
            .to_lowercase()
            .replace('_', "-");
        assert!(
            stderr.contains(name) || stderr.contains(&flag),
            "{name}: {stderr}"
        );
    }
}

/// The request threads an operator asks for are the ones the server runs with, and it says
/// how many it has.
#[test]
fn the_worker_threads_setting_reaches_the_runtime() {
    // A count other than the default of one per core.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let asked = if cores == 3 { 4 } else { 3 };
    let dir = tempfile::tempdir().unwrap();
    let setting = asked.to_string();
    let server = start_with(
        dir.path(),
        "workers",
        &[("SWITCHBOARD_WORKER_THREADS", setting.as_str())],
    );
    let (_, stderr) = stop(server);
    let listening = lines_with(&stderr, "Switchboard listening");
    assert_eq!(listening.len(), 1, "{stderr}");
    let said = format!("workers={asked}");
    assert!(contains_word(&listening[0], &said), "{}", listening[0]);
}

async fn gql_async(base: &str, token: &str, query: &str, variables: Value) -> Value {
    let body = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

/// Whether `text` contains `needle` as a whole word: not glued to letters, digits, `-` or `_`
/// on either side (the fake authorization server's tokens are short, like `at-1`).
fn contains_word(text: &str, needle: &str) -> bool {
    let glued = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(needle).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(glued)
            && !text[at + needle.len()..].chars().next().is_some_and(glued)
    })
}

/// The lines of `log` holding `needle` as a word, shortened.
fn lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|line| contains_word(line, needle))
        .map(|line| line.chars().take(400).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_hold_no_token_secret_or_tool_argument_and_metrics_listen_apart() {
    use crate::support::fake_as::{AsConfig, FakeAuthServer};
    use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    const CLIENT_ID: &str = "trace-client";
    const CLIENT_SECRET: &str = "client-secret-trace-4b1d";
    const HEADER_VALUE: &str = "header-value-trace-91ac";
    const ARGUMENT: &str = "tool-argument-trace-6e0f";
    const METRICS_TOKEN: &str = "metrics-token-trace-2d7b";

    let auth = FakeAuthServer::start(AsConfig {
        dcr: false,
        preregistered: vec![(CLIENT_ID.into(), Some(CLIENT_SECRET.into()))],
        token_auth_methods: vec!["client_secret_post".into()],
        ..AsConfig::default()
    })
    .await;
    let oauth_mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    let header_mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::StaticHeader {
            name: "x-api-key".into(),
            value: HEADER_VALUE.into(),
        },
        ..McpConfig::default()
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let metrics_bind = format!("127.0.0.1:{}", free_port());
    let server = start_async(
        dir.path(),
        "trace",
        &[
            ("RUST_LOG", "trace"),
            ("SWITCHBOARD_METRICS_TOKEN", METRICS_TOKEN),
            ("SWITCHBOARD_METRICS_BIND", &metrics_bind),
        ],
    )
    .await;
    let admin_token = token_in(&read(&server.stdout));
    let base = server.base.clone();

    // The metrics listen on their own address and ask for their token.
    let scrape = |base: String, token: Option<&'static str>| async move {
        let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    };
    let metrics_base = format!("http://{metrics_bind}");
    assert_eq!(scrape(metrics_base.clone(), Some(METRICS_TOKEN)).await, 200);
    assert_eq!(scrape(metrics_base, None).await, 401);
    assert_eq!(scrape(base.clone(), Some(METRICS_TOKEN)).await, 404);

    // A token minted through the API, then used to sign in over WebSocket.
    let minted = gql_async(
        &base,
        &admin_token,
        "mutation { createApiToken(name: \"trace\") { token } }",
        json!({}),
    )
    .await["createApiToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = gql_async(&base, &minted, "{ workspaces { id } }", json!({})).await;
    let workspace = data["workspaces"][0]["id"].as_str().unwrap().to_owned();
    let mut request = format!("{}/graphql/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {minted}") } })
                .to_string(),
        ))
        .await
        .unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ack.to_string().contains("connection_ack"), "{ack}");
    socket.close(None).await.unwrap();

    // A server behind a static header, and a tool call with a distinctive argument.
    let create =
        "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }";
    let call = "mutation($id: ID!, $a: JSON) { callMcpTool(serverId: $id, name: \"echo\", arguments: $a) { isError } }";
    let data = gql_async(
        &base,
        &admin_token,
        create,
        json!({ "i": { "workspaceId": workspace, "name": "header", "url": header_mcp.url(), "authType": "HEADERS",
                       "headers": [{ "name": "x-api-key", "value": HEADER_VALUE }] } }),
    )
    .await;
    let header_id = data["createMcpServer"]["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gql_async(
        &base,
        &admin_token,
        "mutation($id: ID!) { refreshMcpServer(id: $id) { id } }",
        json!({ "id": header_id }),
    )
    .await;
    let data = gql_async(
        &base,
        &admin_token,
        call,
        json!({ "id": header_id, "a": { "message": ARGUMENT } }),
    )
    .await;
    assert_eq!(data["callMcpTool"]["isError"], false, "{data}");

    // An OAuth flow with a pre-registered client and its secret, a call with the access
    // token, then a refresh after the authorization server forgets the access token.
    let data = gql_async(
        &base,
        &admin_token,
        create,
        json!({ "i": { "workspaceId": workspace, "name": "oauth", "url": oauth_mcp.url(), "authType": "OAUTH",
                       "oauthClientId": CLIENT_ID, "oauthClientSecret": CLIENT_SECRET } }),
    )
    .await;
    let oauth_id = data["createMcpServer"]["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = gql_async(
        &base,
        &admin_token,
        crate::support::START_OAUTH,
        json!({ "id": oauth_id }),
    )
    .await;
    let begin_url = data["startMcpOauth"]["authorizationUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let browser = crate::support::no_redirects();
    let begin = browser.get(&begin_url).send().await.unwrap();
    assert_eq!(begin.status().as_u16(), 302);
    let cookie = begin.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let approved = browser
        .get(crate::support::location(&begin))
        .send()
        .await
        .unwrap();
    let callback = browser
        .get(crate::support::location(&approved))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let page = callback.text().await.unwrap();
    assert!(page.contains("authorized"), "{page}");
    let data = gql_async(
        &base,
        &admin_token,
        call,
        json!({ "id": oauth_id, "a": { "message": ARGUMENT } }),
    )
    .await;
    assert_eq!(data["callMcpTool"]["isError"], false, "{data}");
    auth.expire_access_tokens();
    let data = gql_async(
        &base,
        &admin_token,
        call,
        json!({ "id": oauth_id, "a": { "message": ARGUMENT } }),
    )
    .await;
    assert_eq!(data["callMcpTool"]["isError"], false, "{data}");
    assert_eq!(auth.refresh_count(), 1);
    // Disconnecting revokes the rotated refresh token and the new access token.
    gql_async(
        &base,
        &admin_token,
        "mutation($id: ID!) { disconnectMcpOauth(serverId: $id) { id } }",
        json!({ "id": oauth_id }),
    )
    .await;

    // Every token the authorization server minted, as the MCP server and the token endpoint
    // received them.
    let mut minted_upstream: Vec<String> = oauth_mcp
        .requests()
        .iter()
        .filter_map(|r| {
            r.header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .collect();
    for request in auth.token_requests() {
        minted_upstream.extend(request.field("refresh_token").map(str::to_owned));
        minted_upstream.extend(request.field("code").map(str::to_owned));
    }
    minted_upstream.extend(auth.revocations().into_iter().map(|r| r.token));
    minted_upstream.sort();
    minted_upstream.dedup();
    assert!(
        minted_upstream.len() >= 5,
        "a code, two access tokens and two refresh tokens: {minted_upstream:?}"
    );

    let (_, stderr) = tokio::task::spawn_blocking(move || stop(server))
        .await
        .unwrap();
    assert!(stderr.contains("TRACE"), "the log is at trace level");
    let mut needles = vec![
        admin_token.clone(),
        minted.clone(),
        CLIENT_SECRET.to_owned(),
        HEADER_VALUE.to_owned(),
        ARGUMENT.to_owned(),
        METRICS_TOKEN.to_owned(),
    ];
    needles.extend(minted_upstream);
    let mut leaks = Vec::new();
    for needle in &needles {
        for line in lines_with(&stderr, needle) {
            leaks.push(format!("{needle}: {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaking lines:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
