//! The GraphQL API: schema, resolvers, loaders and the error mapping.
//!
//! Resolvers are short: authenticate (the principal is request data), parse ids, call one
//! domain function, map the result. `schema.graphql` at the repository root is the exported
//! SDL; a test fails when it drifts, and `switchboard schema` prints it.

pub mod documents;
pub mod enums;
pub mod error;
pub mod json;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Request, Response, Schema, ValidationMode, Value};

use crate::app::{App, AppHandle};
use crate::domain::access::Principal;
use crate::domain::limits::{Outbound, RequestBudget};

use loaders::{GrantLoader, OwnGrantLoader, OwnToolsLoader, ServerLoader, ToolsLoader, UserLoader};
use mutation::MutationRoot;
use query::QueryRoot;
use subscription::SubscriptionRoot;

/// The schema type.
pub type ApiSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Build the schema with its limits and shared data.
pub fn build_schema(app: AppHandle) -> ApiSchema {
    build_schema_validating(app, ValidationMode::Strict)
}

/// The schema for requests known to pass validation ([`documents::Checked::Before`]): the
/// same, but validating with the fast rules, which still enforce the depth and complexity
/// limits.
pub fn build_checked_schema(app: AppHandle) -> ApiSchema {
    build_schema_validating(app, ValidationMode::Fast)
}

fn build_schema_validating(app: AppHandle, mode: ValidationMode) -> ApiSchema {
    let config = &app.config;
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .validation_mode(mode)
        .limit_depth(config.max_query_depth)
        .limit_complexity(config.max_query_complexity)
        .limit_recursive_depth(32)
        .register_output_type::<enums::McpOauthFailureReason>()
        .data(DataLoader::new(UserLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(ServerLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(GrantLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(OwnGrantLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(OwnToolsLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(ToolsLoader(app.clone()), tokio::spawn))
        .data(app)
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .register_output_type::<enums::McpOauthFailureReason>()
        .finish()
        .sdl()
}

/// Complexity of a field that contacts other servers, on top of its selection: such a field
/// costs as much as fifty plain ones, so a query cannot pack thousands of them.
pub(crate) const OUTBOUND_COMPLEXITY: usize = 50;

/// Everything a request (or a WebSocket operation) carries besides its text: the caller, when
/// authenticated, and a fresh [`RequestBudget`] of outbound operations its fields share.
/// Called by every transport before it executes a request; no schema extension sits on the
/// field path. Also tells whether the request is known to pass validation.
pub fn prepare(
    app: &App,
    request: Request,
    principal: Option<Principal>,
) -> (Request, documents::Checked) {
    let user = principal.as_ref().map(|principal| principal.user_id);
    let (request, checked) = documents::attach(request, user);
    let request = request.data(app.limits.request_budget());
    let request = match principal {
        Some(principal) => request.data(principal),
        None => request,
    };
    (request, checked)
}

/// Finish a response as every transport sends it: each error gets a code (errors raised by
/// resolvers have one; the rest come from parsing, validation, variable coercion and the query
/// limits, which are the caller's input, so they are `BAD_USER_INPUT`), and the request is
/// counted with its error codes.
pub fn finish(app: &App, response: &mut Response) {
    let mut codes = Vec::with_capacity(response.errors.len());
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", Value::from("BAD_USER_INPUT"));
        }
        if let Some(Value::String(code)) = extensions.get("code") {
            codes.push(code.clone());
        }
    }
    app.metrics
        .graphql_request(codes.iter().map(String::as_str));
}

/// The caller and a permit for one outbound operation: the first line of every resolver that
/// may contact another server. `UNAUTHENTICATED` without a caller, `RATE_LIMITED` when the
/// request's budget or the caller's rate limit is used up.
pub(crate) fn outbound<'a>(ctx: &Context<'a>) -> error::Result<(&'a Principal, Outbound<'a>)> {
    let principal = error::principal(ctx)?;
    let app = ctx.data_unchecked::<AppHandle>();
    let Some(budget) = ctx.data_opt::<RequestBudget>() else {
        // Every request gets one in `prepare`; without it, refuse rather than run unbounded.
        return Err(error::ApiError::internal(
            "a request reached an outbound field without a budget",
            &"no budget",
        ));
    };
    let permit = app
        .limits
        .admit(budget, principal)
        .map_err(error::ApiError::from)?;
    Ok((principal, permit))
}
