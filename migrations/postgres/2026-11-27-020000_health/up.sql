-- When a replica last claimed the server for a health check (the lease).
ALTER TABLE mcp_servers ADD COLUMN health_checked_at TIMESTAMPTZ;
CREATE INDEX mcp_servers_health_idx ON mcp_servers (health_checked_at);
