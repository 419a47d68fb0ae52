-- Service accounts and instance operators. `kind` tells people from service accounts;
-- `operator` is the instance-wide privilege (onboarding in every workspace); a service account
-- scoped to one workspace names it in `scope_workspace_id` (null for instance-wide ones and for
-- people). A deleted service account keeps its row (audit events name it) with `deleted_at` set.
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'human'
    CHECK (kind IN ('human', 'service_account'));
ALTER TABLE users ADD COLUMN operator BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN scope_workspace_id UUID;
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMPTZ;
CREATE INDEX users_scope_idx ON users (scope_workspace_id);
