ALTER TABLE mcp_servers DROP COLUMN protocol_version;
