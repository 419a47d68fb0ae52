-- Pending authorizations live apart from the grant: a flow never touches the grant until its
-- code exchange succeeds. Each user has at most one pending flow per server. Flows pending
-- under the old layout are not carried over: they expire within ten minutes anyway.
CREATE TABLE mcp_oauth_flows (
    id BLOB PRIMARY KEY,
    server_id BLOB NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state_hash TEXT NOT NULL UNIQUE,
    begin_hash TEXT NOT NULL UNIQUE,
    browser_binding_hash TEXT,
    code_verifier_sealed TEXT NOT NULL,
    authorization_url_sealed TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    resource TEXT NOT NULL,
    expected_issuer TEXT,
    requested_scopes TEXT,
    authorization_server TEXT NOT NULL,
    registration_kind TEXT NOT NULL CHECK (registration_kind IN ('pre_registered', 'metadata_document', 'dynamic')),
    client_information_sealed TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    UNIQUE (server_id, user_id)
);
CREATE INDEX mcp_oauth_flows_expiry_idx ON mcp_oauth_flows (expires_at);

-- The grant keeps only what a completed authorization produced, plus the refresh lease that
-- lets one replica refresh at a time without holding a database connection.
CREATE TABLE mcp_server_oauth_next (
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
    requested_scopes TEXT,
    authorization_server TEXT,
    refresh_lease_owner TEXT,
    refresh_lease_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO mcp_server_oauth_next (
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
ALTER TABLE mcp_server_oauth_next RENAME TO mcp_server_oauth;
CREATE INDEX mcp_server_oauth_expiry_idx ON mcp_server_oauth (access_expires_at);

-- The authorization server a pre-registered client was first used with; it is never sent to
-- another one.
ALTER TABLE mcp_servers ADD COLUMN oauth_client_issuer TEXT;
UPDATE mcp_servers SET oauth_client_issuer = (
    SELECT issuer FROM mcp_server_oauth
    WHERE mcp_server_oauth.server_id = mcp_servers.id
      AND mcp_server_oauth.registration_kind = 'pre_registered'
);
