-- Events of the instance itself (users created by onboarding, instance-wide service accounts,
-- operator grants) belong to no workspace.
ALTER TABLE audit_events ALTER COLUMN workspace_id DROP NOT NULL;
