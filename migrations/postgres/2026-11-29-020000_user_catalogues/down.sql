ALTER TABLE mcp_servers DROP COLUMN tools_listed_by;
DROP TABLE mcp_user_tools;
DROP TABLE mcp_user_catalogues;
