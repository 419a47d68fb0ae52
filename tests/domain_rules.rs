//! Domain rules called directly, with no GraphQL in between: the update and invalidation rules
//! of `domain::servers::update` (which changes remove the grant and start the status over,
//! which drop secrets, which leave everything as it was; one row per rule), and what a page of
//! servers loads about their OAuth state.

use serde_json::json;
use switchboard::crypto::Secret;
use switchboard::db::models::{FlowRow, OauthGrantRow};
use switchboard::db::types::{
    AuthStatus, AuthType, ConnectionStatus, RegistrationKind, StatusReason,
};
use switchboard::db::{self, DbTime, DbUuid};
use switchboard::domain::Error;
use switchboard::domain::access::{self, Principal};
use switchboard::domain::limits::RequestBudget;
use switchboard::domain::servers::{self, HeaderInput, Patch, ServerChanges};
use uuid::Uuid;

use crate::support::TestApp;

/// The state a rule starts from: an OAuth server with a pre-registered client, a static
/// header, a grant with tokens, connected and authorized.
async fn authorized_oauth_server(t: &TestApp, name: &str) -> Uuid {
    let id = t
        .create_server(
            &t.admin,
            json!({ "name": name, "url": format!("http://127.0.0.1:9/{name}"), "authType": "OAUTH",
                    "oauthClientId": "cid", "oauthClientSecret": "secret",
                    "headers": [{ "name": "X-Tenant", "value": "t-1" }] }),
        )
        .await;
    let id = Uuid::parse_str(&id).unwrap();
    let mut conn = t.app.db.conn().await.unwrap();
    let now = DbTime(db::now());
    let grant = OauthGrantRow {
        issuer: Some("https://as.example".into()),
        tokens_sealed: Some("sealed".into()),
        token_generation: 1,
        ..OauthGrantRow::empty(DbUuid(id), None, now)
    };
    db::oauth::insert_grant(&mut conn, &grant).await.unwrap();
    let mut row = db::servers::find(&mut conn, id).await.unwrap().unwrap();
    row.connection_status = ConnectionStatus::Connected;
    row.auth_status = AuthStatus::Authorized;
    row.status_reason = Some(StatusReason::Connected);
    db::servers::save(&mut conn, &row).await.unwrap();
    id
}

async fn principal(t: &TestApp) -> Principal {
    access::authenticate(&t.app, &t.admin.token).await.unwrap()
}

async fn update(
    t: &TestApp,
    id: Uuid,
    changes: ServerChanges,
) -> Result<switchboard::db::models::McpServerRow, Error> {
    let principal = principal(t).await;
    let budget = RequestBudget::new(1);
    let outbound = t.app.limits.admit(&budget, &principal).unwrap();
    servers::update(&t.app, &principal, outbound, id, changes).await
}

async fn has_grant(t: &TestApp, id: Uuid) -> bool {
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::find_grant(&mut conn, id, None)
        .await
        .unwrap()
        .is_some()
}

fn header(name: &str, value: &str) -> HeaderInput {
    HeaderInput {
        name: name.into(),
        value: Secret::new(value.to_owned()),
    }
}

/// What a rule expects after the update.
struct Expect {
    grant_kept: bool,
    status: Option<(ConnectionStatus, AuthStatus, StatusReason)>,
    headers_kept: bool,
    client_kept: bool,
}

const UNTOUCHED: Expect = Expect {
    grant_kept: true,
    status: Some((
        ConnectionStatus::Connected,
        AuthStatus::Authorized,
        StatusReason::Connected,
    )),
    headers_kept: true,
    client_kept: true,
};

const STARTED_OVER_SAME_ORIGIN: fn(StatusReason) -> Expect = |reason| Expect {
    grant_kept: false,
    status: Some((
        ConnectionStatus::Disconnected,
        AuthStatus::AuthorizationRequired,
        reason,
    )),
    headers_kept: true,
    client_kept: true,
};

#[tokio::test(flavor = "multi_thread")]
async fn every_update_rule() {
    let t = TestApp::start().await;
    let rows: Vec<(&str, ServerChanges, Expect)> = vec![
        (
            "a new name changes nothing else",
            ServerChanges {
                name: Patch::Set("renamed".into()),
                ..Default::default()
            },
            UNTOUCHED,
        ),
        (
            "new headers on an OAuth server leave its grant and status",
            ServerChanges {
                headers: Patch::Set(vec![header("X-Tenant", "t-2")]),
                ..Default::default()
            },
            UNTOUCHED,
        ),
        (
            "the same secret again changes nothing",
            ServerChanges {
                oauth_client_secret: Patch::Set(Secret::new("secret".to_owned())),
                ..Default::default()
            },
            UNTOUCHED,
        ),
        (
            "a new path on the same origin starts over and keeps the secrets",
            ServerChanges {
                url: Patch::Set("http://127.0.0.1:9/elsewhere".into()),
                ..Default::default()
            },
            STARTED_OVER_SAME_ORIGIN(StatusReason::UrlChanged),
        ),
        (
            "a new client id starts over",
            ServerChanges {
                oauth_client_id: Patch::Set("cid-2".into()),
                ..Default::default()
            },
            STARTED_OVER_SAME_ORIGIN(StatusReason::CredentialsChanged),
        ),
        (
            "a new secret starts over",
            ServerChanges {
                oauth_client_secret: Patch::Set(Secret::new("secret-2".to_owned())),
                ..Default::default()
            },
            STARTED_OVER_SAME_ORIGIN(StatusReason::CredentialsChanged),
        ),
        (
            "another origin drops the header values and the client, and starts over",
            ServerChanges {
                url: Patch::Set("http://127.0.0.2:9/mcp".into()),
                auth_type: Patch::Set(AuthType::Oauth),
                ..Default::default()
            },
            Expect {
                grant_kept: false,
                status: Some((
                    ConnectionStatus::Disconnected,
                    AuthStatus::AuthorizationRequired,
                    StatusReason::UrlChanged,
                )),
                headers_kept: false,
                client_kept: false,
            },
        ),
        (
            "another auth type starts over as that type",
            ServerChanges {
                auth_type: Patch::Set(AuthType::Headers),
                ..Default::default()
            },
            Expect {
                grant_kept: false,
                status: Some((
                    ConnectionStatus::Disconnected,
                    AuthStatus::NotRequired,
                    StatusReason::AuthTypeChanged,
                )),
                headers_kept: true,
                client_kept: true,
            },
        ),
        (
            "disabling keeps the grant and says so",
            ServerChanges {
                enabled: Patch::Set(false),
                ..Default::default()
            },
            Expect {
                grant_kept: true,
                status: Some((
                    ConnectionStatus::Disconnected,
                    AuthStatus::Authorized,
                    StatusReason::Disabled,
                )),
                headers_kept: true,
                client_kept: true,
            },
        ),
    ];
    for (i, (rule, changes, expect)) in rows.into_iter().enumerate() {
        let id = authorized_oauth_server(&t, &format!("s{i}")).await;
        let row = update(&t, id, changes)
            .await
            .unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(has_grant(&t, id).await, expect.grant_kept, "{rule}: grant");
        if let Some((connection, auth, reason)) = expect.status {
            assert_eq!(
                (row.connection_status, row.auth_status, row.status_reason),
                (connection, auth, Some(reason)),
                "{rule}: status"
            );
        }
        assert_eq!(
            row.headers_sealed.is_some(),
            expect.headers_kept,
            "{rule}: headers"
        );
        assert_eq!(
            row.oauth_client_id.is_some() && row.oauth_client_secret_sealed.is_some(),
            expect.client_kept,
            "{rule}: client"
        );
        // What was returned is what is stored.
        let mut conn = t.app.db.conn().await.unwrap();
        let stored = db::servers::find(&mut conn, id).await.unwrap().unwrap();
        assert_eq!(stored, row, "{rule}: stored");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn required_fields_cannot_be_cleared_and_nothing_changes() {
    let t = TestApp::start().await;
    let id = authorized_oauth_server(&t, "kept").await;
    for (field, changes) in [
        (
            "name",
            ServerChanges {
                name: Patch::Clear,
                ..Default::default()
            },
        ),
        (
            "url",
            ServerChanges {
                url: Patch::Clear,
                ..Default::default()
            },
        ),
        (
            "authType",
            ServerChanges {
                auth_type: Patch::Clear,
                ..Default::default()
            },
        ),
        (
            "authType",
            ServerChanges {
                auth_type: Patch::Set(AuthType::Undetected),
                ..Default::default()
            },
        ),
    ] {
        match update(&t, id, changes).await {
            Err(Error::BadInput { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(has_grant(&t, id).await);
}

/// A flow the admin started on `server`, pending for ten more minutes.
pub(crate) async fn pending_flow(t: &TestApp, server: Uuid) {
    let now = db::now();
    let flow = FlowRow {
        id: DbUuid(Uuid::now_v7()),
        server_id: DbUuid(server),
        user_id: DbUuid(t.admin.user_id),
        state_hash: Uuid::new_v4().simple().to_string(),
        begin_hash: Uuid::new_v4().simple().to_string(),
        browser_binding_hash: None,
        code_verifier_sealed: "sealed".into(),
        authorization_url_sealed: "sealed".into(),
        redirect_uri: "http://127.0.0.1/oauth/callback".into(),
        resource: "http://127.0.0.1:9/mcp".into(),
        expected_issuer: None,
        requested_scopes: None,
        authorization_server: "{}".into(),
        registration_kind: RegistrationKind::Dynamic,
        client_information_sealed: None,
        created_at: DbTime(now),
        expires_at: DbTime(now + chrono::TimeDelta::minutes(10)),
    };
    let mut conn = t.app.db.conn().await.unwrap();
    db::oauth::insert_flow(&mut conn, &flow).await.unwrap();
}

/// A page of servers asks for pending flows only where the answer is needed: always for
/// servers without a grant (their OAuth state exists only through a flow), and for the others
/// only when the query selects `flowInProgress`. The OAuth state of a server is present or
/// absent the same way whatever is selected.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_loads_pending_flows_where_they_are_needed() {
    let t = TestApp::start().await;
    let both = authorized_oauth_server(&t, "both").await;
    pending_flow(&t, both).await;
    let grant_only = authorized_oauth_server(&t, "grant").await;
    let flow_only = Uuid::parse_str(
        &t.create_server(
            &t.admin,
            json!({ "name": "flow", "url": "http://127.0.0.1:9/flow", "authType": "OAUTH" }),
        )
        .await,
    )
    .unwrap();
    pending_flow(&t, flow_only).await;
    let neither = Uuid::parse_str(
        &t.create_server(
            &t.admin,
            json!({ "name": "none", "url": "http://127.0.0.1:9/none", "authType": "OAUTH" }),
        )
        .await,
    )
    .unwrap();
    let principal = principal(&t).await;
    // The grants read here, or read with the page: the same views either way.
    let page = servers::page(&t.app, &principal, t.admin.workspace_id, Some(100), None)
        .await
        .unwrap();
    let (with_grants, grants) =
        servers::page_with_grants(&t.app, &principal, t.admin.workspace_id, Some(100), None)
            .await
            .unwrap();
    assert_eq!(grants.len(), 2);
    let ids = |page: &switchboard::domain::pagination::Page<_>| -> Vec<Uuid> {
        page.items
            .iter()
            .map(|row: &switchboard::db::models::McpServerRow| row.id.0)
            .collect()
    };
    assert_eq!(ids(&page), ids(&with_grants));
    for (in_progress, read_with_page) in
        [(false, false), (true, false), (false, true), (true, true)]
    {
        let wanted = servers::Wanted {
            grants: true,
            flows_in_progress: in_progress,
            ..Default::default()
        };
        let given = read_with_page.then(|| grants.clone());
        let related = servers::related(&t.app, &page.items, wanted, given)
            .await
            .unwrap();
        let views = related.grants.unwrap();
        let flow = |id: &Uuid| views.get(id).map(|v| v.flow_in_progress);
        assert_eq!(flow(&flow_only), Some(true), "in_progress={in_progress}");
        assert_eq!(flow(&neither), None, "in_progress={in_progress}");
        assert_eq!(flow(&grant_only), Some(false), "in_progress={in_progress}");
        assert_eq!(
            flow(&both),
            Some(in_progress),
            "a grant's pending flow is read only when asked"
        );
    }
    // A page read as chosen columns learns of the same flows.
    let columns = {
        let mut columns = servers::Columns::default();
        columns.add(servers::Column::HasGrant);
        columns.add(servers::Column::GrantIssuer);
        columns
    };
    for flows in [
        servers::PendingFlows::None,
        servers::PendingFlows::WithoutGrant,
        servers::PendingFlows::All,
    ] {
        let projected = servers::projected_page(
            &t.app,
            &principal,
            t.admin.workspace_id,
            Some(100),
            None,
            servers::Projection {
                columns,
                flows,
                own_flows: false,
            },
        )
        .await
        .unwrap();
        let ids: Vec<Uuid> = projected.page.items.iter().map(|row| row.id).collect();
        assert_eq!(
            ids,
            page.items.iter().map(|row| row.id.0).collect::<Vec<_>>()
        );
        // The same views as `related` gives, where the flows were asked for.
        let view = |id: Uuid| {
            let row = projected
                .page
                .items
                .iter()
                .find(|row| row.id == id)
                .unwrap();
            projected.oauth_view(row)
        };
        let asked = flows != servers::PendingFlows::None;
        assert_eq!(view(flow_only), asked.then_some(true), "{flows:?}");
        assert_eq!(view(neither), None, "{flows:?}");
        assert_eq!(view(grant_only), Some(false), "{flows:?}");
        assert_eq!(
            view(both),
            Some(flows == servers::PendingFlows::All),
            "{flows:?}"
        );
        for row in &projected.page.items {
            let has_grant = row.id == both || row.id == grant_only;
            let issuer = if has_grant {
                servers::Cell::Text("https://as.example".into())
            } else {
                servers::Cell::Null
            };
            assert_eq!(row.cells, [servers::Cell::Bool(has_grant), issuer]);
        }
    }
    // Through the API: the same OAuth states whichever way the page is read (a fragment with
    // a directive sends it through each field's resolver).
    let w = json!({ "w": t.admin.workspace_id.to_string() });
    for oauth in [
        "oauth { expiresAt }",
        "oauth { __typename flowInProgress issuer }",
    ] {
        let query = |node: &str| {
            format!(
                "query($w: ID!) {{ workspace(id: $w) {{ mcpServers(first: 10) {{ \
                 edges {{ node {{ {node} }} }} }} }} }}"
            )
        };
        let plain = t
            .ok(&t.admin, &query(&format!("id {oauth}")), w.clone())
            .await;
        let resolved = t
            .ok(
                &t.admin,
                &query(&format!(
                    "... on McpServer @include(if: true) {{ id {oauth} }}"
                )),
                w.clone(),
            )
            .await;
        assert_eq!(plain, resolved, "{oauth}");
        let nodes: Vec<&serde_json::Value> = plain["workspace"]["mcpServers"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| &edge["node"])
            .collect();
        let of = |id: Uuid| {
            nodes
                .iter()
                .find(|node| node["id"] == id.to_string())
                .map(|node| node["oauth"].clone())
                .unwrap()
        };
        assert!(of(neither).is_null(), "{oauth}");
        assert!(of(flow_only).is_object(), "{oauth}");
        assert!(of(grant_only).is_object(), "{oauth}");
        if oauth.contains("flowInProgress") {
            assert_eq!(of(both)["flowInProgress"], true);
            assert_eq!(of(flow_only)["flowInProgress"], true);
            assert_eq!(of(grant_only)["flowInProgress"], false);
        }
    }
}
