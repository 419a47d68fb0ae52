//! The GraphQL API: schema, resolvers, loaders and the error mapping.
//!
//! Resolvers are short: authenticate (the principal is request data), parse ids, call one
//! domain function, map the result. `schema.graphql` at the repository root is the exported
//! SDL; a test fails when it drifts, and `switchboard schema` prints it.

pub mod error;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextRequest,
};
use async_graphql::{Context, Request, Response, Schema, ServerResult, Value};

use crate::app::AppHandle;
use crate::domain::access::Principal;
use crate::domain::limits::{Outbound, RequestBudget};
use loaders::{GrantLoader, ServerLoader, ToolsLoader, UserLoader, WorkspaceLoader};
use mutation::MutationRoot;
use query::QueryRoot;
use subscription::SubscriptionRoot;

/// The schema type.
pub type ApiSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Build the schema with its limits and shared data.
pub fn build_schema(app: AppHandle) -> ApiSchema {
    let config = &app.config;
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .limit_depth(config.max_query_depth)
        .limit_complexity(config.max_query_complexity)
        .limit_recursive_depth(32)
        .extension(ErrorCodes)
        .extension(OutboundBudget)
        .data(DataLoader::new(UserLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(WorkspaceLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(ServerLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(GrantLoader(app.clone()), tokio::spawn))
        .data(DataLoader::new(ToolsLoader(app.clone()), tokio::spawn))
        .data(app)
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .finish()
        .sdl()
}

/// Gives every error a code: errors raised by resolvers already have one; the rest come from
/// parsing, validation, variable coercion and the query limits, which are all the caller's
/// input, so they are `BAD_USER_INPUT`.
struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
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
        if let Some(app) = ctx.data_opt::<AppHandle>() {
            app.metrics
                .graphql_request(codes.iter().map(String::as_str));
        }
        response
    }
}

/// Complexity of a field that contacts other servers, on top of its selection: such a field
/// costs as much as fifty plain ones, so a query cannot pack thousands of them.
pub(crate) const OUTBOUND_COMPLEXITY: usize = 50;

/// Gives every request (and every WebSocket operation) a fresh [`RequestBudget`] of outbound
/// operations, which its fields share.
struct OutboundBudget;

impl ExtensionFactory for OutboundBudget {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OutboundBudget)
    }
}

#[async_trait::async_trait]
impl Extension for OutboundBudget {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let request = match ctx.data_opt::<AppHandle>() {
            Some(app) => request.data(app.limits.request_budget()),
            None => request,
        };
        next.run(ctx, request).await
    }
}

/// The caller and a permit for one outbound operation: the first line of every resolver that
/// may contact another server. `UNAUTHENTICATED` without a caller, `RATE_LIMITED` when the
/// request's budget or the caller's rate limit is used up.
pub(crate) fn outbound<'a>(
    ctx: &Context<'a>,
) -> async_graphql::Result<(&'a Principal, Outbound<'a>)> {
    let principal = error::principal(ctx)?;
    let app = ctx.data_unchecked::<AppHandle>();
    let Some(budget) = ctx.data_opt::<RequestBudget>() else {
        // Every request gets one in `prepare_request`; without it, refuse rather than
        // run unbounded.
        tracing::error!("a request reached an outbound field without a budget");
        return Err(error::internal());
    };
    let permit = app
        .limits
        .admit(budget, principal)
        .map_err(error::api_error)?;
    Ok((principal, permit))
}
