DROP TABLE audit_events;
DROP TABLE mcp_tools;
DROP TABLE mcp_server_oauth;
DROP TABLE mcp_servers;
DROP TABLE api_tokens;
DROP TABLE workspace_members;
DROP TABLE users;
DROP TABLE workspaces;
