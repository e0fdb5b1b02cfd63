//! `POST /api/v1/gc`: one garbage collection, now. Refused with 503 and `Retry-After` while the
//! registry is read-only (garbage collection writes).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminError;
use crate::api::AppState;
use wharf_config::HumanDuration;
use wharf_core::time::now_millis;
use wharf_registry::{GcSettings, RegistryError};

/// Settings that replace the server's for this collection (as `wharf gc` sends its own).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcRequest {
    grace: Option<HumanDuration>,
    upload_expiry: Option<HumanDuration>,
}

pub(super) async fn collect_garbage(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let request: GcRequest = if body.is_empty() {
        GcRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AdminError::invalid(format!(
                "the body, if any, must be JSON {{\"grace\": \"1h\", \"upload_expiry\": \"1d\"}}: {e}"
            ))
        })?
    };
    let settings = GcSettings {
        grace: request.grace.map_or(state.admin.gc.grace, |g| g.0),
        upload_expiry: request
            .upload_expiry
            .map_or(state.admin.gc.upload_expiry, |e| e.0),
    };
    match state.registry.collect_garbage(settings, now_millis()).await {
        Ok(report) => Ok(axum::Json(report).into_response()),
        Err(RegistryError::Refused(refused)) => Err(AdminError::refused(
            refused,
            "garbage collection waits until it is read-write",
        )),
        Err(error) => Err(AdminError::internal(error)),
    }
}
