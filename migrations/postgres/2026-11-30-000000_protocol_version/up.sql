-- The MCP protocol revision last negotiated with the server (`2026-07-28`, `2025-11-25`, …):
-- which era to speak first next time. Null until the server was first reached.
ALTER TABLE mcp_servers ADD COLUMN protocol_version TEXT;
