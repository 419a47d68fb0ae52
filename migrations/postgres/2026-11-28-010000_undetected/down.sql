UPDATE mcp_servers SET auth_type = 'headers' WHERE auth_type = 'undetected';
ALTER TABLE mcp_servers DROP CONSTRAINT mcp_servers_auth_type_check;
ALTER TABLE mcp_servers ADD CONSTRAINT mcp_servers_auth_type_check
    CHECK (auth_type IN ('none', 'headers', 'oauth'));
