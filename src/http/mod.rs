//! The HTTP surface: the router, GraphQL over HTTP and WebSocket, GraphiQL, health endpoints,
//! and the built-in status console at `/`.
//!
//! Handlers are thin: authenticate, call the schema or one domain function, answer. The
//! request body limit and CORS (configured app origins only) apply to every route. Request
//! logs carry the method, path and status only, never a query string or a header.

mod console;
mod embedded;
mod graphiql;
mod health;
pub mod metrics;
pub mod oauth_pages;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppHandle;
use crate::domain::{self, access};
use crate::graphql::{ApiSchema, build_schema};

/// State shared by the handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The application.
    pub app: AppHandle,
    /// The GraphQL schema.
    pub schema: ApiSchema,
    /// Flips to `true` when the server shuts down, closing WebSocket sessions.
    pub shutdown: watch::Receiver<bool>,
    /// The open WebSockets.
    pub sockets: Arc<ws::Sockets>,
}

/// Build the router. WebSockets close (1001) when `shutdown` flips to `true`.
pub fn router(app: AppHandle, shutdown: watch::Receiver<bool>) -> Router {
    build(app, shutdown).0
}

/// The router and the registry of the WebSockets it serves.
fn build(app: AppHandle, shutdown: watch::Receiver<bool>) -> (Router, Arc<ws::Sockets>) {
    let schema = build_schema(app.clone());
    let max_body = app.config.max_body_bytes;
    let origins = app.config.app_origins.clone();
    let metrics_routes = metrics::main_listener_routes(&app);
    let sockets = ws::Sockets::start(&app);
    let state = HttpState {
        app,
        schema,
        shutdown,
        sockets: sockets.clone(),
    };
    let mut router = Router::new()
        .route("/", get(console::index))
        .route("/console.js", get(console::script))
        .route("/console.css", get(console::style))
        .route("/favicon.svg", get(console::icon))
        .route("/graphql", get(graphiql::page).post(graphql))
        .route("/graphiql/{*file}", get(graphiql::asset))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(metrics_routes)
        .route("/oauth/begin/{flow}", get(oauth_pages::begin))
        .route("/oauth/callback", get(oauth_pages::callback))
        .route(
            "/oauth/client-metadata.json",
            get(oauth_pages::client_metadata),
        )
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                // The route template, not the path: begin links carry a flow id.
                let route = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or("unmatched", |p| p.as_str())
                    .to_owned();
                tracing::info_span!("http", method = %request.method(), route = %route)
            }),
        );
    if !origins.is_empty() {
        let origins: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(Duration::from_secs(600)),
        );
    }
    (router, sockets)
}

/// How long a graceful shutdown waits for WebSockets to send their close frames.
const SOCKETS_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Serve until `shutdown` resolves, then stop accepting, close every WebSocket with 1001 and
/// wait for in-flight requests and for the sockets' close frames.
pub async fn serve(
    app: AppHandle,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing, closed) = watch::channel(false);
    let (router, sockets) = build(app, closed);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = closing.send(true);
        })
        .await;
    // Upgraded sockets are no longer the server's connections: wait for them separately.
    if served.is_ok() && !sockets.wait_closed(SOCKETS_CLOSE_WAIT).await {
        tracing::warn!(
            open = sockets.open(),
            "WebSockets still open after the shutdown wait"
        );
    }
    served
}

async fn graphql(
    State(state): State<HttpState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let mut request = request.into_inner();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok().and_then(access::bearer_token);
        let Some(token) = token else {
            return unauthenticated();
        };
        match access::authenticate(&state.app, token).await {
            Ok(principal) => request = request.data(principal),
            Err(domain::Error::Unauthenticated) => return unauthenticated(),
            Err(error) => {
                tracing::error!(%error, "authentication failed on a storage error");
                return (StatusCode::SERVICE_UNAVAILABLE, "service unavailable").into_response();
            }
        }
    }
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}

/// A presented but invalid token: 401 with a GraphQL-shaped body so clients see the code.
fn unauthenticated() -> Response {
    let body = serde_json::json!({
        "errors": [{
            "message": "authentication required: send a valid API token",
            "extensions": { "code": "UNAUTHENTICATED" }
        }]
    });
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(body),
    )
        .into_response()
}

/// Bytes read from a WebSocket at a time.
const WS_READ_BUFFER_BYTES: usize = 4 << 10;

/// Upgrade to a GraphQL WebSocket (see [`ws`]), unless as many as allowed are open already
/// (`503`, before any upgrade work) or no supported sub-protocol was asked for (`400`).
async fn graphql_ws(State(state): State<HttpState>, upgrade: WebSocketUpgrade) -> Response {
    let upgrade = upgrade.protocols(ws::Protocol::ALL);
    let Some(protocol) = upgrade
        .selected_protocol()
        .and_then(|name| name.to_str().ok())
        .and_then(ws::Protocol::from_name)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "ask for the graphql-transport-ws or graphql-ws sub-protocol",
        )
            .into_response();
    };
    let Some(slot) = state.sockets.reserve() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "too many open WebSockets",
        )
            .into_response();
    };
    let HttpState {
        app,
        schema,
        shutdown,
        ..
    } = state;
    let max_message = app.config.max_body_bytes;
    upgrade
        // A subscriber sends a few small messages and receives small events, but the default
        // buffers (128 KiB each way, per connection) would make ten thousand dashboards cost
        // over a gigabyte. Larger messages still arrive: the read buffer grows as needed.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| ws::serve(socket, protocol, app, schema, slot, shutdown))
}
