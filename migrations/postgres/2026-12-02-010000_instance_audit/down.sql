DELETE FROM audit_events WHERE workspace_id IS NULL;
ALTER TABLE audit_events ALTER COLUMN workspace_id SET NOT NULL;
