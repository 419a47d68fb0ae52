//! Tool calls and catalogue refreshes as the API offers them.
//!
//! A call checks the caller's workspace first, then that the tool is in the stored catalogue
//! and the arguments are a JSON object. Then it calls the server with its current
//! credentials: a 401 leads to one token refresh and one retry, then `REAUTH_REQUIRED`; a 403
//! `insufficient_scope` remembers the scopes for the next flow and asks for consent; an expired
//! session is retried once with a new one. A call whose answer was lost with its stream is
//! repeated (once, as a new request) only when the tool's annotations say it is read-only or
//! idempotent; otherwise the caller is told the tool may have run. Nothing else is retried.
//!
//! A modern server may answer that it needs input first: the call then returns what it asks
//! and a sealed continuation ([`super::input`]), and [`continue_call`] retries it with the
//! caller's answers, under the same checks as the first call.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::catalogue;
use super::input::{self, Answer, Pending};
use crate::db;
use crate::db::models::McpServerRow;
use crate::db::servers::CallReads;
use crate::domain::Context;
use crate::domain::access::Role;
use crate::domain::limits::Outbound;
use crate::domain::oauth::{Holder, tokens};
use crate::domain::servers;
use crate::domain::servers::AuthType;
use crate::domain::{Error, Result, bad_input};
pub use crate::mcp::UnansweredInput;
use crate::mcp::{
    CallResult, McpError, Resume, SessionKey, ToolCall, ToolCallOutcome, may_run_twice,
};

/// What a tool call came back with.
#[derive(Debug)]
pub enum CallOutcome {
    /// The tool ran.
    Complete(ToolCallOutcome),
    /// The server needs the caller's input first.
    InputRequired(Pending),
}

/// Reconnect to a server, list its tools and store them (editor role; on a per-user server any
/// member, with their own grant); a server whose auth type is not known yet is asked first.
pub async fn refresh_server(
    ctx: &Context,
    outbound: Outbound<'_>,
    server_id: Uuid,
) -> Result<McpServerRow> {
    let user_id = outbound.user_id();
    let server = find(ctx, outbound, server_id, servers::own_grant_role).await?;
    catalogue::check(ctx, &server, servers::holder(&server, user_id)).await?;
    servers::load(ctx, server_id).await
}

/// Call a tool of a server (viewer role), counted in the metrics by outcome and latency.
pub async fn call_tool(
    ctx: &Context,
    outbound: Outbound<'_>,
    server_id: Uuid,
    name: &str,
    arguments: Option<Value>,
) -> Result<CallOutcome> {
    let arguments = match arguments {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(bad_input("arguments", "must be a JSON object")),
    };
    measured(
        ctx,
        server_id,
        name,
        Box::pin(call(ctx, outbound, server_id, name, arguments, None, 0)),
    )
    .await
}

/// Continue a call that came back for input, with the caller's answers (viewer role, and only
/// the caller the continuation was issued to).
pub async fn continue_call(
    ctx: &Context,
    outbound: Outbound<'_>,
    continuation: &str,
    answers: Vec<Answer>,
) -> Result<CallOutcome> {
    let continued = input::resume(ctx, outbound.user_id(), continuation, answers)?;
    measured(
        ctx,
        continued.server_id,
        &continued.tool,
        Box::pin(call(
            ctx,
            outbound,
            continued.server_id,
            &continued.tool,
            continued.arguments,
            Some(continued.resume),
            continued.round,
        )),
    )
    .await
}

/// Count a call in the metrics by outcome and latency, in a span of its own (traces only: the
/// server and the tool's name, never its arguments).
async fn measured(
    ctx: &Context,
    server_id: Uuid,
    tool: &str,
    call: impl Future<Output = Result<CallOutcome>>,
) -> Result<CallOutcome> {
    let span = tracing::info_span!(
        target: crate::telemetry::SPANS,
        "tool_call",
        otel.name = %format!("call_tool {tool}"),
        mcp_server.id = %server_id,
        gen_ai.tool.name = tool,
        switchboard.outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let result = tracing::Instrument::instrument(call, span.clone()).await;
    let outcome = match &result {
        Ok(CallOutcome::Complete(outcome)) if outcome.is_error => "tool_error",
        Ok(CallOutcome::Complete(_)) => "ok",
        Ok(CallOutcome::InputRequired(_)) => "input_required",
        Err(Error::ReauthRequired { .. } | Error::InsufficientScope { .. }) => "reauth_required",
        Err(Error::UpstreamTimeout) => "upstream_timeout",
        Err(Error::Upstream(_) | Error::Oauth(_) | Error::HeadersRejected { .. }) => {
            "upstream_error"
        }
        Err(
            Error::BadInput { .. }
            | Error::NotFound
            | Error::Forbidden(_)
            | Error::ServerDisabled { .. },
        ) => "refused",
        Err(Error::RateLimited(_)) => "rate_limited",
        Err(_) => "internal_error",
    };
    ctx.metrics.tool_call(outcome, started.elapsed());
    span.record("switchboard.outcome", outcome);
    if !matches!(outcome, "ok" | "tool_error" | "input_required") {
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// One call, or one retry of a call with answers (`round` earlier rounds).
async fn call(
    ctx: &Context,
    outbound: Outbound<'_>,
    server_id: Uuid,
    name: &str,
    arguments: Map<String, Value>,
    resume: Option<Resume>,
    round: u32,
) -> Result<CallOutcome> {
    let user_id = outbound.user_id();
    // The server, the tool and the grant in one read; none is used before the caller's access
    // to the server is checked, in `find`'s order. On a per-user server the call acts as the
    // caller upstream, with their own grant and their own session, or not at all; a member
    // with a catalogue of their own calls what it lists.
    let found = {
        let mut conn = ctx.db.conn().await?;
        db::servers::find_for_call(&mut conn, server_id, name, move |server| CallReads {
            holder: servers::holder(server, user_id).user_id(),
            grant: tokens::uses_stored_grant(server),
        })
        .await?
        .ok_or(Error::NotFound)?
    };
    let server = found.server;
    admit(outbound, &server, Role::Viewer)?;
    let holder = servers::holder(&server, user_id);
    let known = found.tool;
    // The grant read with the server serves the first attempt; a later one reads it again.
    let mut grant = tokens::uses_stored_grant(&server)
        .then_some(tokens::GrantFrom::Read(found.grant.map(Box::new)));
    let key = SessionKey {
        server: server_id,
        user: holder.user_id(),
    };
    let Some(known) = known else {
        return Err(bad_input(
            "name",
            "the server has no such tool (refresh the server to update its catalogue)",
        ));
    };
    let rerunnable = known
        .annotations
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .is_some_and(|annotations| may_run_twice(&annotations));
    let call = ToolCall {
        name: name.to_owned(),
        arguments,
        header_parameters: known
            .header_parameters
            .then(|| catalogue::listing_caps(ctx)),
        resume,
        rerunnable,
    };

    let mut refreshed = false;
    let mut renewed_session = false;
    let mut server = server;
    loop {
        let from = grant.take().unwrap_or(tokens::GrantFrom::Storage);
        let (target, generation) = match catalogue::target(ctx, &server, holder, from).await {
            Ok(target) => target,
            Err(error) => {
                fail(ctx, &server, holder, error, &mut refreshed, None).await?;
                server = servers::load(ctx, server_id).await?;
                continue;
            }
        };
        let outcome = match ctx.sessions.lease(&ctx.http, key, target).await {
            Ok(session) => {
                catalogue::remember_protocol(ctx, &server, &session).await;
                // Boxed: the exchange's future is most of a call's, and the call's is moved
                // several times on its way to the executor.
                let outcome = Box::pin(session.call(call.clone())).await;
                if outcome.is_err() {
                    ctx.sessions.discard(key, &session);
                }
                outcome
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(CallResult::Complete(outcome)) => {
                catalogue::mark_reached(ctx, &server).await;
                return Ok(CallOutcome::Complete(outcome));
            }
            Ok(CallResult::InputRequired(required)) => {
                catalogue::mark_reached(ctx, &server).await;
                let pending = input::pending(
                    ctx,
                    user_id,
                    server_id,
                    &call.name,
                    &call.arguments,
                    required,
                    round,
                )?;
                return Ok(CallOutcome::InputRequired(pending));
            }
            // The server forgot the session (it answered 404, so the call did not run): one
            // more attempt on a new session. Nothing else is retried here, since a tool call
            // that may have run must not run twice; the session itself repeats a call whose
            // answer was lost only when the tool says that does no harm.
            Err(McpError::SessionExpired) if !renewed_session => renewed_session = true,
            Err(McpError::Interrupted) if !call.rerunnable => {
                let error = Error::Upstream(
                    "the connection to the MCP server broke before it answered; the tool may \
                     have run, and is not called again since it does not say that running \
                     twice is harmless"
                        .into(),
                );
                catalogue::record_failure(ctx, server.id.0, holder, &error).await;
                return Err(error);
            }
            Err(error) => {
                fail(
                    ctx,
                    &server,
                    holder,
                    catalogue::mcp_error(&server, error),
                    &mut refreshed,
                    generation,
                )
                .await?;
                server = servers::load(ctx, server_id).await?;
            }
        }
    }
}

/// Decide what a failed attempt leads to: `Ok(())` to try again (after a token refresh),
/// `Err` to give up with that error (status recorded).
async fn fail(
    ctx: &Context,
    server: &McpServerRow,
    holder: Holder,
    error: Error,
    refreshed: &mut bool,
    generation: Option<i64>,
) -> std::result::Result<(), Error> {
    match error {
        Error::ReauthRequired { server_id }
            if server.auth_type == AuthType::Oauth && !*refreshed && generation.is_some() =>
        {
            *refreshed = true;
            // Boxed, as a refresh is rare and its future large.
            match Box::pin(tokens::refresh(ctx, server, holder, generation)).await {
                Ok(_) => Ok(()),
                Err(_) => {
                    let error = Error::ReauthRequired { server_id };
                    catalogue::record_failure(ctx, server_id, holder, &error).await;
                    Err(Error::ReauthRequired { server_id })
                }
            }
        }
        Error::InsufficientScope { server_id, scope } => {
            catalogue::note_insufficient_scope(ctx, server_id, holder, scope.as_deref()).await?;
            Err(Error::InsufficientScope { server_id, scope })
        }
        other => {
            catalogue::record_failure(ctx, server.id.0, holder, &other).await;
            Err(other)
        }
    }
}

/// The server, once the caller is known to hold the role `role` names for it in its
/// workspace, the workspace's rate limit admits one more outbound operation and the server is
/// enabled.
async fn find(
    ctx: &Context,
    outbound: Outbound<'_>,
    server_id: Uuid,
    role: impl FnOnce(&McpServerRow) -> Role,
) -> Result<McpServerRow> {
    let server = servers::load(ctx, server_id).await?;
    admit(outbound, &server, role(&server))?;
    Ok(server)
}

/// Whether the caller may act on `server` with `role`: they hold it in its workspace, the
/// workspace's rate limit admits one more outbound operation, and the server is enabled.
fn admit(outbound: Outbound<'_>, server: &McpServerRow, role: Role) -> Result<()> {
    outbound.require(server.workspace_id.0, role)?;
    servers::ensure_enabled(server)
}
