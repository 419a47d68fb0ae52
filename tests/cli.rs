//! `switchboard admin …` as an operator runs it, against the configured backend (a SQLite file,
//! or a fresh PostgreSQL database when `SWITCHBOARD_TEST_DATABASE_URL` is set): users and
//! workspaces named by id or by name, ambiguous and unknown names, the listings, unique user
//! names, and help and settings limited to what the admin commands read.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::crypto::KeyRing;
use switchboard::db::DatabaseTarget;
use switchboard::db::models::UserRow;
use uuid::Uuid;

use crate::binary::{command, gql, start_with, stop};

const KEYS: &str = "k1:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A database and the environment that points the binary at it.
struct Site {
    dir: tempfile::TempDir,
    database: DatabaseTarget,
    env: Vec<(&'static str, String)>,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let database = runtime().block_on(crate::support::test_database(dir.path()));
        let mut env = Vec::new();
        match &database {
            DatabaseTarget::Postgres(url) => {
                env.push(("SWITCHBOARD_DATABASE_URL", url.clone()));
                // PostgreSQL mode needs its keys given.
                env.push(("SWITCHBOARD_ENCRYPTION_KEYS", KEYS.to_owned()));
            }
            // SQLite mode keeps its key file beside the database.
            DatabaseTarget::Sqlite(path) => {
                env.push((
                    "SWITCHBOARD_DATABASE_URL",
                    format!("sqlite://{}", path.display()),
                ));
            }
        }
        Site { dir, database, env }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.database, DatabaseTarget::Postgres(_))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// Run the binary with `args` and `extra` environment.
    fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        command(self.path())
            .envs(self.env())
            .envs(extra.iter().copied())
            .args(args)
            .output()
            .unwrap()
    }

    /// Run a command that must succeed; its stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run_with(args, &[]);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Run a command that must fail with nothing on stdout; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run_with(args, &[]);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "",
            "{args:?}"
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// Start the server on this database.
    fn start(&self, tag: &str) -> crate::binary::Server {
        start_with(self.path(), tag, &self.env())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The data rows of a table (the header checked and dropped), split into columns at the runs
/// of spaces between them; the names used here have no two spaces in a row.
fn rows(table: &str, columns: usize) -> Vec<Vec<String>> {
    let split = |line: &str| -> Vec<String> {
        line.split("  ")
            .filter(|cell| !cell.trim().is_empty())
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    let mut lines = table.lines();
    let header = split(lines.next().expect("a header"));
    assert_eq!(header.len(), columns, "{table}");
    assert_eq!(header[0], "ID", "{table}");
    assert_eq!(header[columns - 1], "NAME", "{table}");
    lines
        .map(|line| {
            let cells = split(line);
            assert_eq!(cells.len(), columns, "{line}");
            cells
        })
        .collect()
}

/// The operator lost the first start's output: a token for the user named `admin`, a
/// workspace and its members named rather than copied ids, and the lists show all of it.
#[test]
fn admin_commands_take_names_and_list_what_they_made() {
    let site = Site::new();
    // First start creates the workspace "Default" and the user "admin".
    let server = site.start("first");
    let token = site.ok(&[
        "admin",
        "create-token",
        "--user",
        "admin",
        "--name",
        "laptop",
    ]);
    assert!(token.starts_with("sbt_"), "{token}");
    let data = gql(
        &server.base,
        &token,
        "{ viewer { name } workspaces { name role } }",
        json!({}),
        &mut Vec::new(),
    );
    assert_eq!(data["data"]["viewer"]["name"], "admin", "{data}");
    assert_eq!(
        data["data"]["workspaces"],
        json!([{ "name": "Default", "role": "ADMIN" }])
    );
    stop(server);

    let alice = site.ok(&["admin", "create-user", "--name", "Alice Liddell"]);
    let bob = site.ok(&["admin", "create-user", "--name", "bob"]);
    // Names match trimmed and in any case; ids work as before.
    let team = site.ok(&[
        "admin",
        "create-workspace",
        "--name",
        "Research Team",
        "--admin",
        " alice liddell ",
    ]);
    assert_eq!(
        site.ok(&[
            "admin",
            "add-member",
            "--workspace",
            "research team",
            "--user",
            "BOB",
            "--role",
            "editor",
        ]),
        "ok"
    );
    assert_eq!(
        site.ok(&[
            "admin",
            "add-member",
            "--workspace",
            "Default",
            "--user",
            &bob,
            "--role",
            "viewer",
        ]),
        "ok"
    );
    let bob_token = site.ok(&["admin", "create-token", "--user", "bob"]);

    let users = site.ok(&["admin", "list-users"]);
    let listed = rows(&users, 4);
    let names: Vec<&str> = listed.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(
        names,
        ["admin", "Alice Liddell", "bob"],
        "oldest first:\n{users}"
    );
    assert_eq!(listed[1][0], alice);
    assert_eq!(listed[2][0], bob);
    let workspaces_of: Vec<&str> = listed.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(workspaces_of, ["1", "1", "2"], "{users}");
    assert!(
        listed
            .iter()
            .all(|r| r[1].len() == 20 && r[1].ends_with('Z')),
        "creation times in UTC to the second:\n{users}"
    );
    assert!(users.lines().next().unwrap().starts_with("ID "), "{users}");

    let members = site.ok(&["admin", "list-users", "--workspace", "Research Team"]);
    let listed = rows(&members, 4);
    assert!(members.starts_with("ID"), "{members}");
    assert!(
        members.lines().next().unwrap().contains("ROLE"),
        "{members}"
    );
    let roles: Vec<(&str, &str)> = listed
        .iter()
        .map(|r| (r[3].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(roles, [("Alice Liddell", "admin"), ("bob", "editor")]);

    let workspaces = site.ok(&["admin", "list-workspaces"]);
    let listed = rows(&workspaces, 4);
    let summary: Vec<(&str, &str)> = listed
        .iter()
        .map(|r| (r[3].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(summary, [("Default", "2"), ("Research Team", "2")]);
    assert_eq!(listed[1][0], team);

    let json: Value =
        serde_json::from_str(&site.ok(&["admin", "list-workspaces", "--json"])).expect("JSON");
    assert_eq!(json[1]["id"], team.as_str());
    assert_eq!(json[1]["name"], "Research Team");
    assert_eq!(
        json[1]["members"],
        json!([
            { "id": alice, "name": "Alice Liddell", "role": "admin" },
            { "id": bob, "name": "bob", "role": "editor" },
        ])
    );
    assert!(json[1]["createdAt"].as_str().unwrap().ends_with('Z'));
    let json: Value =
        serde_json::from_str(&site.ok(&["admin", "list-users", "--json"])).expect("JSON");
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[2]["name"], "bob");
    assert_eq!(
        json[2]["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["name"].as_str().unwrap(), w["role"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("Research Team", "editor"), ("Default", "viewer")]
    );

    // Removing by names; the change shows in the lists and in the API.
    assert_eq!(
        site.ok(&[
            "admin",
            "remove-member",
            "--workspace",
            "default",
            "--user",
            "bob"
        ]),
        "ok"
    );
    let members = site.ok(&["admin", "list-users", "--workspace", "Default"]);
    assert_eq!(rows(&members, 4).len(), 1, "{members}");
    let server = site.start("second");
    let data = gql(
        &server.base,
        &bob_token,
        "{ viewer { name } workspaces { name role } }",
        json!({}),
        &mut Vec::new(),
    );
    assert_eq!(data["data"]["viewer"]["name"], "bob", "{data}");
    assert_eq!(
        data["data"]["workspaces"],
        json!([{ "name": "Research Team", "role": "EDITOR" }])
    );
    stop(server);
}

/// A name several workspaces (or, in a database from before names were unique, several users)
/// share is refused, listing each candidate's name and id; an unknown name or id is refused
/// too. Nothing is changed.
#[test]
fn ambiguous_and_unknown_names_are_refused_with_the_candidates() {
    let site = Site::new();
    let owner = site.ok(&["admin", "create-user", "--name", "owner"]);
    let first = site.ok(&[
        "admin",
        "create-workspace",
        "--name",
        "Team",
        "--admin",
        "owner",
    ]);
    let second = site.ok(&[
        "admin",
        "create-workspace",
        "--name",
        "team",
        "--admin",
        &owner,
    ]);
    site.ok(&["admin", "create-user", "--name", "carol"]);

    let stderr = site.fails(&[
        "admin",
        "add-member",
        "--workspace",
        "TEAM",
        "--user",
        "carol",
        "--role",
        "viewer",
    ]);
    assert!(stderr.contains("--workspace"), "{stderr}");
    for (name, id) in [("\"Team\"", &first), ("\"team\"", &second)] {
        assert!(
            stderr.contains(&format!("{name} ({id})")),
            "{name} {id}: {stderr}"
        );
    }
    let members = site.ok(&["admin", "list-users", "--workspace", &first]);
    assert_eq!(rows(&members, 4).len(), 1, "nothing added:\n{members}");
    // The id settles it.
    site.ok(&[
        "admin",
        "add-member",
        "--workspace",
        &second,
        "--user",
        "carol",
        "--role",
        "viewer",
    ]);

    // Users sharing a name, as a database written before names were unique may hold.
    let twins = runtime().block_on(async {
        let app =
            switchboard::App::build(Config::defaults(site.database.clone()), KeyRing::generate())
                .await
                .unwrap();
        let mut conn = app.db.conn().await.unwrap();
        let mut ids = Vec::new();
        for name in ["Dana", "dana"] {
            let row = UserRow::human(name.into());
            switchboard::db::access::insert_user(&mut conn, &row)
                .await
                .unwrap();
            ids.push(row.id.0.to_string());
        }
        ids
    });
    let stderr = site.fails(&["admin", "create-token", "--user", "dana"]);
    assert!(stderr.contains("--user"), "{stderr}");
    assert!(
        stderr.contains(&format!("\"Dana\" ({})", twins[0]))
            && stderr.contains(&format!("\"dana\" ({})", twins[1])),
        "{stderr}"
    );
    let stderr = site.fails(&[
        "admin",
        "create-workspace",
        "--name",
        "Dana's",
        "--admin",
        "DANA",
    ]);
    assert!(
        stderr.contains("--admin") && stderr.contains(&twins[1]),
        "{stderr}"
    );
    assert!(
        site.ok(&["admin", "create-token", "--user", &twins[1]])
            .starts_with("sbt_")
    );

    let stderr = site.fails(&["admin", "create-token", "--user", "nobody"]);
    assert!(
        stderr.contains("--user") && stderr.contains("no user") && stderr.contains("nobody"),
        "{stderr}"
    );
    let unknown = Uuid::now_v7().to_string();
    let stderr = site.fails(&[
        "admin",
        "remove-member",
        "--workspace",
        &unknown,
        "--user",
        "carol",
    ]);
    assert!(
        stderr.contains("--workspace")
            && stderr.contains("no workspace")
            && stderr.contains(&unknown),
        "{stderr}"
    );
    let workspaces = site.ok(&["admin", "list-workspaces"]);
    assert_eq!(rows(&workspaces, 4).len(), 2, "{workspaces}");
}

/// User names are unique whatever their case and surrounding spaces, beyond ASCII too.
#[test]
fn duplicate_user_names_are_refused() {
    let site = Site::new();
    let alice = site.ok(&["admin", "create-user", "--name", "alice"]);
    for name in ["alice", " ALICE ", "Alice"] {
        let stderr = site.fails(&["admin", "create-user", "--name", name]);
        assert!(
            stderr.contains("already exists") && stderr.contains(&alice),
            "{name:?}: {stderr}"
        );
    }
    site.ok(&["admin", "create-user", "--name", "Émile"]);
    let stderr = site.fails(&["admin", "create-user", "--name", "éMILE"]);
    assert!(stderr.contains("already exists"), "{stderr}");
    site.ok(&["admin", "create-user", "--name", "alice b"]);

    // Operators creating the same user at the same moment: one wins, the others are told.
    let racers: Vec<_> = (0..6)
        .map(|i| {
            command(site.path())
                .envs(site.env())
                .args([
                    "admin",
                    "create-user",
                    "--name",
                    if i % 2 == 0 { "zoe" } else { "Zoe" },
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = racers
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let won = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "exactly one is created");
    for output in outputs.iter().filter(|o| !o.status.success()) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("already exists"), "{stderr}");
    }

    let users = site.ok(&["admin", "list-users"]);
    let names: Vec<String> = rows(&users, 4).into_iter().map(|r| r[3].clone()).collect();
    assert_eq!(names.len(), 4, "{users}");
    assert_eq!(names[..3], ["alice", "Émile", "alice b"], "{users}");
    assert!(names[3].eq_ignore_ascii_case("zoe"), "{users}");
}

/// `admin` and its commands show and read only the database URL and the keys; the server's
/// own settings stay in `switchboard --help` and `serve --help`, and a bad value of one of
/// them does not stop an admin command.
#[test]
fn admin_help_and_settings_are_the_admin_commands_own() {
    let site = Site::new();
    let help = |args: &[&str]| site.ok(args);
    let server_only = [
        "--bind",
        "--max-query-depth",
        "--health-interval-secs",
        "--public-url",
        "--allow-private-networks",
        "--log-format",
        "--db-pool-size",
        "--ws-max-sockets",
        "--metrics-token",
    ];
    let admin_settings = ["--database-url", "--encryption-keys", "--key-file"];
    let mut admin_helps = vec![vec!["admin", "--help"], vec!["help", "admin"]];
    for command in [
        "create-user",
        "create-workspace",
        "add-member",
        "remove-member",
        "create-token",
        "list-users",
        "list-workspaces",
        "rotate-key",
    ] {
        admin_helps.push(vec!["admin", command, "--help"]);
    }
    for args in &admin_helps {
        let text = help(args);
        for flag in server_only {
            assert!(!text.contains(flag), "{args:?} shows {flag}:\n{text}");
        }
        for flag in admin_settings {
            assert!(text.contains(flag), "{args:?} lacks {flag}:\n{text}");
        }
    }
    let admin = help(&["admin", "--help"]);
    for command in ["list-users", "list-workspaces", "create-token"] {
        assert!(admin.contains(command), "{admin}");
    }
    for args in [vec!["--help"], vec!["serve", "--help"]] {
        let text = help(&args);
        for flag in server_only.iter().chain(&admin_settings) {
            assert!(text.contains(flag), "{args:?} lacks {flag}:\n{text}");
        }
    }

    // A server-only setting with a bad value stops the server, not the admin commands.
    let output = site.run_with(
        &["admin", "list-users"],
        &[("SWITCHBOARD_MAX_QUERY_DEPTH", "1")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for args in [&["serve"][..], &[]] {
        let output = site.run_with(args, &[("SWITCHBOARD_MAX_QUERY_DEPTH", "1")]);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("max-query-depth"), "{args:?}: {stderr}");
    }
    // Server flags are no admin flags, before or after `admin`.
    for args in [
        &["admin", "list-users", "--bind", "127.0.0.1:9"][..],
        &["--bind", "127.0.0.1:9", "admin", "list-users"],
    ] {
        let stderr = site.fails(args);
        assert!(stderr.contains("--bind"), "{args:?}: {stderr}");
    }

    // The admin settings go before or after the admin command's name, and the environment
    // gives them too; a bad key list is refused, naming the setting, without echoing it.
    let url = site.env[0].1.clone();
    let output = command(site.path())
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .envs(site.env().into_iter().skip(1))
        .args([
            "admin",
            "--database-url",
            &url,
            "create-user",
            "--name",
            "erin",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let users = site.ok(&["admin", "list-users", "--database-url", &url]);
    assert!(users.contains("erin"), "{users}");
    let output = site.run_with(
        &["admin", "list-users"],
        &[("SWITCHBOARD_ENCRYPTION_KEYS", "k1:too-short-4f2e")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SWITCHBOARD_ENCRYPTION_KEYS"), "{stderr}");
    assert!(!stderr.contains("too-short-4f2e"), "{stderr}");
    if !site.is_postgres() {
        // In SQLite mode an admin command creates the key file it is told to use.
        let key_file = site.path().join("elsewhere.key");
        let output = site.run_with(
            &["admin", "create-user", "--name", "frank"],
            &[("SWITCHBOARD_KEY_FILE", key_file.to_str().unwrap())],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            key_file.exists(),
            "the key file named by SWITCHBOARD_KEY_FILE"
        );
    }
}

/// Users created at the same moment through the library, on one pool: a name is taken once.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creations_of_one_name_create_one_user() {
    let t = crate::support::TestApp::start().await;
    // Open the pool's connections first, so the attempts start together.
    let held = futures_util::future::join_all((0..8).map(|_| t.app.db.conn())).await;
    drop(held);
    let attempts = (0..8).map(|i| {
        let app = t.app.clone();
        tokio::spawn(async move {
            let name = if i % 2 == 0 { "zoe" } else { " ZOE" };
            switchboard::domain::admin::create_user(&app, name).await
        })
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    let mut created = 0;
    for outcome in outcomes {
        match outcome.unwrap() {
            Ok(_) => created += 1,
            Err(error) => assert!(error.to_string().contains("already exists"), "{error}"),
        }
    }
    assert_eq!(created, 1);
}

/// Replicas starting together on an empty database: one of them creates the first admin.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_starts_create_one_admin() {
    let dir = tempfile::tempdir().unwrap();
    let database = crate::support::test_database(dir.path()).await;
    let app = switchboard::App::build(Config::defaults(database), KeyRing::generate())
        .await
        .unwrap();
    app.db.migrate().await.unwrap();
    let held = futures_util::future::join_all((0..8).map(|_| app.db.conn())).await;
    drop(held);
    let attempts = (0..8).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { switchboard::domain::admin::bootstrap(&app).await })
    });
    let mut created = 0;
    for outcome in futures_util::future::join_all(attempts).await {
        if outcome.unwrap().expect("bootstrap").is_some() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    let users = switchboard::domain::admin::list_users(&app).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user.name, "admin");
}

/// `grant-operator` lets a person onboard through the API (here, create a user);
/// `revoke-operator` takes it back.
#[test]
fn operators_are_granted_and_revoked_from_the_command_line() {
    let site = Site::new();
    site.ok(&["admin", "create-user", "--name", "carol"]);
    let token = site.ok(&["admin", "create-token", "--user", "carol"]);
    assert_eq!(
        site.ok(&["admin", "grant-operator", "--user", "carol"]),
        "ok"
    );
    let create = "mutation($n: String!) { createUser(input: { name: $n }) { name } }";
    let server = site.start("granted");
    let me = gql(
        &server.base,
        &token,
        "{ viewer { instanceWide } }",
        json!({}),
        &mut Vec::new(),
    );
    assert_eq!(me["data"]["viewer"]["instanceWide"], true, "{me}");
    let made = gql(
        &server.base,
        &token,
        create,
        json!({ "n": "dave" }),
        &mut Vec::new(),
    );
    assert_eq!(made["data"]["createUser"]["name"], "dave", "{made}");
    stop(server);

    assert_eq!(
        site.ok(&["admin", "revoke-operator", "--user", "CAROL"]),
        "ok"
    );
    let server = site.start("revoked");
    let refused = gql(
        &server.base,
        &token,
        create,
        json!({ "n": "erin" }),
        &mut Vec::new(),
    );
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    stop(server);
    let stderr = site.fails(&["admin", "grant-operator", "--user", "nobody"]);
    assert!(stderr.contains("--user"), "{stderr}");
}
