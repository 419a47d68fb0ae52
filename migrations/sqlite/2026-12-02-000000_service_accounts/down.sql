DROP INDEX users_scope_idx;
ALTER TABLE users DROP COLUMN deleted_at;
ALTER TABLE users DROP COLUMN scope_workspace_id;
ALTER TABLE users DROP COLUMN operator;
ALTER TABLE users DROP COLUMN kind;
