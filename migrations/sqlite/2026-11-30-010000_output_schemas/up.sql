-- JSON Schema of a tool's structured result, as listed (null when the tool declares none).
ALTER TABLE mcp_tools ADD COLUMN output_schema TEXT;
ALTER TABLE mcp_user_tools ADD COLUMN output_schema TEXT;
