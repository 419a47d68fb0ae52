DROP INDEX mcp_server_oauth_flow_idx;
ALTER TABLE mcp_server_oauth DROP COLUMN authorization_server;
ALTER TABLE mcp_server_oauth DROP COLUMN authorization_url_sealed;
ALTER TABLE mcp_server_oauth DROP COLUMN flow_id_hash;
ALTER TABLE mcp_servers DROP COLUMN oauth_lenient_pkce;
