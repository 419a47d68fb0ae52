ALTER TABLE mcp_servers DROP COLUMN oauth_client_key_sealed;
ALTER TABLE mcp_servers DROP COLUMN credential_mode;
