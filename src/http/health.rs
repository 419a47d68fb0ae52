//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::HttpState;

/// The process is up and serving.
pub async fn healthz() -> impl IntoResponse {
    "ok"
}

/// The process can serve requests: the database answers and every background task's last
/// round succeeded. The body names what is wrong, one line each.
pub async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if let Err(error) = state.app.db.ping().await {
        tracing::warn!(%error, "readiness check failed");
        problems.push("database unavailable".to_owned());
    }
    for task in state.app.tasks.report() {
        if !task.healthy {
            problems.push(format!(
                "background task {} failing ({} rounds in a row)",
                task.name, task.failures_in_a_row
            ));
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n"))
    }
}
