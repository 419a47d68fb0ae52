DROP INDEX mcp_servers_health_idx;
ALTER TABLE mcp_servers DROP COLUMN health_checked_at;
