//! `/healthz` (the process serves) and `/readyz` (it can reach its metadata database).

use axum::extract::State;
use axum::http::StatusCode;

use wharf_registry::Registry;

/// Liveness: answering at all is the answer.
pub async fn live() -> &'static str {
    "ok\n"
}

/// Readiness: the metadata database answers.
pub async fn ready(State(registry): State<Registry>) -> (StatusCode, &'static str) {
    match registry.check_health().await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the metadata database does not answer\n",
            )
        }
    }
}
