-- Events of the instance itself (users created by onboarding, instance-wide service accounts,
-- operator grants) belong to no workspace. SQLite cannot drop a NOT NULL: the table is rebuilt
-- (nothing refers to it).
CREATE TABLE audit_events_new (
    id BLOB PRIMARY KEY,
    workspace_id BLOB REFERENCES workspaces (id) ON DELETE CASCADE,
    actor_user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    action TEXT NOT NULL,
    target_id BLOB,
    details TEXT NOT NULL,
    at TEXT NOT NULL
);
INSERT INTO audit_events_new (id, workspace_id, actor_user_id, action, target_id, details, at)
    SELECT id, workspace_id, actor_user_id, action, target_id, details, at FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, id);
