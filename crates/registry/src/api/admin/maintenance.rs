//! `POST /api/v1/gc`: one garbage collection, now. Refused with 503 and `Retry-After` while the
//! registry is read-only (garbage collection writes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AdminError;
use super::state::READ_ONLY_RETRY_AFTER;
use crate::api::AppState;
use crate::gate::WriteRefused;
use crate::metadata::now_millis;
use crate::registry::RegistryError;

pub(super) async fn collect_garbage(State(state): State<AppState>) -> Result<Response, AdminError> {
    match state
        .registry
        .collect_garbage(state.admin.gc, now_millis())
        .await
    {
        Ok(report) => Ok(axum::Json(report).into_response()),
        Err(RegistryError::Refused(WriteRefused::ReadOnly { reason, .. })) => Err(AdminError {
            retry_after: Some(READ_ONLY_RETRY_AFTER),
            ..AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                format!(
                    "the registry is read-only ({reason}): garbage collection waits until it is read-write"
                ),
            )
        }),
        Err(RegistryError::Refused(WriteRefused::Cancelled)) => Err(AdminError {
            retry_after: Some(5),
            ..AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "garbage collection was cancelled",
            )
        }),
        Err(error) => Err(AdminError::internal(error)),
    }
}
