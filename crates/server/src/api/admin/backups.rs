//! Backups through the admin API, so `wharf backup create` works from any machine:
//!
//! - `POST /api/v1/backups` takes the snapshot (hold, drain, snapshot, lease, release) and
//!   answers what it holds and how long the registry was read-only;
//! - `GET /api/v1/backups/{id}/metadata` streams the snapshot;
//! - `GET /api/v1/backups/{id}/blobs?last=&n=` lists the blobs it references, by digest;
//! - `GET /api/v1/backups/{id}/blobs/{digest}` streams one;
//! - `PUT /api/v1/backups/{id}` renews the lease (`{"lease_ttl": "10m"}`) while the copy goes on;
//! - `DELETE /api/v1/backups/{id}` ends the backup (releases the lease).

use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Actor, AdminError};
use crate::api::AppState;
use wharf_backup::{BackupSource, LocalSource};
use wharf_config::HumanDuration;
use wharf_core::digest::Digest;
use wharf_gate::HoldSource;
use wharf_registry::backups::{BackupError, BackupId, SnapshotOptions};

/// The most blobs one listing page has.
const MAX_PAGE: u32 = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotRequest {
    hold_ttl: Option<HumanDuration>,
    lease_ttl: Option<HumanDuration>,
    wait: Option<HumanDuration>,
}

fn backup_error(error: BackupError) -> AdminError {
    match error {
        BackupError::Options(_) => AdminError::invalid(error.to_string()),
        BackupError::DrainTimeout(_) => AdminError {
            retry_after: Some(60),
            ..AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                error.to_string(),
            )
        },
        BackupError::UnknownBackup(_) => {
            AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", error.to_string())
        }
        other => AdminError::internal(other),
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let request: SnapshotRequest = if body.is_empty() {
        SnapshotRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AdminError::invalid(format!(
                "the body, if any, must be JSON {{\"hold_ttl\": \"15m\", \"lease_ttl\": \"24h\", \"wait\": \"5m\"}}: {e}"
            ))
        })?
    };
    let defaults = SnapshotOptions::default();
    let positive = |value: Option<HumanDuration>, default: Duration, name: &str| match value {
        Some(HumanDuration(d)) if d.is_zero() => Err(AdminError::invalid(format!(
            "{name} must be longer than 0s"
        ))),
        Some(HumanDuration(d)) => Ok(d),
        None => Ok(default),
    };
    let options = SnapshotOptions {
        hold_ttl: positive(request.hold_ttl, defaults.hold_ttl, "hold_ttl")?,
        lease_ttl: positive(request.lease_ttl, defaults.lease_ttl, "lease_ttl")?,
        wait: positive(request.wait, defaults.wait, "wait")?,
        actor,
        source: HoldSource::Api,
    };
    // In its own task: the hold must be released, and the snapshot finished or undone, even if
    // the client goes away meanwhile (which drops this handler).
    let registry = state.registry.clone();
    let task = tokio::spawn(async move { registry.take_backup_snapshot(&options).await });
    let mut waiting = Abandonable {
        registry: state.registry.clone(),
        task: Some(task),
    };
    let taken = match waiting.task.as_mut() {
        Some(task) => task.await,
        None => unreachable!("just set"),
    };
    waiting.task = None;
    let snapshot = taken.map_err(AdminError::internal)?.map_err(backup_error)?;
    Ok((StatusCode::CREATED, axum::Json(snapshot)).into_response())
}

/// A snapshot being taken for a client; if the client is gone before it is done, the backup is
/// ended as soon as it is (nobody will copy it).
struct Abandonable {
    registry: wharf_registry::Registry,
    task: Option<
        tokio::task::JoinHandle<Result<wharf_registry::backups::BackupSnapshot, BackupError>>,
    >,
}

impl Drop for Abandonable {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            let registry = self.registry.clone();
            tokio::spawn(async move {
                if let Ok(Ok(snapshot)) = task.await {
                    tracing::warn!(backup = %snapshot.id, "the client left before its backup snapshot was ready; ending it");
                    let _ = registry.end_backup(&snapshot.id).await;
                }
            });
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RenewRequest {
    lease_ttl: HumanDuration,
}

pub(super) async fn renew(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::Json(request): axum::Json<RenewRequest>,
) -> Result<Response, AdminError> {
    if request.lease_ttl.0.is_zero() {
        return Err(AdminError::invalid("lease_ttl must be longer than 0s"));
    }
    state
        .registry
        .renew_backup(&backup_id(&id)?, request.lease_ttl.0)
        .await
        .map_err(backup_error)?;
    Ok(axum::Json(json!({ "renewed": id })).into_response())
}

fn backup_id(id: &str) -> Result<BackupId, AdminError> {
    id.parse().map_err(backup_error)
}

pub(super) async fn metadata(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let source = LocalSource::new(state.registry.clone(), backup_id(&id)?)
        .await
        .map_err(backup_error)?;
    let content = source.metadata().await.map_err(backup_error)?;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.sqlite3")],
        Body::from_stream(content),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    last: Option<String>,
    n: Option<u32>,
}

pub(super) async fn blobs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, AdminError> {
    let source = LocalSource::new(state.registry.clone(), backup_id(&id)?)
        .await
        .map_err(backup_error)?;
    let last: Option<Digest> = query
        .last
        .map(|l| l.parse())
        .transpose()
        .map_err(|e: wharf_core::digest::DigestError| AdminError::invalid(e.to_string()))?;
    let limit = query.n.unwrap_or(1000).clamp(1, MAX_PAGE);
    let page = source
        .blobs(last.as_ref(), limit)
        .await
        .map_err(backup_error)?;
    let blobs: Vec<_> = page
        .into_iter()
        .map(|(digest, size)| json!({ "digest": digest, "size": size }))
        .collect();
    Ok(axum::Json(json!({ "blobs": blobs })).into_response())
}

pub(super) async fn blob(
    State(state): State<AppState>,
    Path((id, digest)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let source = LocalSource::new(state.registry.clone(), backup_id(&id)?)
        .await
        .map_err(backup_error)?;
    let digest: Digest = digest
        .parse()
        .map_err(|e: wharf_core::digest::DigestError| AdminError::invalid(e.to_string()))?;
    let content = source.blob(&digest).await.map_err(backup_error)?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(content),
    )
        .into_response())
}

pub(super) async fn end(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let ended = state
        .registry
        .end_backup(&backup_id(&id)?)
        .await
        .map_err(backup_error)?;
    if ended {
        Ok(axum::Json(json!({ "ended": id })).into_response())
    } else {
        Err(backup_error(BackupError::UnknownBackup(id)))
    }
}
