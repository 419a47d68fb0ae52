-- A client registration, a grant and a pending flow are three things: a registration is made
-- once per server and authorization server and serves every grant of that server; a grant
-- belongs either to the workspace (shared) or to one user.
--
-- Existing rows keep their ids (a shared grant's id and its registration's id are the server's
-- id), so the values sealed under the earlier layout still open.
CREATE TABLE mcp_oauth_registrations (
    id UUID PRIMARY KEY,
    server_id UUID NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pre_registered', 'metadata_document', 'dynamic', 'client_credentials')),
    client_information_sealed TEXT,
    token_endpoint_auth_method TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (server_id, issuer)
);

CREATE TABLE mcp_oauth_grants (
    id UUID PRIMARY KEY,
    server_id UUID NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    user_id UUID REFERENCES users (id) ON DELETE CASCADE,
    issuer TEXT,
    resource TEXT,
    registration_kind TEXT CHECK (registration_kind IN ('pre_registered', 'metadata_document', 'dynamic', 'client_credentials')),
    tokens_sealed TEXT,
    access_expires_at TIMESTAMPTZ,
    granted_scopes TEXT,
    token_generation BIGINT NOT NULL,
    last_refreshed_at TIMESTAMPTZ,
    authorized_by UUID REFERENCES users (id) ON DELETE SET NULL,
    requested_scopes TEXT,
    authorization_server TEXT,
    refresh_lease_owner TEXT,
    refresh_lease_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
-- One shared grant per server, and one grant per server and user.
CREATE UNIQUE INDEX mcp_oauth_grants_shared_idx ON mcp_oauth_grants (server_id) WHERE user_id IS NULL;
CREATE UNIQUE INDEX mcp_oauth_grants_user_idx ON mcp_oauth_grants (server_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX mcp_oauth_grants_holder_idx ON mcp_oauth_grants (user_id);
CREATE INDEX mcp_oauth_grants_expiry_idx ON mcp_oauth_grants (access_expires_at);

INSERT INTO mcp_oauth_registrations (
    id, server_id, issuer, kind, client_information_sealed, created_at, updated_at
)
SELECT server_id, server_id, issuer, registration_kind, client_information_sealed, created_at, updated_at
FROM mcp_server_oauth
WHERE issuer IS NOT NULL AND registration_kind IS NOT NULL;

INSERT INTO mcp_oauth_grants (
    id, server_id, user_id, issuer, resource, registration_kind, tokens_sealed, access_expires_at,
    granted_scopes, token_generation, last_refreshed_at, authorized_by, requested_scopes,
    authorization_server, refresh_lease_owner, refresh_lease_until, created_at, updated_at
)
SELECT
    server_id, server_id, NULL, issuer, resource, registration_kind, tokens_sealed, access_expires_at,
    granted_scopes, token_generation, last_refreshed_at, authorized_by, requested_scopes,
    authorization_server, refresh_lease_owner, refresh_lease_until, created_at, updated_at
FROM mcp_server_oauth;

DROP TABLE mcp_server_oauth;
