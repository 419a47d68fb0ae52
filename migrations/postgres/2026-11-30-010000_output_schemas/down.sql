ALTER TABLE mcp_user_tools DROP COLUMN output_schema;
ALTER TABLE mcp_tools DROP COLUMN output_schema;
