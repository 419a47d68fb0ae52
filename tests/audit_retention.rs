//! The audit retention: the purge deletes events older than the retention, in batches, keeps
//! the recent ones, and keeps everything when the retention is 0.

use chrono::TimeDelta;
use switchboard::db::models::AuditEventRow;
use switchboard::db::{self, DbTime, DbUuid};
use switchboard::domain::audit;
use uuid::Uuid;

use crate::support::TestApp;

/// An event recorded `age` ago, with the id it would have been given then.
fn event(workspace_id: Uuid, actor: Uuid, age: TimeDelta, action: &str) -> AuditEventRow {
    let at = db::now() - age;
    let millis = u64::try_from(at.timestamp_millis()).unwrap();
    let random: [u8; 10] = rand_bytes();
    AuditEventRow {
        id: DbUuid(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()),
        workspace_id: Some(DbUuid(workspace_id)),
        actor_user_id: Some(DbUuid(actor)),
        action: action.to_owned(),
        target_id: None,
        details: "{}".to_owned(),
        at: DbTime(at),
    }
}

fn rand_bytes() -> [u8; 10] {
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&Uuid::new_v4().as_bytes()[..10]);
    bytes
}

async fn actions(t: &TestApp) -> Vec<String> {
    let mut conn = t.app.db.conn().await.unwrap();
    db::audit::page(&mut conn, Some(t.admin.workspace_id), None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.action)
        .collect()
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_deletes_old_events_in_batches_and_keeps_recent_ones() {
    let t = TestApp::start().await;
    let (workspace, actor) = (t.admin.workspace_id, t.admin.user_id);
    let before_test = actions(&t).await.len();

    // More old events than one batch holds, so the purge has to come back for the rest.
    let mut old: Vec<AuditEventRow> = (0..1003)
        .map(|i| event(workspace, actor, days(400) + TimeDelta::minutes(i), "old"))
        .collect();
    old.push(event(
        workspace,
        actor,
        days(365) + TimeDelta::hours(1),
        "old",
    ));
    let recent = [
        event(workspace, actor, days(365) - TimeDelta::hours(1), "recent"),
        event(workspace, actor, days(10), "recent"),
        event(workspace, actor, TimeDelta::zero(), "recent"),
    ];
    // An id minted long ago on an event recorded recently is still kept: the recorded time
    // decides.
    let mut odd = event(workspace, actor, TimeDelta::zero(), "recent");
    odd.id = event(workspace, actor, days(500), "old").id;
    {
        let mut conn = t.app.db.conn().await.unwrap();
        conn.begin().await.unwrap();
        for row in old.iter().chain(&recent).chain([&odd]) {
            db::audit::insert(&mut conn, row).await.unwrap();
        }
        conn.commit().await.unwrap();
    }
    let total = before_test + old.len() + recent.len() + 1;
    assert_eq!(actions(&t).await.len(), total);

    // A retention of 0 keeps everything.
    assert_eq!(audit::run_once(&t.app, 0).await.unwrap(), 0);
    assert_eq!(actions(&t).await.len(), total);

    // One statement deletes at most one batch, oldest first.
    let cutoff = audit::retention_cutoff(db::now(), 365).unwrap();
    let mut conn = t.app.db.conn().await.unwrap();
    assert_eq!(
        db::audit::delete_recorded_before(&mut conn, cutoff, 3)
            .await
            .unwrap(),
        3
    );
    drop(conn);
    assert_eq!(actions(&t).await.len(), total - 3);

    assert_eq!(
        audit::run_once(&t.app, 365).await.unwrap(),
        old.len() - 3,
        "every event older than the retention, across batches"
    );
    let left = actions(&t).await;
    assert_eq!(left.len(), before_test + recent.len() + 1, "{left:?}");
    assert!(left.iter().all(|action| action != "old"), "{left:?}");
    assert_eq!(left.iter().filter(|action| *action == "recent").count(), 4);

    // Nothing more to do.
    assert_eq!(audit::run_once(&t.app, 365).await.unwrap(), 0);
    // A shorter retention reaches further: the events of 364 and 10 days ago go.
    assert_eq!(audit::run_once(&t.app, 9).await.unwrap(), 2);
    assert_eq!(actions(&t).await.len(), before_test + 2);
}
