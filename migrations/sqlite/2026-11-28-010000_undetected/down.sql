-- SQLite cannot change a CHECK constraint in place: the table is rebuilt, the documented
-- way (foreign keys off, so the rows of the tables that reference it stay), in one transaction.
PRAGMA foreign_keys = OFF;
BEGIN;
UPDATE mcp_servers SET auth_type = 'headers' WHERE auth_type = 'undetected';
CREATE TABLE mcp_servers_next (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    created_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    description TEXT,
    url TEXT NOT NULL,
    normalized_url TEXT NOT NULL,
    transport TEXT NOT NULL CHECK (transport IN ('streamable_http', 'sse')),
    enabled BOOLEAN NOT NULL,
    timeout_ms INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    auth_type TEXT NOT NULL CHECK (auth_type IN ('none', 'headers', 'oauth')),
    header_names TEXT NOT NULL,
    headers_sealed TEXT,
    oauth_client_id TEXT,
    oauth_client_secret_sealed TEXT,
    connection_status TEXT NOT NULL,
    auth_status TEXT NOT NULL,
    status_reason TEXT,
    last_error TEXT,
    last_connected_at TEXT,
    consecutive_failures INTEGER NOT NULL,
    tool_count INTEGER NOT NULL,
    tools_refreshed_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    oauth_lenient_pkce BOOLEAN NOT NULL DEFAULT FALSE,
    health_checked_at TEXT,
    oauth_client_issuer TEXT,
    UNIQUE (workspace_id, normalized_url)
);
INSERT INTO mcp_servers_next (
    id, workspace_id, created_by, name, description, url, normalized_url, transport, enabled,
    timeout_ms, retries, auth_type, header_names, headers_sealed, oauth_client_id,
    oauth_client_secret_sealed, connection_status, auth_status, status_reason, last_error,
    last_connected_at, consecutive_failures, tool_count, tools_refreshed_at, created_at,
    updated_at, oauth_lenient_pkce, health_checked_at, oauth_client_issuer
)
SELECT
    id, workspace_id, created_by, name, description, url, normalized_url, transport, enabled,
    timeout_ms, retries, auth_type, header_names, headers_sealed, oauth_client_id,
    oauth_client_secret_sealed, connection_status, auth_status, status_reason, last_error,
    last_connected_at, consecutive_failures, tool_count, tools_refreshed_at, created_at,
    updated_at, oauth_lenient_pkce, health_checked_at, oauth_client_issuer
FROM mcp_servers;
DROP TABLE mcp_servers;
ALTER TABLE mcp_servers_next RENAME TO mcp_servers;
CREATE INDEX mcp_servers_workspace_idx ON mcp_servers (workspace_id, id);
CREATE INDEX mcp_servers_health_idx ON mcp_servers (health_checked_at);
COMMIT;
PRAGMA foreign_keys = ON;
