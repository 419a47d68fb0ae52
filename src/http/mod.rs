//! The HTTP surface: the router, GraphQL over HTTP and WebSocket, GraphiQL, health endpoints,
//! and the built-in status console at `/`.
//!
//! Handlers are thin: authenticate, call the schema or one domain function, answer. The
//! request body limit and CORS (configured app origins only) apply to every route. Request
//! logs carry the method, path and status only, never a query string or a header.

mod console;
mod embedded;
mod fanout;
mod graphiql;
mod health;
pub mod metrics;
pub mod oauth_pages;
mod trace;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultOnResponse, OnResponse as _, TraceLayer};
use tracing::Instrument as _;

use crate::app::{App, AppHandle};
use crate::domain::{self, access};
use crate::graphql::documents::{self, Checked};
use crate::graphql::json::{self, Prewritten};
use crate::graphql::{ApiSchema, build_checked_schema, build_schema};

/// State shared by the handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The application.
    pub app: AppHandle,
    /// The GraphQL schema.
    pub schema: ApiSchema,
    /// The same schema for requests known to pass validation.
    pub checked_schema: ApiSchema,
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
    let checked_schema = build_checked_schema(app.clone());
    let max_body = app.config.max_body_bytes;
    let origins = app.config.app_origins.clone();
    let metrics_routes = metrics::main_listener_routes(&app);
    let sockets = ws::Sockets::start(&app);
    let state = HttpState {
        app,
        schema,
        checked_schema,
        shutdown,
        sockets: sockets.clone(),
    };
    // Every route but `POST /graphql` has its body capped by the layer; `/graphql` reads its
    // body itself, so that a body over the limit is answered like any other GraphQL error.
    let capped = Router::new()
        .route("/", get(console::index))
        .route("/console.js", get(console::script))
        .route("/console/identity.json", get(console::identity))
        .route("/console.css", get(console::style))
        .route("/favicon.svg", get(console::icon))
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
        .layer(RequestBodyLimitLayer::new(max_body));
    let mut router = Router::new()
        .route("/graphql", get(graphiql::page).post(graphql))
        .merge(capped)
        .with_state(state)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::request_span)
                .on_response(
                    |response: &Response, latency: Duration, span: &tracing::Span| {
                        trace::record_status(response.status(), span);
                        DefaultOnResponse::default().on_response(response, latency, span);
                    },
                ),
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

/// `POST /graphql`. Every answer is a GraphQL response with `extensions.code`, including the
/// failures that never reach the schema: a body that is not JSON (`400`), of another content
/// type (`415`) or over the limit (`413`), all `BAD_USER_INPUT`. A missing token lets the request
/// run (a field that needs a caller fails `UNAUTHENTICATED`); a bad one stops it. Either way, a
/// response that holds an `UNAUTHENTICATED` error is a `401` with `WWW-Authenticate: Bearer`, so
/// missing and bad tokens get the same status.
async fn graphql(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let app = &state.app;
    if !is_json(&headers) {
        return refused(
            app,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_USER_INPUT",
            "send the request as JSON, with Content-Type: application/json",
        );
    }
    let max_body = app.config.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, max_body).await else {
        return refused(
            app,
            StatusCode::PAYLOAD_TOO_LARGE,
            "BAD_USER_INPUT",
            &format!("the request body is larger than {max_body} bytes"),
        );
    };
    let Ok(request) = serde_json::from_slice::<async_graphql::Request>(&bytes) else {
        return refused(
            app,
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "the request body is not a GraphQL request in JSON ({\"query\": …, \"variables\": …})",
        );
    };
    let principal = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let Some(token) = value.to_str().ok().and_then(access::bearer_token) else {
                return refused(app, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", BAD_TOKEN);
            };
            match access::authenticate(app, token).await {
                Ok(principal) => Some(principal),
                Err(domain::Error::Unauthenticated) => {
                    return refused(app, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", BAD_TOKEN);
                }
                Err(error) => {
                    let what = "authentication failed on a storage error";
                    return internal(app, StatusCode::SERVICE_UNAVAILABLE, what, &error);
                }
            }
        }
    };
    let span = trace::operation_span(&request);
    let (mut request, checked) = crate::graphql::prepare(app, request, principal);
    // Pages may be written as JSON ahead of the response where no values will be merged.
    let prewritten = request
        .parsed_query()
        .is_ok_and(json::keys_are_unique)
        .then(|| Arc::new(Prewritten::default()));
    if let Some(prewritten) = &prewritten {
        request = request.data(prewritten.clone());
    }
    let schema = match checked {
        Checked::Before => {
            app.metrics.validation_remembered();
            &state.checked_schema
        }
        Checked::Unknown(_) => &state.schema,
    };
    let mut response = schema.execute(request).instrument(span.clone()).await;
    if let Checked::Unknown(Some(run)) = checked
        && response.errors.is_empty()
    {
        documents::passed(run);
    }
    crate::graphql::finish(app, &mut response);
    trace::record_response(&span, &response);
    let unauthenticated = response.errors.iter().any(|error| {
        error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .is_some_and(|code| *code == async_graphql::Value::from("UNAUTHENTICATED"))
    });
    let mut http = match graphql_response(response, prewritten.as_deref()) {
        Ok(http) => http,
        Err(error) => {
            let what = "a response could not be encoded";
            return internal(app, StatusCode::INTERNAL_SERVER_ERROR, what, &error);
        }
    };
    if unauthenticated {
        *http.status_mut() = StatusCode::UNAUTHORIZED;
        http.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    http
}

/// The HTTP answer carrying `response`, as async-graphql's own responder builds it (media
/// type, `Cache-Control` of an answer without errors, the headers resolvers set), with the body
/// written by [`json::response_bytes`] (with the values `prewritten` holds in place).
fn graphql_response(
    mut response: async_graphql::Response,
    prewritten: Option<&Prewritten>,
) -> serde_json::Result<Response> {
    let body = json::response_bytes(&response, prewritten)?;
    let mut http = Response::new(Body::from(body));
    let headers = http.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/graphql-response+json"),
    );
    if response.is_ok()
        && let Some(cache_control) = response.cache_control.value()
        && let Ok(value) = HeaderValue::from_str(&cache_control)
    {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.extend(std::mem::take(&mut response.http_headers));
    Ok(http)
}

const BAD_TOKEN: &str =
    "authentication required: send a valid API token or identity-provider token";

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// An `INTERNAL` answer with a fresh error id, logged with `what` went wrong and `error`.
fn internal(app: &App, status: StatusCode, what: &str, error: &dyn std::fmt::Display) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(error_id = %id, %error, "{what}");
    refused(
        app,
        status,
        "INTERNAL",
        &format!("internal error (id {id})"),
    )
}

/// A request refused before it reached the schema, answered as a GraphQL response with one
/// coded error (and counted like any other).
fn refused(app: &App, status: StatusCode, code: &'static str, message: &str) -> Response {
    app.metrics.graphql_request([code]);
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Bytes read from a WebSocket at a time, and kept allocated per socket for reading: clients
/// send a `connection_init` and a few `subscribe`s of a few hundred bytes each.
const WS_READ_BUFFER_BYTES: usize = 512;

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
    // With trace export on, the socket's operations are children of the upgrade request's
    // span (which continues the client's trace context); the socket runs on a task of its own.
    let request_span = if crate::telemetry::exporting() {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    };
    upgrade
        // A subscriber sends a few small messages and receives small events, but the default
        // buffers (128 KiB each way, per connection) would make ten thousand dashboards cost
        // over a gigabyte. Larger messages still arrive: the read buffer grows as needed.
        // Nothing is buffered for writing: each message goes out as it is sent.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            ws::serve(socket, protocol, app, schema, slot, shutdown).instrument(request_span)
        })
}
