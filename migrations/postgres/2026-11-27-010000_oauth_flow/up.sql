-- Per-server switch for authorization servers that omit code_challenge_methods_supported.
ALTER TABLE mcp_servers ADD COLUMN oauth_lenient_pkce BOOLEAN NOT NULL DEFAULT FALSE;
-- The pending flow's begin link (hashed) and sealed authorization URL.
ALTER TABLE mcp_server_oauth ADD COLUMN flow_id_hash TEXT;
ALTER TABLE mcp_server_oauth ADD COLUMN authorization_url_sealed TEXT;
-- The authorization server's endpoints as discovered, for refresh and revocation.
ALTER TABLE mcp_server_oauth ADD COLUMN authorization_server TEXT;
CREATE INDEX mcp_server_oauth_flow_idx ON mcp_server_oauth (flow_id_hash);
