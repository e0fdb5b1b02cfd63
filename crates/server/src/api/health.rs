//! `/healthz` (the process serves) and `/readyz` (it can reach its metadata database, and whether
//! its writes are failing).

use axum::extract::State;
use axum::http::StatusCode;

use wharf_core::time::format_time;
use wharf_registry::Registry;

/// Liveness: answering at all is the answer.
pub async fn live() -> &'static str {
    "ok\n"
}

/// Readiness: the metadata database answers. Writes failing (a full disk) do not make the
/// replica unready — it still serves pulls, and every replica over a shared full store would
/// leave the load balancer with none — but the body says so, as do the metrics
/// (`wharf_writes_failing`) and the admin state.
pub async fn ready(State(registry): State<Registry>) -> (StatusCode, String) {
    if let Err(error) = registry.check_health().await {
        tracing::warn!(%error, "not ready");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the metadata database does not answer\n".to_owned(),
        );
    }
    match registry.write_health().failing() {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(failing) => (
            StatusCode::OK,
            format!(
                "ok: pulls are served\nwrites failing since {} ({} failed, the latest {}): {}\n",
                format_time(failing.since),
                failing.failures,
                match failing.kind {
                    wharf_registry::WriteFailure::StorageFull => "because storage is full",
                    wharf_registry::WriteFailure::Internal => "with an internal error",
                    wharf_registry::WriteFailure::DatabaseUnavailable => {
                        "because the metadata database is unreachable"
                    }
                    wharf_registry::WriteFailure::BlobStorageUnavailable => {
                        "because the blob storage is unreachable or throttling"
                    }
                },
                failing.message
            ),
        ),
    }
}
