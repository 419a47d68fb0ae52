-- A server whose auth type could not be detected is stored as such. Reasons are a closed
-- vocabulary now; any other text left by an earlier version is dropped.
UPDATE mcp_servers SET status_reason = NULL
WHERE status_reason IS NOT NULL AND status_reason NOT IN (
    'created', 'url_changed', 'credentials_changed', 'auth_type_changed', 'headers_changed', 'detected', 'detection_failed', 'enabled', 'disabled', 'connected', 'unreachable', 'headers_rejected', 'authorization_required', 'flow_started', 'flow_expired', 'authorized', 'token_refreshed', 'refresh_rejected', 'client_rejected', 'refresh_failed', 'tokens_unreadable', 'insufficient_scope', 'disconnected', 'provider_error', 'insecure_url', 'token_exchange_failed', 'too_many_tools', 'catalogue_too_large', 'deleted'
);
ALTER TABLE mcp_servers DROP CONSTRAINT mcp_servers_auth_type_check;
ALTER TABLE mcp_servers ADD CONSTRAINT mcp_servers_auth_type_check
    CHECK (auth_type IN ('none', 'headers', 'oauth', 'undetected'));
