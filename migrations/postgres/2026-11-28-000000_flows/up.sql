-- Pending authorizations live apart from the grant: a flow never touches the grant until its
-- code exchange succeeds. Each user has at most one pending flow per server. Flows pending
-- under the old layout are not carried over: they expire within ten minutes anyway.
CREATE TABLE mcp_oauth_flows (
    id UUID PRIMARY KEY,
    server_id UUID NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    UNIQUE (server_id, user_id)
);
CREATE INDEX mcp_oauth_flows_expiry_idx ON mcp_oauth_flows (expires_at);

-- The grant keeps only what a completed authorization produced, plus the refresh lease that
-- lets one replica refresh at a time without holding a database connection.
DROP INDEX mcp_server_oauth_state_idx;
DROP INDEX mcp_server_oauth_flow_idx;
ALTER TABLE mcp_server_oauth
    DROP COLUMN state_hash,
    DROP COLUMN state_created_at,
    DROP COLUMN code_verifier_sealed,
    DROP COLUMN flow_user_id,
    DROP COLUMN browser_binding_hash,
    DROP COLUMN expected_issuer,
    DROP COLUMN redirect_uri,
    DROP COLUMN flow_id_hash,
    DROP COLUMN authorization_url_sealed,
    ADD COLUMN refresh_lease_owner TEXT,
    ADD COLUMN refresh_lease_until TIMESTAMPTZ;
CREATE INDEX mcp_server_oauth_expiry_idx ON mcp_server_oauth (access_expires_at);

-- The authorization server a pre-registered client was first used with; it is never sent to
-- another one.
ALTER TABLE mcp_servers ADD COLUMN oauth_client_issuer TEXT;
UPDATE mcp_servers SET oauth_client_issuer = (
    SELECT issuer FROM mcp_server_oauth
    WHERE mcp_server_oauth.server_id = mcp_servers.id
      AND mcp_server_oauth.registration_kind = 'pre_registered'
);
