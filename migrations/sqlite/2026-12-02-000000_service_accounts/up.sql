-- Service accounts and instance operators. `kind` tells people from service accounts;
-- `operator` is the instance-wide privilege (onboarding in every workspace); a service account
-- scoped to one workspace names it in `scope_workspace_id` (null for instance-wide ones and for
-- people). A deleted service account keeps its row (audit events name it) with `deleted_at` set.
-- (No CHECK on `kind`: SQLite could not drop the column again; reads refuse unknown kinds.)
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'human';
ALTER TABLE users ADD COLUMN operator BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN scope_workspace_id BLOB;
ALTER TABLE users ADD COLUMN deleted_at TEXT;
CREATE INDEX users_scope_idx ON users (scope_workspace_id);
