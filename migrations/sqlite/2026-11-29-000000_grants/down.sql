-- Back to one row per server: the shared grant with its registration. Per-user grants and
-- other registrations have no place in the earlier layout and are dropped.
CREATE TABLE mcp_server_oauth (
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
CREATE INDEX mcp_server_oauth_expiry_idx ON mcp_server_oauth (access_expires_at);
INSERT INTO mcp_server_oauth (
    server_id, issuer, resource, registration_kind, client_information_sealed, tokens_sealed,
    access_expires_at, granted_scopes, token_generation, last_refreshed_at, authorized_by,
    requested_scopes, authorization_server, refresh_lease_owner, refresh_lease_until,
    created_at, updated_at
)
SELECT
    g.server_id, g.issuer, g.resource, g.registration_kind, r.client_information_sealed,
    g.tokens_sealed, g.access_expires_at, g.granted_scopes, g.token_generation,
    g.last_refreshed_at, g.authorized_by, g.requested_scopes, g.authorization_server,
    g.refresh_lease_owner, g.refresh_lease_until, g.created_at, g.updated_at
FROM mcp_oauth_grants g
LEFT JOIN mcp_oauth_registrations r ON r.server_id = g.server_id AND r.issuer = g.issuer
WHERE g.user_id IS NULL;
DROP TABLE mcp_oauth_grants;
DROP TABLE mcp_oauth_registrations;
