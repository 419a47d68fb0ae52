-- On a per-user server the catalogue is the server's, whoever listed it, unless a member's own
-- listing differs: that member's catalogue is kept here, and they see it instead.
CREATE TABLE mcp_user_catalogues (
    server_id UUID NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tool_count INTEGER NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
CREATE TABLE mcp_user_tools (
    server_id UUID NOT NULL,
    user_id UUID NOT NULL,
    name TEXT NOT NULL,
    title TEXT,
    description TEXT,
    input_schema TEXT NOT NULL,
    annotations TEXT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (server_id, user_id, name),
    FOREIGN KEY (server_id, user_id) REFERENCES mcp_user_catalogues (server_id, user_id) ON DELETE CASCADE
);
-- Who listed a per-user server's catalogue (their later listings update it); null when it was
-- listed with the workspace's credentials.
ALTER TABLE mcp_servers ADD COLUMN tools_listed_by UUID REFERENCES users (id) ON DELETE SET NULL;
