ALTER TABLE mcp_servers DROP COLUMN oauth_client_issuer;

CREATE TABLE mcp_server_oauth_prev (
    server_id BLOB PRIMARY KEY REFERENCES mcp_servers (id) ON DELETE CASCADE,
    issuer TEXT,
    resource TEXT,
    registration_kind TEXT,
    client_information_sealed TEXT,
    tokens_sealed TEXT,
    access_expires_at TEXT,
    granted_scopes TEXT,
    token_generation BIGINT NOT NULL,
    last_refreshed_at TEXT,
    authorized_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    state_hash TEXT,
    state_created_at TEXT,
    code_verifier_sealed TEXT,
    flow_user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    browser_binding_hash TEXT,
    expected_issuer TEXT,
    requested_scopes TEXT,
    redirect_uri TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    flow_id_hash TEXT,
    authorization_url_sealed TEXT,
    authorization_server TEXT
);
INSERT INTO mcp_server_oauth_prev (
    server_id, issuer, resource, registration_kind, client_information_sealed, tokens_sealed,
    access_expires_at, granted_scopes, token_generation, last_refreshed_at, authorized_by,
    requested_scopes, authorization_server, created_at, updated_at
)
SELECT
    server_id, issuer, resource, registration_kind, client_information_sealed, tokens_sealed,
    access_expires_at, granted_scopes, token_generation, last_refreshed_at, authorized_by,
    requested_scopes, authorization_server, created_at, updated_at
FROM mcp_server_oauth;
DROP TABLE mcp_server_oauth;
ALTER TABLE mcp_server_oauth_prev RENAME TO mcp_server_oauth;
CREATE INDEX mcp_server_oauth_state_idx ON mcp_server_oauth (state_hash);
CREATE INDEX mcp_server_oauth_flow_idx ON mcp_server_oauth (flow_id_hash);

DROP TABLE mcp_oauth_flows;
