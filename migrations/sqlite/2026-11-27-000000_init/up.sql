CREATE TABLE workspaces (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE users (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE workspace_members (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user_idx ON workspace_members (user_id);

CREATE TABLE api_tokens (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE mcp_servers (
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
    UNIQUE (workspace_id, normalized_url)
);
CREATE INDEX mcp_servers_workspace_idx ON mcp_servers (workspace_id, id);

CREATE TABLE mcp_server_oauth (
    server_id BLOB PRIMARY KEY REFERENCES mcp_servers (id) ON DELETE CASCADE,
    issuer TEXT,
    resource TEXT,
    registration_kind TEXT,
    client_information_sealed TEXT,
    tokens_sealed TEXT,
    access_expires_at TEXT,
    granted_scopes TEXT,
    token_generation BIGINT NOT NULL,
    last_refreshed_at TEXT,
    authorized_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    state_hash TEXT,
    state_created_at TEXT,
    code_verifier_sealed TEXT,
    flow_user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    browser_binding_hash TEXT,
    expected_issuer TEXT,
    requested_scopes TEXT,
    redirect_uri TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX mcp_server_oauth_state_idx ON mcp_server_oauth (state_hash);

CREATE TABLE mcp_tools (
    server_id BLOB NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    title TEXT,
    description TEXT,
    input_schema TEXT NOT NULL,
    annotations TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (server_id, name)
);

CREATE TABLE audit_events (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    actor_user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    action TEXT NOT NULL,
    target_id BLOB,
    details TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, id);
