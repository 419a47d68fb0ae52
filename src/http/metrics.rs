//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics::Metrics`], plus the
//! servers by status, counted from the database at scrape time, and the pool's statement
//! count (read after that count, so a scrape includes its own query).
//!
//! Who may scrape is the operator's choice. By default the metrics are open on the main
//! listener, as a Prometheus scraper expects; they hold counts only (no id, URL or secret).
//! `--metrics-token` makes them require `Authorization: Bearer <token>` (compared in constant
//! time; a request without it gets 401), and `--metrics-bind` serves them on a listener of
//! their own, for an address only the scraper reaches; the main listener then answers 404.

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::app::AppHandle;
use crate::crypto;
use crate::domain::{access, status};

/// The `/metrics` route, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>(app: AppHandle) -> Router<S> {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// What the main listener serves of the metrics: the route, unless they have a listener of
/// their own.
pub fn main_listener_routes<S: Clone + Send + Sync + 'static>(app: &AppHandle) -> Router<S> {
    if app.config.metrics_bind.is_some() {
        Router::new()
    } else {
        router(app.clone())
    }
}

/// Serve only `/metrics` on `listener` (the `--metrics-bind` address) until `shutdown`
/// resolves; every other path is 404.
pub async fn serve(
    app: AppHandle,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router::<()>(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serve the metrics.
async fn metrics(State(app): State<AppHandle>, headers: HeaderMap) -> Response {
    if let Some(expected) = &app.config.metrics_token
        && !presents(&headers, expected)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
            "the metrics require a bearer token",
        )
            .into_response();
    }
    let counts = match status::counts(&app).await {
        Ok(counts) => counts,
        Err(error) => {
            tracing::warn!(%error, "cannot count servers for metrics");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(
            &counts,
            app.db.statement_count(),
            app.sessions.open_sessions(),
        ) + &crate::metrics::render_tasks(&app.tasks.report()),
    )
        .into_response()
}

/// Whether the request carries `Authorization: Bearer <expected>`. Both sides are hashed
/// before the constant-time comparison, so neither the content nor the length of the token
/// shows in the time it takes.
fn presents(headers: &HeaderMap, expected: &crypto::Secret) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(access::bearer_token)
    else {
        return false;
    };
    crypto::constant_time_eq(
        crypto::sha256_hex(presented).as_bytes(),
        crypto::sha256_hex(expected.expose()).as_bytes(),
    )
}
