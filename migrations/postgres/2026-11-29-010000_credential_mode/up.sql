-- Whose credentials a server is reached with: the workspace's one shared grant, each member's
-- own, or the workspace's machine client (the OAuth client-credentials grant, no user).
ALTER TABLE mcp_servers ADD COLUMN credential_mode TEXT NOT NULL DEFAULT 'shared'
    CHECK (credential_mode IN ('shared', 'per_user', 'client_credentials'));
-- A machine client's private key (PEM) for private_key_jwt; sealed, never returned.
ALTER TABLE mcp_servers ADD COLUMN oauth_client_key_sealed TEXT;
