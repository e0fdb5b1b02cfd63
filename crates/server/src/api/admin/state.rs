//! `GET /api/v1/state`, `PUT`/`DELETE /api/v1/state/holds/{name}`, `GET /api/v1/events`.

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Actor, AdminError};
use crate::api::AppState;
use wharf_config::HumanDuration;
use wharf_core::time::Millis;
use wharf_core::time::{serialize_optional_time, serialize_time};
use wharf_gate::{
    Hold, HoldError, HoldName, HoldRequest, HoldSource, Mode, ReplicaReport, Transition, WriteGate,
};
use wharf_registry::{Registry, WritesFailing};

/// The longest `?wait=` honoured.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The registry's state as `GET /api/v1/state` reports it.
#[derive(Debug, Serialize)]
pub struct StateReport {
    /// `read-only` while a hold exists, else `read-write`.
    desired: &'static str,
    /// The registry's effective mode: `read-only` only once it is in effect on every replica,
    /// `draining` while a replica drains or has yet to apply the holds.
    effective: Mode,
    /// Whether read-only is in effect on every live replica: each is read-only and has applied
    /// the latest change of the holds.
    read_only_in_effect: bool,
    /// Live replicas read-only (with the latest holds) over all live replicas, such as `3/3`.
    replicas_read_only: String,
    /// Since when the effective mode holds (on the replica answering).
    #[serde(serialize_with = "serialize_time")]
    since: Millis,
    holds: Vec<Hold>,
    /// The latest change of the holds, which each replica says it has applied.
    holds_version: Option<u64>,
    /// Writes holding a permit, over every live replica.
    writes_in_flight: u64,
    uploads_open: Option<u64>,
    /// While draining: when it started, and the settings.
    drain: Option<DrainReport>,
    last_transition: Option<Transition>,
    /// Every replica with a row in the database, live or lost.
    replicas: Vec<ReplicaReport>,
    /// Set when the other replicas' state could not be read: the report covers this replica
    /// only, and says nothing is in effect everywhere.
    replicas_unknown: Option<String>,
    /// Set while writes fail inside the registry (its storage full, say): since when and why.
    writes_failing: Option<WritesFailing>,
}

#[derive(Debug, Serialize)]
struct DrainReport {
    #[serde(serialize_with = "serialize_time")]
    started_at: Millis,
    #[serde(serialize_with = "serialize_optional_time")]
    hold_at: Option<Millis>,
    timeout: String,
    push_grace: String,
    #[serde(serialize_with = "serialize_time")]
    deadline: Millis,
}

/// Builds the state report of `registry`.
async fn report(registry: &Registry) -> StateReport {
    let gate: &WriteGate = registry.gate();
    // The rest of the report is in memory: a database that does not answer only loses this.
    let uploads_open = match registry.open_uploads().await {
        Ok(open) => Some(open),
        Err(error) => {
            tracing::warn!(%error, "cannot count the open uploads for the state report");
            None
        }
    };
    let (status, replicas, in_effect, replicas_read_only, holds_version, replicas_unknown) =
        match gate.cluster_status().await {
            Ok(cluster) => (
                cluster.this.clone(),
                cluster.replicas.clone(),
                cluster.read_only_in_effect(),
                format!("{}/{}", cluster.read_only, cluster.live),
                Some(cluster.holds_version),
                None,
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot read the replicas' state for the state report");
                let own = ReplicaReport {
                    state: gate.replica_state(),
                    live: true,
                    this: true,
                };
                (
                    gate.status(),
                    vec![own],
                    false,
                    "?".to_owned(),
                    None,
                    Some(format!("cannot read the replicas' state: {error}")),
                )
            }
        };
    let snapshot = &status.snapshot;
    let live = || replicas.iter().filter(|r| r.live);
    let effective = if in_effect {
        Mode::ReadOnly
    } else if snapshot.desired_read_only() || live().any(|r| r.state.mode == Mode::Draining) {
        Mode::Draining
    } else {
        Mode::ReadWrite
    };
    let millis = |d: Duration| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX);
    StateReport {
        desired: if snapshot.desired_read_only() {
            "read-only"
        } else {
            "read-write"
        },
        effective,
        read_only_in_effect: in_effect,
        replicas_read_only,
        since: snapshot.since,
        holds: snapshot.holds.clone(),
        holds_version,
        writes_in_flight: live().map(|r| r.state.writes_in_flight).sum(),
        uploads_open,
        drain: status.drain_started.map(|started| DrainReport {
            started_at: started,
            hold_at: snapshot.hold_at,
            timeout: HumanDuration(status.settings.timeout).to_string(),
            push_grace: HumanDuration(status.settings.push_grace).to_string(),
            deadline: started + millis(status.settings.timeout),
        }),
        last_transition: snapshot.last_transition.clone(),
        replicas,
        replicas_unknown,
        writes_failing: registry.write_health().failing(),
    }
}

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
    Ok((status, axum::Json(report(&state.registry).await)).into_response())
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
    let body = json!({ "hold": hold, "created": created, "state": report(&state.registry).await });
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
    let body = json!({ "released": hold, "state": report(&state.registry).await });
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
