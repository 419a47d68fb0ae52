//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics::Metrics`], plus the
//! servers by status, counted from the database at scrape time, and the pool's statement
//! count (read after that count, so a scrape includes its own query).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::domain::status;

/// Serve the metrics.
pub async fn metrics(State(state): State<HttpState>) -> Response {
    let counts = match status::counts(&state.app).await {
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
        state.app.metrics.render(
            &counts,
            state.app.db.statement_count(),
            state.app.sessions.open_sessions(),
        ) + &crate::metrics::render_tasks(&state.app.tasks.report()),
    )
        .into_response()
}
