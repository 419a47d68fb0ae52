ALTER TABLE mcp_servers DROP COLUMN credential_mode;
