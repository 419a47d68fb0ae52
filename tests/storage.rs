//! Storage on the configured backend: migrations up and down, secrets sealed per row, key
//! rotation re-sealing every row.

use crate::support::{Options, TestApp, test_config, test_database};
use serde_json::json;
use switchboard::App;
use switchboard::crypto::{KeyRing, SealContext};
use switchboard::db::{self, migrations};
use switchboard::domain::{admin, servers};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_revert_and_reapply() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(test_database(dir.path()).await, &Options::default());
    let app = App::build(config, KeyRing::generate()).await.unwrap();
    assert!(!app.db.migrate().await.unwrap().is_empty());
    assert!(
        app.db.migrate().await.unwrap().is_empty(),
        "nothing pending the second time"
    );
    migrations::revert_all(&app.db).await.unwrap();
    assert!(!app.db.migrate().await.unwrap().is_empty());
    app.db.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_migrations_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(test_database(dir.path()).await, &Options::default());
    let first = App::build(config.clone(), KeyRing::generate())
        .await
        .unwrap();
    let second = App::build(config, KeyRing::generate()).await.unwrap();
    let (a, b) = tokio::join!(first.db.migrate(), second.db.migrate());
    let applied = a.unwrap().len() + b.unwrap().len();
    assert_eq!(
        applied,
        migrations::embedded_count(&first.db),
        "each migration is applied exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_values_are_bound_to_their_row_and_survive_rotation() {
    let t = TestApp::start().await;
    let a = &t.admin;
    let first = t
        .create_server(a, json!({ "name": "one", "url": "http://127.0.0.1:9/1", "headers": [{ "name": "X-K", "value": "v1" }],
                                  "oauthClientId": "c", "oauthClientSecret": "s1" }))
        .await;
    let second = t.create_server(a, json!({ "name": "two", "url": "http://127.0.0.1:9/2", "headers": [{ "name": "X-K", "value": "v2" }] })).await;
    let (first, second) = (
        Uuid::parse_str(&first).unwrap(),
        Uuid::parse_str(&second).unwrap(),
    );

    let mut conn = t.app.db.conn().await.unwrap();
    let row1 = db::servers::find(&mut conn, first).await.unwrap().unwrap();
    let mut row2 = db::servers::find(&mut conn, second).await.unwrap().unwrap();
    let opened = servers::open_headers(&t.app, &row1).unwrap();
    assert_eq!(opened[0].0, "X-K");
    assert_eq!(opened[0].1.expose(), "v1");

    // Copying a sealed value into another row must not make it readable there.
    row2.headers_sealed = row1.headers_sealed.clone();
    db::servers::save(&mut conn, &row2).await.unwrap();
    let copied = db::servers::find(&mut conn, second).await.unwrap().unwrap();
    assert!(servers::open_headers(&t.app, &copied).is_err());
    // Nor into another column of the same row.
    let row1_id = row1.id.0.to_string();
    let ctx = SealContext::new("mcp_servers", "oauth_client_secret_sealed", &row1_id);
    assert!(
        t.app
            .keys
            .open_str(row1.headers_sealed.as_deref().unwrap(), ctx)
            .is_err()
    );
    assert_eq!(
        t.app
            .keys
            .open_str(row1.oauth_client_secret_sealed.as_deref().unwrap(), ctx)
            .unwrap()
            .expose(),
        "s1"
    );
    drop(conn);

    // Rotate: a ring with a new primary re-seals every row; afterwards the new key alone opens them.
    let rotated = t.app.keys.with_new_primary();
    let new_kid = rotated.primary_kid().to_owned();
    let rotated_app = App::build(t.app.config.clone(), rotated.clone())
        .await
        .unwrap();
    let report = admin::reseal_all(&rotated_app).await.unwrap();
    assert_eq!(
        report.resealed, 2,
        "server one's headers and secret: {report:?}"
    );
    assert_eq!(
        report.unreadable, 1,
        "the copied value opens nowhere: {report:?}"
    );

    let only_new = KeyRing::parse(
        rotated
            .to_spec()
            .expose()
            .lines()
            .find(|l| l.starts_with(&new_kid))
            .unwrap(),
    )
    .unwrap();
    let new_only_app = App::build(t.app.config.clone(), only_new).await.unwrap();
    let mut conn = new_only_app.db.conn().await.unwrap();
    let row1 = db::servers::find(&mut conn, first).await.unwrap().unwrap();
    assert!(
        row1.headers_sealed
            .as_deref()
            .unwrap()
            .starts_with(&format!("{new_kid}:"))
    );
    assert_eq!(
        servers::open_headers(&new_only_app, &row1).unwrap()[0]
            .1
            .expose(),
        "v1"
    );
}

/// `sslmode=require` must really ask for TLS: against a server without TLS the connection
/// fails instead of silently falling back to plaintext.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_sslmode_require_is_honoured() {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_DATABASE_URL") else {
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let target =
        switchboard::db::DatabaseTarget::Postgres(format!("{url}{separator}sslmode=require"));
    let db = switchboard::db::Db::connect(&target, &Default::default())
        .await
        .unwrap();
    let error = db.ping().await.expect_err("the test server has no TLS");
    assert!(
        error.to_string().to_lowercase().contains("tls")
            || error.to_string().to_lowercase().contains("ssl"),
        "{error}"
    );

    let plain =
        switchboard::db::DatabaseTarget::Postgres(format!("{url}{separator}sslmode=disable"));
    switchboard::db::Db::connect(&plain, &Default::default())
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
}

/// After `rotate-key`, every sealed value of every registered column opens with the new key
/// alone: server secrets, grants (registration and tokens) and pending flows (verifier,
/// authorization URL, registration).
#[tokio::test(flavor = "multi_thread")]
async fn rotation_reseals_every_registered_column() {
    use crate::support::fake_as::{AsConfig, FakeAuthServer};
    use crate::support::fake_mcp::{FakeMcpServer, McpAuth, McpConfig};
    use switchboard::db::sealed;

    let t = TestApp::start().await;
    let auth = FakeAuthServer::start(AsConfig::default()).await;
    let mcp = FakeMcpServer::start(McpConfig {
        auth: McpAuth::oauth(&auth),
        ..McpConfig::default()
    })
    .await;
    t.create_server(
        &t.admin,
        json!({ "name": "secrets", "url": "http://127.0.0.1:9/s", "authType": "OAUTH",
                "headers": [{ "name": "X-K", "value": "v" }],
                "oauthClientId": "c", "oauthClientSecret": "s" }),
    )
    .await;
    let key = switchboard_testkit::jws::generate_es256_key();
    t.create_server(
        &t.admin,
        json!({ "name": "machine", "url": "http://127.0.0.1:9/k", "authType": "OAUTH",
                "credentials": "CLIENT_CREDENTIALS", "oauthClientId": "m",
                "oauthClientKey": key.private_pem }),
    )
    .await;
    let granted = t
        .create_server(&t.admin, json!({ "name": "granted", "url": mcp.url() }))
        .await;
    assert_eq!(t.authorize_in_browser(&t.admin, &granted).await.status, 200);
    let pending = t
        .create_server(
            &t.admin,
            json!({ "name": "pending", "url": format!("{}?pending", mcp.url()) }),
        )
        .await;
    t.ok(
        &t.admin,
        crate::support::START_OAUTH,
        json!({ "id": pending }),
    )
    .await;

    let mut conn = t.app.db.conn().await.unwrap();
    for column in sealed::ALL {
        let cells = sealed::batch(&mut conn, column, None, 100).await.unwrap();
        assert!(!cells.is_empty(), "{column:?} holds a value to rotate");
    }
    drop(conn);

    let rotated = t.app.keys.with_new_primary();
    let new_kid = rotated.primary_kid().to_owned();
    let rotated_app = App::build(t.app.config.clone(), rotated.clone())
        .await
        .unwrap();
    let report = admin::reseal_all(&rotated_app).await.unwrap();
    assert_eq!(report.unreadable, 0, "{report:?}");
    assert!(report.resealed >= sealed::ALL.len(), "{report:?}");

    let only_new = KeyRing::parse(
        rotated
            .to_spec()
            .expose()
            .lines()
            .find(|l| l.starts_with(&new_kid))
            .unwrap(),
    )
    .unwrap();
    let mut conn = t.app.db.conn().await.unwrap();
    for column in sealed::ALL {
        for cell in sealed::batch(&mut conn, column, None, 100).await.unwrap() {
            let row = cell.id.0.to_string();
            assert!(
                only_new.open_str(&cell.value, column.context(&row)).is_ok(),
                "{column:?} of {row} opens with the new key alone"
            );
        }
    }
    // Running a rotation again finds nothing left to do.
    let again = admin::reseal_all(&rotated_app).await.unwrap();
    assert_eq!(again.resealed, 0, "{again:?}");
}
