//! The authorization flow: start, begin (the popup's first stop), and completion by the
//! callback page or by `completeMcpOauth`.
//!
//! Invariants:
//! - A pending flow is a row of its own (`mcp_oauth_flows`), one per server and user: its
//!   discovered metadata, registration and requested scopes replace the grant's only when its
//!   code exchange succeeds. Starting, abandoning or failing a flow never touches the grant, so
//!   an old refresh token only ever goes to the authorization server that issued it.
//! - Only the SHA-256 of `state`, of the begin link and of the browser binding are stored; the
//!   verifier and the authorization URL (which carries the state) are sealed.
//! - A flow lives ten minutes. While another user's flow on the same server is live, starting
//!   one is a conflict. Expired flows are swept, and a status they left at `AUTHORIZING` falls
//!   back to what the grant says.
//! - The begin link is single use and binds the flow to one browser with an HttpOnly cookie;
//!   `completeMcpOauth` binds it to the authenticated user who started it instead.
//! - Completion order: provider error (burn the flow) → missing parameters → unknown or
//!   expired state → binding → server gone or insecure → RFC 9207 `iss` → burn the flow →
//!   code exchange. A flow whose client id is a metadata document requires `iss`.
//! - Every failed completion is logged once with its reason, never with a secret.
//!
//! - [`start`]: `startMcpOauth`: probing, discovery, registration and the pending flow.
//! - [`request`]: the pure parts of a request: which scopes to ask for, the authorization URL.
//! - [`callback`]: the begin link and the completion, by the callback page or by
//!   `completeMcpOauth`.

mod callback;
mod request;
mod start;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::Holder;
use super::OauthError;
use crate::db::models::{FlowRow, McpServerRow};
use crate::db::{self, DbTime};
use crate::domain::Context;
use crate::domain::access::{Principal, Role};
use crate::domain::lifecycle::Event;
use crate::domain::limits::Outbound;
use crate::domain::servers::{self, CredentialMode};
use crate::domain::status::{self};
use crate::domain::{Error, Result, audit, bad_input};
use crate::net;
use crate::transaction;

pub use self::callback::{Begin, Binding, CallbackParams, begin, binding_cookie_name, complete};
pub use self::start::start;

/// How long a started flow stays valid.
pub const FLOW_TTL: TimeDelta = TimeDelta::minutes(10);
/// Whether a flow is past its lifetime (the storage queries apply the same rule to
/// `expires_at`: live while it is later than now).
fn expired(flow: &FlowRow) -> bool {
    flow.expires_at.0 <= db::now()
}

/// Path of the callback page (the redirect URI is the public URL plus this).
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// What `startMcpOauth` answers.
#[derive(Clone, Debug)]
pub enum Started {
    /// Open `authorization_url` (Switchboard's begin link) in a popup before `expires_at`.
    Redirect {
        /// The begin link to open.
        authorization_url: String,
        /// The authorization server's URL the begin link redirects to (for headless clients).
        upstream_url: Url,
        /// When the flow expires.
        expires_at: DateTime<Utc>,
    },
    /// A stored refresh token still works: nothing to do.
    AlreadyAuthorized,
}

/// The redirect URI of this deployment.
pub fn redirect_uri(ctx: &Context) -> String {
    ctx.settings.public_endpoint(CALLBACK_PATH).to_string()
}

/// OAuth needs an https server URL; plain http only on loopback when the operator allows
/// private networks (local development and tests).
fn secure_server_url(ctx: &Context, server: &McpServerRow) -> Result<Url> {
    let url = Url::parse(&server.url).map_err(|_| bad_input("url", "is not a valid URL"))?;
    if url.scheme() == "https"
        || (url.scheme() == "http"
            && net::is_loopback_host(&url)
            && ctx.settings.allow_private_networks)
    {
        Ok(url)
    } else {
        Err(Error::UnsafeUrl {
            field: "url".into(),
            message: "OAuth needs an https server URL".into(),
        })
    }
}

/// Why a flow could not begin or complete: the callback page's codes, with what the page says
/// for each (the API's `McpOauthFailureReason` carries the same words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFailureReason {
    /// The authorization server did not grant access.
    ProviderError,
    /// The authorization response was incomplete.
    MissingParams,
    /// The link is unknown, already used, or expired.
    InvalidState,
    /// The flow was started in another browser or session.
    BindingMismatch,
    /// The server was deleted while it was being authorized.
    ServerGone,
    /// The server or the authorization server is not at a secure address.
    InsecureUrl,
    /// The response did not come from the expected authorization server.
    IssuerMismatch,
    /// The authorization server did not issue tokens for the code.
    TokenExchangeFailed,
    /// Something unexpected failed on our side.
    Unknown,
}

impl FlowFailureReason {
    /// Every reason.
    pub const ALL: [FlowFailureReason; 9] = [
        FlowFailureReason::ProviderError,
        FlowFailureReason::MissingParams,
        FlowFailureReason::InvalidState,
        FlowFailureReason::BindingMismatch,
        FlowFailureReason::ServerGone,
        FlowFailureReason::InsecureUrl,
        FlowFailureReason::IssuerMismatch,
        FlowFailureReason::TokenExchangeFailed,
        FlowFailureReason::Unknown,
    ];

    /// The code the callback page and its message to the opener carry.
    pub const fn code(self) -> &'static str {
        match self {
            FlowFailureReason::ProviderError => "provider_error",
            FlowFailureReason::MissingParams => "missing_params",
            FlowFailureReason::InvalidState => "invalid_state",
            FlowFailureReason::BindingMismatch => "binding_mismatch",
            FlowFailureReason::ServerGone => "server_gone",
            FlowFailureReason::InsecureUrl => "insecure_url",
            FlowFailureReason::IssuerMismatch => "issuer_mismatch",
            FlowFailureReason::TokenExchangeFailed => "token_exchange_failed",
            FlowFailureReason::Unknown => "unknown",
        }
    }

    /// What it means, for a person.
    pub const fn explain(self) -> &'static str {
        match self {
            FlowFailureReason::ProviderError => "The authorization server did not grant access.",
            FlowFailureReason::MissingParams => "The authorization response was incomplete.",
            FlowFailureReason::InvalidState => {
                "This authorization link is unknown, already used, or expired. Start again."
            }
            FlowFailureReason::BindingMismatch => {
                "This authorization was started in another browser or session."
            }
            FlowFailureReason::ServerGone => {
                "The server was deleted while it was being authorized."
            }
            FlowFailureReason::InsecureUrl => {
                "The server or the authorization server is not at a secure address."
            }
            FlowFailureReason::IssuerMismatch => {
                "The response did not come from the expected authorization server."
            }
            FlowFailureReason::TokenExchangeFailed => {
                "The authorization server did not issue tokens."
            }
            FlowFailureReason::Unknown => "Something went wrong. Start again.",
        }
    }
}

/// Why a flow could not begin or complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowFailure {
    /// Why.
    pub reason: FlowFailureReason,
    /// The server, when known.
    pub server_id: Option<Uuid>,
}

impl FlowFailure {
    fn new(reason: FlowFailureReason, server_id: Option<Uuid>) -> Self {
        FlowFailure { reason, server_id }
    }
}

/// A failure, logged once for the operator with its reason (never a secret).
fn failed(reason: FlowFailureReason, server_id: Option<Uuid>, detail: &'static str) -> FlowFailure {
    let code = reason.code();
    match server_id {
        Some(id) => {
            tracing::warn!(mcp_server.id = %id, reason = code, detail, "an OAuth flow failed")
        }
        None => tracing::warn!(reason = code, detail, "an OAuth flow failed"),
    }
    FlowFailure::new(reason, server_id)
}

/// Forget a pending flow after a failure and say why in the server's status.
async fn burn(ctx: &Context, conn: &mut db::DbConn, flow: &FlowRow, event: Event) {
    let server_id = flow.server_id.0;
    match db::oauth::burn_flow(conn, flow.id.0).await {
        Ok(true) => fail_status(ctx, conn, server_id, flow.user_id.0, event).await,
        Ok(false) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot burn an OAuth flow")
        }
    }
}

/// The status after a flow `user_id` started ended without a new grant: what the grant says (a
/// failed new flow does not undo a grant that still works), with the reason. On a per-user
/// server that is the user's own view, published to them alone.
async fn fail_status(
    ctx: &Context,
    conn: &mut db::DbConn,
    server_id: Uuid,
    user_id: Uuid,
    event: Event,
) {
    let recorded = async {
        let Some(server) = db::servers::find(conn, server_id).await? else {
            return Ok(None);
        };
        let holder = servers::holder(&server, user_id);
        status::record_for(conn, server_id, holder, event).await
    }
    .await;
    match recorded {
        Ok(Some(event)) => ctx.events.publish(event),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, mcp_server.id = %server_id, "cannot record an OAuth failure")
        }
    }
}

/// Delete expired flows and give the servers they left `AUTHORIZING` (with no other flow
/// pending) back the status their grant deserves. Returns how many servers were affected.
pub async fn sweep_expired(ctx: &Context) -> std::result::Result<usize, db::DbError> {
    let now = DbTime(db::now());
    let mut conn = ctx.db.conn().await?;
    let expired = db::oauth::delete_expired_flows(&mut conn, now, 500).await?;
    let mut servers: Vec<Uuid> = expired.iter().map(|(server, _)| *server).collect();
    servers.sort_unstable();
    servers.dedup();
    let live = db::oauth::servers_with_live_flows(&mut conn, &servers, now).await?;
    for (server_id, user_id) in &expired {
        // On a shared server another member's live flow keeps it authorizing; a user's flow
        // on a per-user server is theirs alone (one per user), so it always tells them.
        if live.contains(server_id) && !personal(&mut conn, *server_id).await? {
            continue;
        }
        fail_status(ctx, &mut conn, *server_id, *user_id, Event::FlowExpired).await;
    }
    Ok(servers.len())
}

/// Whether a server gives each member a grant of their own.
async fn personal(
    conn: &mut db::DbConn,
    server_id: Uuid,
) -> std::result::Result<bool, db::DbError> {
    Ok(db::servers::find(conn, server_id)
        .await?
        .is_some_and(|server| server.credential_mode == CredentialMode::PerUser))
}

/// Whose grant [`disconnect`] withdraws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// The caller's: the shared grant (editor role) or, on a per-user server, their own (any
    /// member).
    Mine,
    /// One member's own grant on a per-user server (admin role, or that member).
    User(Uuid),
    /// Every grant of the server (admin role on a per-user server, editor on a shared one).
    All,
}

/// Revoke and remove grants of a server, with their pending flows; whoever held them needs to
/// authorize again. Each removal is audited naming the user whose grant it was.
pub async fn disconnect(
    ctx: &Context,
    principal: &Principal,
    outbound: Outbound<'_>,
    server_id: Uuid,
    which: Disconnect,
) -> Result<McpServerRow> {
    let (server, member, per_user, grants) = {
        let mut conn = ctx.db.conn().await?;
        let server = db::servers::find(&mut conn, server_id)
            .await?
            .ok_or(Error::NotFound)?;
        let per_user = server.credential_mode == CredentialMode::PerUser;
        let which = match which {
            Disconnect::User(user) if user == principal.user_id => Disconnect::Mine,
            other => other,
        };
        let role = match which {
            Disconnect::Mine => servers::own_grant_role(&server),
            Disconnect::User(_) => Role::Admin,
            Disconnect::All if per_user => Role::Admin,
            Disconnect::All => Role::Editor,
        };
        outbound.require(server.workspace_id.0, role)?;
        if matches!(which, Disconnect::User(_)) && !per_user {
            return Err(bad_input(
                "userId",
                "this server has one shared grant; members do not hold their own",
            ));
        }
        // The member whose own grant goes, or `None` for every grant of the server.
        let member = match which {
            Disconnect::Mine if per_user => Some(principal.user_id),
            Disconnect::User(user) => Some(user),
            Disconnect::Mine | Disconnect::All => None,
        };
        let grants = match member {
            Some(user) => db::oauth::find_grant(&mut conn, server_id, Some(user))
                .await?
                .into_iter()
                .collect(),
            None => db::oauth::grants_of_server(&mut conn, server_id).await?,
        };
        (server, member, per_user, grants)
    };
    // No connection is held while the authorization server answers.
    for grant in &grants {
        super::revoke::revoke_grant(ctx, &server, grant).await;
    }
    let mut conn = ctx.db.conn().await?;
    let (server, events) = transaction!(conn, {
        let mut events = Vec::new();
        for grant in &grants {
            db::oauth::delete_grant(&mut conn, grant.id.0).await?;
            audit::record(
                &mut conn,
                server.workspace_id.0,
                principal.user_id,
                "mcp_server.oauth_disconnect",
                Some(server_id),
                match grant.user_id {
                    Some(user) => json!({ "user": user.0 }),
                    None => json!({}),
                },
            )
            .await?;
        }
        match member {
            Some(user) => {
                db::oauth::delete_flow_of(&mut conn, server_id, user).await?;
                let holder = Holder::User(user);
                events.extend(
                    status::record_for(&mut conn, server_id, holder, Event::Disconnected).await?,
                );
            }
            None => {
                db::oauth::delete_flows_of_server(&mut conn, server_id).await?;
                events.extend(status::record(&mut conn, server_id, Event::Disconnected).await?);
                if grants.is_empty() && !per_user {
                    // Nothing to withdraw is still audited: the caller asked.
                    audit::record(
                        &mut conn,
                        server.workspace_id.0,
                        principal.user_id,
                        "mcp_server.oauth_disconnect",
                        Some(server_id),
                        json!({}),
                    )
                    .await?;
                }
            }
        }
        let server = db::servers::find(&mut conn, server_id)
            .await?
            .ok_or(Error::NotFound)?;
        Ok::<_, Error>((server, events))
    })?;
    for event in events {
        ctx.events.publish(event);
    }
    if grants.iter().all(|grant| grant.user_id.is_none()) {
        ctx.oauth.forget_discovery(server_id);
    }
    Ok(server)
}

impl From<OauthError> for Error {
    fn from(error: OauthError) -> Self {
        Error::Oauth(error)
    }
}
