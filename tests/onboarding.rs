//! Onboarding from a product's backend: service accounts (instance-wide and scoped to one
//! workspace) creating users, workspaces, memberships and tokens through GraphQL; the scope of a
//! workspace-scoped account; refusals for everyone else; audit events; revoked and deleted
//! service-account tokens; identities created ahead of a provider's first sign-in.

use serde_json::{Value, json};
use switchboard::domain::access::Role;
use switchboard::domain::admin;
use switchboard::domain::identity::{KeySource, Provider};
use switchboard_testkit::fake_oidc::{FakeOidc, KeyAlg};
use uuid::Uuid;

use crate::support::{Actor, Options, TestApp, error_code};

const CREATE_SERVICE_ACCOUNT: &str = "mutation($input: CreateServiceAccountInput!) {
    createServiceAccount(input: $input) { id name workspaceId role user { kind instanceWide } } }";
const SERVICE_ACCOUNT_TOKEN: &str = "mutation($id: ID!) {
    createServiceAccountToken(serviceAccountId: $id, name: \"backend\") { token apiToken { id } } }";
const CREATE_USER: &str = "mutation($input: CreateUserInput!) {
    createUser(input: $input) { id name kind } }";
const CREATE_WORKSPACE: &str = "mutation($input: CreateOnboardedWorkspaceInput!) {
    createOnboardedWorkspace(input: $input) { id name } }";
const SET_MEMBERSHIP: &str = "mutation($w: ID!, $u: ID!, $role: WorkspaceRole!) {
    setWorkspaceMembership(workspaceId: $w, userId: $u, role: $role) { role } }";
const REMOVE_MEMBERSHIP: &str = "mutation($w: ID!, $u: ID!) {
    removeWorkspaceMembership(workspaceId: $w, userId: $u) }";
const USER_TOKEN: &str = "mutation($u: ID!) {
    createUserApiToken(userId: $u, name: \"app\") { token apiToken { id } } }";
const REVOKE_USER_TOKEN: &str = "mutation($u: ID!, $id: ID!) {
    revokeUserApiToken(userId: $u, id: $id) { id revokedAt } }";
const USER: &str = "query($id: ID!) { user(id: $id) { id name } }";
const USER_BY_IDENTITY: &str = "query($iss: String!, $sub: String!) {
    userByIdentity(issuer: $iss, subject: $sub) { id name } }";
const ME: &str = "{ viewer { id name kind instanceWide scopeWorkspaceId
    authenticatedBy { method apiTokenId } } workspaces { id role } }";
const INSTANCE_AUDIT: &str = "{ instanceAuditEvents(first: 50) {
    edges { node { action targetId actor { name } } } } }";
const AUDIT: &str = "query($w: ID!) { workspace(id: $w) { auditEvents(first: 50) {
    edges { node { action targetId actor { id name kind } } } } } }";

/// A service account created by `by` (instance-wide without a workspace) and one of its tokens.
async fn service_account(
    t: &TestApp,
    by: &Actor,
    name: &str,
    workspace: Option<Uuid>,
    role: &str,
) -> Actor {
    let input = match workspace {
        Some(w) => json!({ "name": name, "workspaceId": w.to_string(), "role": role }),
        None => json!({ "name": name }),
    };
    let data = t
        .ok(by, CREATE_SERVICE_ACCOUNT, json!({ "input": input }))
        .await;
    let id = data["createServiceAccount"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = t.ok(by, SERVICE_ACCOUNT_TOKEN, json!({ "id": id })).await;
    Actor {
        user_id: id.parse().unwrap(),
        token: data["createServiceAccountToken"]["token"]
            .as_str()
            .unwrap()
            .to_owned(),
        workspace_id: workspace.unwrap_or_default(),
    }
}

fn code(body: &Value) -> &str {
    error_code(body).unwrap_or("<none>")
}

async fn user_count(t: &TestApp) -> usize {
    let mut conn = t.app.db.conn().await.unwrap();
    switchboard::db::access::all_users(&mut conn)
        .await
        .unwrap()
        .len()
}

/// The actions of the instance's audit trail, oldest first, with their actor's name.
async fn instance_audit(t: &TestApp, reader: &Actor) -> Vec<(String, String)> {
    let data = t.ok(reader, INSTANCE_AUDIT, json!({})).await;
    let mut events: Vec<(String, String)> = data["instanceAuditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["action"].as_str().unwrap().to_owned(),
                e["node"]["actor"]["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    events.reverse();
    events
}

/// The actions of a workspace's audit trail, oldest first, with their actor's name.
async fn audit(t: &TestApp, reader: &Actor, workspace: Uuid) -> Vec<(String, String)> {
    let data = t
        .ok(reader, AUDIT, json!({ "w": workspace.to_string() }))
        .await;
    let mut events: Vec<(String, String)> = data["workspace"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["action"].as_str().unwrap().to_owned(),
                e["node"]["actor"]["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    events.reverse();
    events
}

/// An instance-wide service account onboards a person end to end: user, workspace, membership,
/// token. The token works and shows the right workspace; lookups find the user; every step is
/// audited with the service account as actor; a revoked token stops working.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_service_account_onboards_a_user_end_to_end() {
    let t = TestApp::start().await;
    let backend = service_account(&t, &t.admin, "Acme backend", None, "VIEWER").await;

    let me = t.ok(&backend, ME, json!({})).await;
    assert_eq!(me["viewer"]["kind"], "SERVICE_ACCOUNT");
    assert_eq!(me["viewer"]["instanceWide"], true);
    assert_eq!(me["viewer"]["scopeWorkspaceId"], Value::Null);
    assert_eq!(me["viewer"]["authenticatedBy"]["method"], "API_TOKEN");
    assert_eq!(me["workspaces"], json!([]));
    let admin_me = t.ok(&t.admin, ME, json!({})).await;
    assert_eq!(admin_me["viewer"]["kind"], "HUMAN");
    assert_eq!(admin_me["viewer"]["instanceWide"], true, "the first user");

    let data = t
        .ok(
            &backend,
            CREATE_USER,
            json!({ "input": { "name": "Ana", "issuer": "https://id.acme.test", "subject": "ana-1" } }),
        )
        .await;
    assert_eq!(data["createUser"]["kind"], "HUMAN");
    let ana = data["createUser"]["id"].as_str().unwrap().to_owned();
    let data = t
        .ok(&backend, CREATE_USER, json!({ "input": { "name": "Bo" } }))
        .await;
    let bo = data["createUser"]["id"].as_str().unwrap().to_owned();
    let dup = t
        .gql(
            Some(&backend.token),
            CREATE_USER,
            json!({ "input": { "name": " ANA " } }),
        )
        .await;
    assert_eq!(code(&dup), "CONFLICT", "{dup}");
    let half = t
        .gql(
            Some(&backend.token),
            CREATE_USER,
            json!({ "input": { "name": "Cy", "issuer": "https://id.acme.test" } }),
        )
        .await;
    assert_eq!(code(&half), "BAD_USER_INPUT", "{half}");

    let found = t.ok(&backend, USER, json!({ "id": ana })).await;
    assert_eq!(found["user"]["name"], "Ana");
    let found = t
        .ok(
            &backend,
            USER_BY_IDENTITY,
            json!({ "iss": "https://id.acme.test", "sub": "ana-1" }),
        )
        .await;
    assert_eq!(found["userByIdentity"]["id"], ana.as_str());
    let missing = t
        .gql(
            Some(&backend.token),
            USER_BY_IDENTITY,
            json!({ "iss": "https://id.acme.test", "sub": "nobody" }),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND", "{missing}");

    // A workspace with Bo as its admin, and one managed by the service account alone.
    let data = t
        .ok(
            &backend,
            CREATE_WORKSPACE,
            json!({ "input": { "name": "Acme", "adminUserId": bo } }),
        )
        .await;
    let acme = data["createOnboardedWorkspace"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = t
        .ok(
            &backend,
            CREATE_WORKSPACE,
            json!({ "input": { "name": "Solo" } }),
        )
        .await;
    let solo = data["createOnboardedWorkspace"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let data = t
        .ok(
            &backend,
            SET_MEMBERSHIP,
            json!({ "w": acme, "u": ana, "role": "VIEWER" }),
        )
        .await;
    assert_eq!(data["setWorkspaceMembership"]["role"], "VIEWER");
    t.ok(
        &backend,
        SET_MEMBERSHIP,
        json!({ "w": acme, "u": ana, "role": "EDITOR" }),
    )
    .await;
    t.ok(
        &backend,
        SET_MEMBERSHIP,
        json!({ "w": solo, "u": ana, "role": "ADMIN" }),
    )
    .await;
    // The last admin stays, as everywhere.
    let last = t
        .gql(
            Some(&backend.token),
            REMOVE_MEMBERSHIP,
            json!({ "w": solo, "u": ana }),
        )
        .await;
    assert_eq!(code(&last), "CONFLICT", "{last}");
    t.ok(
        &backend,
        SET_MEMBERSHIP,
        json!({ "w": solo, "u": bo, "role": "ADMIN" }),
    )
    .await;
    t.ok(&backend, REMOVE_MEMBERSHIP, json!({ "w": solo, "u": ana }))
        .await;

    let data = t.ok(&backend, USER_TOKEN, json!({ "u": ana })).await;
    let ana_token = data["createUserApiToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ana_token_id = data["createUserApiToken"]["apiToken"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ana_token.starts_with("sbt_"));
    let ana_actor = Actor {
        user_id: ana.parse().unwrap(),
        token: ana_token.clone(),
        workspace_id: acme.parse().unwrap(),
    };
    let me = t.ok(&ana_actor, ME, json!({})).await;
    assert_eq!(me["viewer"]["id"], ana.as_str());
    assert_eq!(me["viewer"]["kind"], "HUMAN");
    assert_eq!(me["viewer"]["instanceWide"], false);
    assert_eq!(me["workspaces"], json!([{ "id": acme, "role": "EDITOR" }]));

    // Tokens are minted here for people only, never for operators or service accounts.
    for target in [t.admin.user_id, backend.user_id] {
        let body = t
            .gql(
                Some(&backend.token),
                USER_TOKEN,
                json!({ "u": target.to_string() }),
            )
            .await;
        assert_eq!(code(&body), "FORBIDDEN", "{body}");
    }

    // Bo, Acme's admin, reads the trail: every change names the service account.
    let bo_token = admin::create_token(&t.app, bo.parse().unwrap(), "t")
        .await
        .unwrap();
    let bo_actor = Actor {
        user_id: bo.parse().unwrap(),
        token: bo_token.token.expose().to_owned(),
        workspace_id: acme.parse().unwrap(),
    };
    let events = audit(&t, &bo_actor, acme.parse().unwrap()).await;
    let by_backend = |action: &str| (action.to_owned(), "Acme backend".to_owned());
    assert_eq!(
        events,
        vec![
            by_backend("workspace.create"),
            by_backend("workspace.member.add"),
            by_backend("workspace.member.add"),
            by_backend("user.token.create"),
        ],
    );

    let data = t
        .ok(
            &backend,
            REVOKE_USER_TOKEN,
            json!({ "u": ana, "id": ana_token_id }),
        )
        .await;
    assert!(data["revokeUserApiToken"]["revokedAt"].is_string());
    let (status, body) = t.gql_raw(Some(&ana_token), ME, json!({})).await;
    assert_eq!(status, 401, "{body}");
    let again = t
        .gql(
            Some(&backend.token),
            REVOKE_USER_TOKEN,
            json!({ "u": ana, "id": ana_token_id }),
        )
        .await;
    assert_eq!(code(&again), "NOT_FOUND", "{again}");
    let events = audit(&t, &bo_actor, acme.parse().unwrap()).await;
    assert_eq!(events.last(), Some(&by_backend("user.token.revoke")));

    // Acts of no workspace are in the instance's trail, for operators only.
    let by_admin = |action: &str| (action.to_owned(), "admin".to_owned());
    assert_eq!(
        instance_audit(&t, &t.admin).await,
        vec![
            by_admin("service_account.create"),
            by_admin("service_account.token.create"),
            by_backend("user.create"),
            by_backend("user.create"),
            by_backend("user.token.create"),
            by_backend("user.token.revoke"),
        ]
    );
    let body = t
        .gql(Some(&bo_actor.token), INSTANCE_AUDIT, json!({}))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
}

/// A user created with an issuer and subject is the user a later JWT of that subject signs in
/// as: no second user, and the memberships given through onboarding.
#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_of_a_precreated_identity_signs_in_as_that_user() {
    let idp = FakeOidc::start(&[KeyAlg::Es256]).await;
    let provider = Provider {
        issuer: idp.issuer.clone(),
        keys: KeySource::Discovery,
        audience: switchboard_testkit::fake_oidc::DEFAULT_AUDIENCE.to_owned(),
        required_scope: None,
        subject_claim: "sub".to_owned(),
        name_claim: Some("name".to_owned()),
        memberships_claim: None,
        console: None,
    };
    let t = TestApp::start_configured(Options::default(), move |config| {
        config.identity_providers = vec![provider];
    })
    .await;
    let backend = service_account(&t, &t.admin, "backend", None, "VIEWER").await;
    let data = t
        .ok(
            &backend,
            CREATE_USER,
            json!({ "input": { "name": "Dee", "issuer": idp.issuer, "subject": "dee-7" } }),
        )
        .await;
    let dee = data["createUser"]["id"].as_str().unwrap().to_owned();
    let workspace = t.admin.workspace_id.to_string();
    t.ok(
        &backend,
        SET_MEMBERSHIP,
        json!({ "w": workspace, "u": dee, "role": "VIEWER" }),
    )
    .await;
    let users = user_count(&t).await;

    let jwt = idp.mint("k1", &idp.claims("dee-7"));
    let body = t.gql(Some(&jwt), ME, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["viewer"]["id"], dee.as_str());
    assert_eq!(body["data"]["viewer"]["name"], "Dee");
    assert_eq!(
        body["data"]["viewer"]["authenticatedBy"]["method"],
        "IDENTITY_PROVIDER"
    );
    assert_eq!(
        body["data"]["workspaces"],
        json!([{ "id": workspace, "role": "VIEWER" }])
    );
    assert_eq!(user_count(&t).await, users, "no second user");

    // The same identity cannot be given to another user.
    let taken = t
        .gql(
            Some(&backend.token),
            CREATE_USER,
            json!({ "input": { "name": "Other", "issuer": idp.issuer, "subject": "dee-7" } }),
        )
        .await;
    assert_eq!(code(&taken), "CONFLICT", "{taken}");
}

/// A service account scoped to workspace A works inside A up to its own role and cannot read or
/// change anything of workspace B: every operation there is `NOT_FOUND`, as for a non-member.
#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_scoped_account_stays_in_its_workspace() {
    let t = TestApp::start().await;
    let alice = t.new_workspace_admin("alice").await;
    let bob = t.new_workspace_admin("bob").await;
    let (a, b) = (alice.workspace_id, bob.workspace_id);
    let bea = t.new_member("bea", b, Role::Viewer).await;
    let bea_token_id = t
        .ok(
            &bea,
            "{ viewer { authenticatedBy { apiTokenId } } }",
            json!({}),
        )
        .await["viewer"]["authenticatedBy"]["apiTokenId"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_identity = "https://id.b.test";
    {
        let mut conn = t.app.db.conn().await.unwrap();
        // Bea also has an identity, to look her up by it.
        switchboard::db::access::insert_provisioned_user(
            &mut conn,
            &switchboard::db::models::ProvisionedUserRow {
                id: switchboard::db::DbUuid(Uuid::now_v7()),
                name: "bea-sso".into(),
                created_at: switchboard::db::DbTime(switchboard::db::now()),
                issuer: Some(bob_identity.into()),
                subject: Some("bea".into()),
            },
        )
        .await
        .unwrap();
    }
    let b_only = t
        .gql(
            Some(&t.admin.token),
            USER_BY_IDENTITY,
            json!({ "iss": bob_identity, "sub": "bea" }),
        )
        .await["data"]["userByIdentity"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.ok(
        &t.admin,
        SET_MEMBERSHIP,
        json!({ "w": b.to_string(), "u": b_only, "role": "VIEWER" }),
    )
    .await;

    let scoped = service_account(&t, &alice, "a-backend", Some(a), "EDITOR").await;
    let me = t.ok(&scoped, ME, json!({})).await;
    assert_eq!(me["viewer"]["kind"], "SERVICE_ACCOUNT");
    assert_eq!(me["viewer"]["instanceWide"], false);
    assert_eq!(me["viewer"]["scopeWorkspaceId"], a.to_string());
    assert_eq!(
        me["workspaces"],
        json!([{ "id": a.to_string(), "role": "EDITOR" }])
    );

    // Inside A: a new user, a membership up to EDITOR, a token.
    let data = t
        .ok(&scoped, CREATE_USER, json!({ "input": { "name": "Ann" } }))
        .await;
    let ann = data["createUser"]["id"].as_str().unwrap().to_owned();
    let (a_id, b_id) = (a.to_string(), b.to_string());
    t.ok(
        &scoped,
        SET_MEMBERSHIP,
        json!({ "w": a_id, "u": ann, "role": "EDITOR" }),
    )
    .await;
    let data = t.ok(&scoped, USER_TOKEN, json!({ "u": ann })).await;
    let ann_token = data["createUserApiToken"]["token"].as_str().unwrap();
    let body = t.gql(Some(ann_token), ME, json!({})).await;
    assert_eq!(
        body["data"]["workspaces"],
        json!([{ "id": a_id, "role": "EDITOR" }])
    );
    t.ok(&scoped, USER, json!({ "id": ann })).await;

    // Not above its own role, not on a member above it, not on service accounts.
    let above = [
        (
            SET_MEMBERSHIP,
            json!({ "w": a_id, "u": ann, "role": "ADMIN" }),
        ),
        (
            REMOVE_MEMBERSHIP,
            json!({ "w": a_id, "u": alice.user_id.to_string() }),
        ),
        (USER_TOKEN, json!({ "u": alice.user_id.to_string() })),
        (CREATE_WORKSPACE, json!({ "input": { "name": "Mine" } })),
        (
            "mutation { createWorkspace(name: \"Mine\") { id } }",
            json!({}),
        ),
        (
            CREATE_SERVICE_ACCOUNT,
            json!({ "input": { "name": "child", "workspaceId": a_id, "role": "VIEWER" } }),
        ),
    ];
    for (query, variables) in above {
        let body = t.gql(Some(&scoped.token), query, variables.clone()).await;
        assert_eq!(code(&body), "FORBIDDEN", "{variables}: {body}");
    }
    let other = service_account(&t, &alice, "a-reader", Some(a), "VIEWER").await;
    let body = t
        .gql(
            Some(&scoped.token),
            USER_TOKEN,
            json!({ "u": other.user_id.to_string() }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let body = t
        .gql(
            Some(&scoped.token),
            SET_MEMBERSHIP,
            json!({ "w": a_id, "u": other.user_id.to_string(), "role": "EDITOR" }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    // Nor can B's admin pull A's service account into B.
    let body = t
        .gql(
            Some(&bob.token),
            "mutation($w: ID!, $u: ID!) { addWorkspaceMember(workspaceId: $w, userId: $u, role: VIEWER) { role } }",
            json!({ "w": b_id, "u": scoped.user_id.to_string() }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");

    // Workspace B, and its members, do not exist for it.
    let bea_id = bea.user_id.to_string();
    let outside = [
        (
            SET_MEMBERSHIP,
            json!({ "w": b_id, "u": ann, "role": "VIEWER" }),
        ),
        (
            SET_MEMBERSHIP,
            json!({ "w": b_id, "u": bea_id, "role": "EDITOR" }),
        ),
        (REMOVE_MEMBERSHIP, json!({ "w": b_id, "u": bea_id })),
        (USER_TOKEN, json!({ "u": bea_id })),
        (
            REVOKE_USER_TOKEN,
            json!({ "u": bea_id, "id": bea_token_id }),
        ),
        (USER, json!({ "id": bea_id })),
        (USER, json!({ "id": bob.user_id.to_string() })),
        (
            USER_BY_IDENTITY,
            json!({ "iss": bob_identity, "sub": "bea" }),
        ),
    ];
    for (query, variables) in outside {
        let body = t.gql(Some(&scoped.token), query, variables.clone()).await;
        assert_eq!(code(&body), "NOT_FOUND", "{variables}: {body}");
    }
    let body = t
        .gql(
            Some(&scoped.token),
            "query($w: ID!) { workspace(id: $w) { id } }",
            json!({ "w": b_id }),
        )
        .await;
    assert_eq!(body["data"]["workspace"], Value::Null, "{body}");
    // B is untouched: Bea is still a viewer there, her token still works.
    let body = t.gql(Some(&bea.token), ME, json!({})).await;
    assert_eq!(
        body["data"]["workspaces"],
        json!([{ "id": b_id, "role": "VIEWER" }])
    );

    // A member who belongs to B too is out of reach for tokens.
    t.ok(
        &scoped,
        SET_MEMBERSHIP,
        json!({ "w": a_id, "u": bea_id, "role": "VIEWER" }),
    )
    .await;
    let body = t
        .gql(Some(&scoped.token), USER_TOKEN, json!({ "u": bea_id }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let body = t
        .gql(
            Some(&scoped.token),
            REVOKE_USER_TOKEN,
            json!({ "u": bea_id, "id": bea_token_id }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");

    // Removal does what removeWorkspaceMember does, and everything names the account.
    t.ok(&scoped, REMOVE_MEMBERSHIP, json!({ "w": a_id, "u": ann }))
        .await;
    let (status, body) = t.gql_raw(Some(ann_token), ME, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["workspaces"], json!([]), "{body}");
    let events = audit(&t, &alice, a).await;
    let by_scoped: Vec<&str> = events
        .iter()
        .filter(|(_, actor)| actor == "a-backend")
        .map(|(action, _)| action.as_str())
        .collect();
    assert_eq!(
        by_scoped,
        [
            "user.create",
            "workspace.member.add",
            "user.token.create",
            "workspace.member.add",
            "workspace.member.remove",
        ]
    );
    assert!(
        events
            .iter()
            .any(|(action, actor)| action == "service_account.create" && actor == "alice"),
        "{events:?}"
    );
}

/// People without the privilege (a workspace's admin, editors, viewers) are refused every
/// onboarding operation with `FORBIDDEN`, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn members_are_refused_every_onboarding_operation() {
    let t = TestApp::start().await;
    let owner = t.new_workspace_admin("owner").await;
    let editor = t.new_member("ed", owner.workspace_id, Role::Editor).await;
    let viewer = t.new_member("vi", owner.workspace_id, Role::Viewer).await;
    let w = owner.workspace_id.to_string();
    let vi = viewer.user_id.to_string();
    let users = user_count(&t).await;
    let operations = [
        (CREATE_USER, json!({ "input": { "name": "Eve" } })),
        (CREATE_WORKSPACE, json!({ "input": { "name": "Eve's" } })),
        (SET_MEMBERSHIP, json!({ "w": w, "u": vi, "role": "EDITOR" })),
        (REMOVE_MEMBERSHIP, json!({ "w": w, "u": vi })),
        (USER_TOKEN, json!({ "u": vi })),
        (
            REVOKE_USER_TOKEN,
            json!({ "u": vi, "id": Uuid::now_v7().to_string() }),
        ),
        (USER, json!({ "id": vi })),
        (
            USER_BY_IDENTITY,
            json!({ "iss": "https://id.test", "sub": "x" }),
        ),
    ];
    for actor in [&owner, &editor, &viewer] {
        for (query, variables) in &operations {
            let body = t.gql(Some(&actor.token), query, variables.clone()).await;
            assert_eq!(code(&body), "FORBIDDEN", "{query} {variables}: {body}");
        }
    }
    // Service accounts: instance-wide ones are for operators, a workspace's for its admins.
    for actor in [&owner, &editor] {
        let body = t
            .gql(
                Some(&actor.token),
                CREATE_SERVICE_ACCOUNT,
                json!({ "input": { "name": "sa" } }),
            )
            .await;
        assert_eq!(code(&body), "FORBIDDEN", "{body}");
        let body = t
            .gql(Some(&actor.token), "{ serviceAccounts { id } }", json!({}))
            .await;
        assert_eq!(code(&body), "FORBIDDEN", "{body}");
    }
    let body = t
        .gql(
            Some(&editor.token),
            CREATE_SERVICE_ACCOUNT,
            json!({ "input": { "name": "sa", "workspaceId": w } }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let elsewhere = t.new_workspace_admin("elsewhere").await;
    let body = t
        .gql(
            Some(&elsewhere.token),
            CREATE_SERVICE_ACCOUNT,
            json!({ "input": { "name": "sa", "workspaceId": w } }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    assert_eq!(
        user_count(&t).await,
        users + 1,
        "only the other admin was added"
    );
    let body = t.gql(Some(&viewer.token), ME, json!({})).await;
    assert_eq!(
        body["data"]["workspaces"],
        json!([{ "id": w, "role": "VIEWER" }])
    );

    // Granting the privilege (`switchboard admin grant-operator`) lets a person onboard;
    // withdrawing it stops them.
    admin::set_operator(&t.app, owner.user_id, true)
        .await
        .unwrap();
    t.ok(&owner, CREATE_USER, json!({ "input": { "name": "Eve" } }))
        .await;
    admin::set_operator(&t.app, owner.user_id, false)
        .await
        .unwrap();
    let body = t
        .gql(
            Some(&owner.token),
            CREATE_USER,
            json!({ "input": { "name": "Fay" } }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let trail = instance_audit(&t, &t.admin).await;
    assert_eq!(
        trail,
        vec![
            ("operator.grant".to_owned(), String::new()),
            ("user.create".to_owned(), "owner".to_owned()),
            ("operator.revoke".to_owned(), String::new()),
        ]
    );
}

/// A revoked service-account token stops working at once, as any token does; deleting the
/// account ends its other tokens and its membership, and takes it off the list.
#[tokio::test(flavor = "multi_thread")]
async fn revoked_and_deleted_service_accounts_stop_working() {
    let t = TestApp::start().await;
    let alice = t.new_workspace_admin("alice").await;
    let a = alice.workspace_id.to_string();
    let scoped = service_account(&t, &alice, "a-backend", Some(alice.workspace_id), "ADMIN").await;
    let id = scoped.user_id.to_string();
    let token_id = t
        .ok(
            &scoped,
            "{ viewer { authenticatedBy { apiTokenId } } }",
            json!({}),
        )
        .await["viewer"]["authenticatedBy"]["apiTokenId"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = t
        .ok(
            &alice,
            "query($w: ID) { serviceAccounts(workspaceId: $w) { id name role workspaceId } }",
            json!({ "w": a }),
        )
        .await;
    assert_eq!(
        list["serviceAccounts"],
        json!([{ "id": id, "name": "a-backend", "role": "ADMIN", "workspaceId": a }])
    );

    let revoked = t
        .ok(
            &alice,
            "mutation($s: ID!, $id: ID!) { revokeServiceAccountToken(serviceAccountId: $s, id: $id) { revokedAt } }",
            json!({ "s": id, "id": token_id }),
        )
        .await;
    assert!(revoked["revokeServiceAccountToken"]["revokedAt"].is_string());
    let (status, body) = t.gql_raw(Some(&scoped.token), ME, json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), "UNAUTHENTICATED");
    let list = t
        .ok(
            &alice,
            "query($w: ID) { serviceAccounts(workspaceId: $w) { tokens { id name revokedAt } } }",
            json!({ "w": a }),
        )
        .await;
    let tokens = &list["serviceAccounts"][0]["tokens"];
    assert_eq!(tokens[0]["id"], token_id.as_str(), "{list}");
    assert_eq!(tokens[0]["name"], "backend");
    assert!(tokens[0]["revokedAt"].is_string(), "{list}");

    let data = t
        .ok(&alice, SERVICE_ACCOUNT_TOKEN, json!({ "id": id }))
        .await;
    let second = data["createServiceAccountToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = t
        .gql(
            Some(&second),
            CREATE_USER,
            json!({ "input": { "name": "Gus" } }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");

    // Another workspace's admin sees no such account.
    let bob = t.new_workspace_admin("bob").await;
    let body = t
        .gql(
            Some(&bob.token),
            "mutation($id: ID!) { deleteServiceAccount(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");

    t.ok(
        &alice,
        "mutation($id: ID!) { deleteServiceAccount(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let (status, _) = t.gql_raw(Some(&second), ME, json!({})).await;
    assert_eq!(status, 401);
    let list = t
        .ok(
            &alice,
            "query($w: ID) { serviceAccounts(workspaceId: $w) { id } }",
            json!({ "w": a }),
        )
        .await;
    assert_eq!(list["serviceAccounts"], json!([]));
    let body = t.ok(&alice, "{ workspaces { id } }", json!({})).await;
    assert_eq!(body["workspaces"], json!([{ "id": a }]));
    let events = audit(&t, &alice, alice.workspace_id).await;
    assert_eq!(
        events.last(),
        Some(&("service_account.delete".to_owned(), "alice".to_owned()))
    );
    let again = t
        .gql(
            Some(&alice.token),
            SERVICE_ACCOUNT_TOKEN,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&again), "NOT_FOUND", "{again}");
}

/// Removal through onboarding does what `removeWorkspaceMember` does: the member's per-user
/// grant is revoked upstream and deleted, another member's stays, and the removal is audited
/// with the service account as actor.
#[tokio::test(flavor = "multi_thread")]
async fn removal_through_onboarding_revokes_exactly_the_members_grants() {
    use crate::support::fake_as::{AsConfig, FakeAuthServer};
    use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig, whoami_tool};
    const WHOAMI: &str =
        "mutation($id: ID!) { callMcpTool(serverId: $id, name: \"whoami\") { content isError } }";

    let t = TestApp::start().await;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        tools: vec![whoami_tool()],
        ..McpConfig::default()
    })
    .await;
    let server = t
        .create_server(
            &t.admin,
            json!({ "name": "mine", "url": mcp.url(), "credentials": "PER_USER" }),
        )
        .await;
    let workspace = t.admin.workspace_id;
    let alice = t.new_member("alice", workspace, Role::Viewer).await;
    let bob = t.new_member("bob", workspace, Role::Viewer).await;
    for (actor, subject) in [(&alice, "alice-upstream"), (&bob, "bob-upstream")] {
        auth.set_subject(subject);
        let run = t.authorize_in_browser(actor, &server).await;
        assert_eq!(run.status, 200, "{}", run.page);
    }
    let scoped = service_account(&t, &t.admin, "backend", Some(workspace), "EDITOR").await;

    t.ok(
        &scoped,
        REMOVE_MEMBERSHIP,
        json!({ "w": workspace.to_string(), "u": alice.user_id.to_string() }),
    )
    .await;
    let revoked: Vec<Option<String>> = auth.revocations().into_iter().map(|r| r.subject).collect();
    assert!(!revoked.is_empty(), "alice's grant was revoked upstream");
    assert!(
        revoked
            .iter()
            .all(|s| s.as_deref() == Some("alice-upstream")),
        "{revoked:?}"
    );
    let mut conn = t.app.db.conn().await.unwrap();
    let server_id: Uuid = server.parse().unwrap();
    assert!(
        switchboard::db::oauth::find_grant(&mut conn, server_id, Some(alice.user_id))
            .await
            .unwrap()
            .is_none()
    );
    drop(conn);
    let body = t
        .gql(Some(&bob.token), WHOAMI, json!({ "id": server }))
        .await;
    assert_eq!(
        body["data"]["callMcpTool"]["content"][0]["text"], "bob-upstream",
        "{body}"
    );
    let body = t
        .gql(Some(&alice.token), WHOAMI, json!({ "id": server }))
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    let events = audit(&t, &t.admin, workspace).await;
    assert!(
        events.contains(&("workspace.member.remove".to_owned(), "backend".to_owned())),
        "{events:?}"
    );
    assert!(
        events.contains(&("mcp_server.oauth_revoke".to_owned(), "backend".to_owned())),
        "{events:?}"
    );
}
