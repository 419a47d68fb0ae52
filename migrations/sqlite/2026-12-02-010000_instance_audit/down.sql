CREATE TABLE audit_events_old (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    actor_user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    action TEXT NOT NULL,
    target_id BLOB,
    details TEXT NOT NULL,
    at TEXT NOT NULL
);
INSERT INTO audit_events_old (id, workspace_id, actor_user_id, action, target_id, details, at)
    SELECT id, workspace_id, actor_user_id, action, target_id, details, at FROM audit_events
    WHERE workspace_id IS NOT NULL;
DROP TABLE audit_events;
ALTER TABLE audit_events_old RENAME TO audit_events;
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, id);
