-- Until when the server said its tool catalogue stays fresh (the `ttlMs` of its listing);
-- null when it gave no such promise. Health checks list the tools again only after it.
ALTER TABLE mcp_servers ADD COLUMN tools_fresh_until TIMESTAMPTZ;
