ALTER TABLE mcp_servers DROP COLUMN oauth_client_issuer;

DROP INDEX mcp_server_oauth_expiry_idx;
ALTER TABLE mcp_server_oauth
    DROP COLUMN refresh_lease_owner,
    DROP COLUMN refresh_lease_until,
    ADD COLUMN state_hash TEXT,
    ADD COLUMN state_created_at TIMESTAMPTZ,
    ADD COLUMN code_verifier_sealed TEXT,
    ADD COLUMN flow_user_id UUID REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN browser_binding_hash TEXT,
    ADD COLUMN expected_issuer TEXT,
    ADD COLUMN redirect_uri TEXT,
    ADD COLUMN flow_id_hash TEXT,
    ADD COLUMN authorization_url_sealed TEXT;
CREATE INDEX mcp_server_oauth_state_idx ON mcp_server_oauth (state_hash);
CREATE INDEX mcp_server_oauth_flow_idx ON mcp_server_oauth (flow_id_hash);

DROP TABLE mcp_oauth_flows;
