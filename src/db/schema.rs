//! The database schema, written by hand because one `table!` set serves both backends.
//!
//! Ids and timestamps use the portable types of [`crate::db::types`]; everything else uses SQL
//! types both backends share. JSON documents are stored as text. Keep this file in step with
//! `migrations/sqlite` and `migrations/postgres`; the migration tests round-trip every table.

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    workspaces (id) {
        id -> PortableUuid,
        name -> Text,
        created_at -> PortableTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    users (id) {
        id -> PortableUuid,
        name -> Text,
        created_at -> PortableTimestamp,
        issuer -> Nullable<Text>,
        subject -> Nullable<Text>,
        kind -> Text,
        operator -> Bool,
        scope_workspace_id -> Nullable<PortableUuid>,
        deleted_at -> Nullable<PortableTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    workspace_members (workspace_id, user_id) {
        workspace_id -> PortableUuid,
        user_id -> PortableUuid,
        role -> Text,
        created_at -> PortableTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    api_tokens (id) {
        id -> PortableUuid,
        user_id -> PortableUuid,
        name -> Text,
        token_hash -> Text,
        prefix -> Text,
        created_at -> PortableTimestamp,
        last_used_at -> Nullable<PortableTimestamp>,
        revoked_at -> Nullable<PortableTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    mcp_servers (id) {
        id -> PortableUuid,
        workspace_id -> PortableUuid,
        created_by -> Nullable<PortableUuid>,
        name -> Text,
        description -> Nullable<Text>,
        url -> Text,
        normalized_url -> Text,
        transport -> Text,
        enabled -> Bool,
        timeout_ms -> Integer,
        retries -> Integer,
        auth_type -> Text,
        header_names -> Text,
        headers_sealed -> Nullable<Text>,
        oauth_client_id -> Nullable<Text>,
        oauth_client_secret_sealed -> Nullable<Text>,
        connection_status -> Text,
        auth_status -> Text,
        status_reason -> Nullable<Text>,
        last_error -> Nullable<Text>,
        last_connected_at -> Nullable<PortableTimestamp>,
        consecutive_failures -> Integer,
        tool_count -> Integer,
        tools_refreshed_at -> Nullable<PortableTimestamp>,
        created_at -> PortableTimestamp,
        updated_at -> PortableTimestamp,
        oauth_lenient_pkce -> Bool,
        health_checked_at -> Nullable<PortableTimestamp>,
        oauth_client_issuer -> Nullable<Text>,
        credential_mode -> Text,
        oauth_client_key_sealed -> Nullable<Text>,
        tools_listed_by -> Nullable<PortableUuid>,
        protocol_version -> Nullable<Text>,
        tools_fresh_until -> Nullable<PortableTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    mcp_oauth_registrations (id) {
        id -> PortableUuid,
        server_id -> PortableUuid,
        issuer -> Text,
        kind -> Text,
        client_information_sealed -> Nullable<Text>,
        token_endpoint_auth_method -> Nullable<Text>,
        created_at -> PortableTimestamp,
        updated_at -> PortableTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    mcp_oauth_grants (id) {
        id -> PortableUuid,
        server_id -> PortableUuid,
        user_id -> Nullable<PortableUuid>,
        issuer -> Nullable<Text>,
        resource -> Nullable<Text>,
        registration_kind -> Nullable<Text>,
        tokens_sealed -> Nullable<Text>,
        access_expires_at -> Nullable<PortableTimestamp>,
        granted_scopes -> Nullable<Text>,
        token_generation -> BigInt,
        last_refreshed_at -> Nullable<PortableTimestamp>,
        authorized_by -> Nullable<PortableUuid>,
        requested_scopes -> Nullable<Text>,
        authorization_server -> Nullable<Text>,
        refresh_lease_owner -> Nullable<Text>,
        refresh_lease_until -> Nullable<PortableTimestamp>,
        created_at -> PortableTimestamp,
        updated_at -> PortableTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    mcp_oauth_flows (id) {
        id -> PortableUuid,
        server_id -> PortableUuid,
        user_id -> PortableUuid,
        state_hash -> Text,
        begin_hash -> Text,
        browser_binding_hash -> Nullable<Text>,
        code_verifier_sealed -> Text,
        authorization_url_sealed -> Text,
        redirect_uri -> Text,
        resource -> Text,
        expected_issuer -> Nullable<Text>,
        requested_scopes -> Nullable<Text>,
        authorization_server -> Text,
        registration_kind -> Text,
        client_information_sealed -> Nullable<Text>,
        created_at -> PortableTimestamp,
        expires_at -> PortableTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    mcp_tools (server_id, name) {
        server_id -> PortableUuid,
        name -> Text,
        title -> Nullable<Text>,
        description -> Nullable<Text>,
        input_schema -> Text,
        annotations -> Nullable<Text>,
        updated_at -> PortableTimestamp,
        output_schema -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    audit_events (id) {
        id -> PortableUuid,
        workspace_id -> Nullable<PortableUuid>,
        actor_user_id -> Nullable<PortableUuid>,
        action -> Text,
        target_id -> Nullable<PortableUuid>,
        details -> Text,
        at -> PortableTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    mcp_user_catalogues (server_id, user_id) {
        server_id -> PortableUuid,
        user_id -> PortableUuid,
        tool_count -> Integer,
        refreshed_at -> PortableTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{PortableTimestamp, PortableUuid};

    mcp_user_tools (server_id, user_id, name) {
        server_id -> PortableUuid,
        user_id -> PortableUuid,
        name -> Text,
        title -> Nullable<Text>,
        description -> Nullable<Text>,
        input_schema -> Text,
        annotations -> Nullable<Text>,
        updated_at -> PortableTimestamp,
        output_schema -> Nullable<Text>,
    }
}

diesel::joinable!(workspace_members -> workspaces (workspace_id));
diesel::joinable!(workspace_members -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(mcp_servers -> workspaces (workspace_id));
diesel::joinable!(mcp_oauth_registrations -> mcp_servers (server_id));
diesel::joinable!(mcp_oauth_grants -> mcp_servers (server_id));
diesel::joinable!(mcp_oauth_flows -> mcp_servers (server_id));
diesel::joinable!(mcp_tools -> mcp_servers (server_id));
diesel::joinable!(audit_events -> workspaces (workspace_id));

diesel::allow_tables_to_appear_in_same_query!(
    workspaces,
    users,
    workspace_members,
    api_tokens,
    mcp_servers,
    mcp_oauth_registrations,
    mcp_oauth_grants,
    mcp_oauth_flows,
    mcp_tools,
    mcp_user_catalogues,
    mcp_user_tools,
    audit_events,
);
