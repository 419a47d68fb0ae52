//! The `switchboard` binary as an operator runs it: first start, the printed token, the key
//! file, graceful shutdown, the admin commands, and that no secret ever reaches a response, a
//! log line or the database file in plaintext.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

struct Server {
    child: Child,
    base: String,
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

fn command(dir: &Path) -> Command {
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

fn start(dir: &Path, tag: &str) -> Server {
    let port = free_port();
    let stdout = dir.join(format!("{tag}.stdout"));
    let stderr = dir.join(format!("{tag}.stderr"));
    let child = command(dir)
        .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn switchboard");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::blocking::get(format!("{base}/healthz"))
            && response.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not become healthy: {}",
            read(&stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        base,
        stdout,
        stderr,
    }
}

fn read(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

fn stop(mut server: Server) -> (String, String) {
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

fn gql(base: &str, token: &str, query: &str, variables: Value, bodies: &mut Vec<String>) -> Value {
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

    let key_file = dir.path().join("data/switchboard.key");
    let mode = std::fs::metadata(&key_file)
        .expect("key file created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

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
