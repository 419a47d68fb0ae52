-- Whose credentials a server is reached with: the workspace's one shared grant, or each
-- member's own.
ALTER TABLE mcp_servers ADD COLUMN credential_mode TEXT NOT NULL DEFAULT 'shared'
    CHECK (credential_mode IN ('shared', 'per_user'));
