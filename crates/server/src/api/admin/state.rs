//! `GET /api/v1/state`, `PUT`/`DELETE /api/v1/state/holds/{name}`, `GET /api/v1/events`.

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Actor, AdminError};
use crate::api::AppState;
use wharf_config::HumanDuration;
use wharf_gate::{HoldError, HoldName, HoldRequest, HoldSource};

/// The longest `?wait=` honoured.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// `GET /api/v1/state`; with `?wait=DURATION`, answers once read-only is in effect on every
/// replica or the wait is over (`202` then, if it is not).
pub(super) async fn show(
    State(state): State<AppState>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, AdminError> {
    let status = match wait_duration(query)? {
        Some(wait)
            if !state
                .registry
                .gate()
                .wait_for_read_only_everywhere(wait)
                .await =>
        {
            StatusCode::ACCEPTED
        }
        _ => StatusCode::OK,
    };
    Ok((status, axum::Json(state.registry.state_report().await)).into_response())
}

/// The `?wait=` of a request, at most [`MAX_WAIT`].
fn wait_duration(query: WaitQuery) -> Result<Option<Duration>, AdminError> {
    Ok(query
        .wait
        .map(|w| w.parse::<HumanDuration>().map_err(AdminError::invalid))
        .transpose()?
        .map(|w| w.0.min(MAX_WAIT)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    reason: String,
    #[serde(default)]
    ttl: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WaitQuery {
    wait: Option<String>,
}

fn hold_name(name: &str) -> Result<HoldName, AdminError> {
    name.parse()
        .map_err(|e: wharf_gate::holds::HoldNameError| AdminError::invalid(e.to_string()))
}

fn hold_error(error: HoldError) -> AdminError {
    match error {
        HoldError::Reason | HoldError::Ttl => AdminError::invalid(error.to_string()),
        HoldError::ManagedByConfig => {
            AdminError::new(StatusCode::CONFLICT, "CONFLICT", error.to_string())
        }
        HoldError::Store(e) => AdminError::internal(e),
    }
}

pub(super) async fn set_hold(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(name): Path<String>,
    Query(query): Query<WaitQuery>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let name = hold_name(&name)?;
    let body: HoldBody = serde_json::from_slice(&body).map_err(|e| {
        AdminError::invalid(format!(
            "the body must be JSON {{\"reason\": \"...\", \"ttl\": \"2h\"}} (ttl optional): {e}"
        ))
    })?;
    let wait = wait_duration(query)?;
    let gate = state.registry.gate();
    let request = HoldRequest {
        name,
        reason: body.reason,
        ttl: body.ttl.map(|t| t.0),
        actor,
        source: HoldSource::Api,
    };
    let (hold, created) = gate.set_hold(request).await.map_err(hold_error)?;
    // With ?wait, 202 says the drain is still running (on some replica) when the wait ended.
    let status = match wait {
        Some(wait) if !gate.wait_for_read_only_everywhere(wait).await => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    let body =
        json!({ "hold": hold, "created": created, "state": state.registry.state_report().await });
    Ok((status, axum::Json(body)).into_response())
}

pub(super) async fn release_hold(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let name = hold_name(&name)?;
    let released = state
        .registry
        .gate()
        .release_hold(&name, &actor, HoldSource::Api)
        .await
        .map_err(hold_error)?;
    let Some(hold) = released else {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("there is no hold named {name}"),
        ));
    };
    let body = json!({ "released": hold, "state": state.registry.state_report().await });
    Ok(axum::Json(body).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    limit: Option<u32>,
}

pub(super) async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, AdminError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = state
        .registry
        .gate()
        .events(limit)
        .await
        .map_err(AdminError::internal)?;
    Ok(axum::Json(json!({ "events": events })).into_response())
}

/// When read-only will be lifted is unknown; clients may look again after this many seconds.
pub(super) const READ_ONLY_RETRY_AFTER: u64 = 60;
