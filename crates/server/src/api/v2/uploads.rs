//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (open, monolithic or mount) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::{Call, empty};
use crate::api::headers::{self, DOCKER_CONTENT_DIGEST};
use crate::api::ranges::parse_content_range;
use wharf_core::digest::{Algorithm, Digest};
use wharf_core::reference::RepositoryName;
use wharf_core::role::Action;
use wharf_core::upload_id::UploadId;
use wharf_metadata::{BlobRecord, UploadSession};
use wharf_registry::{ChunkRange, MountOutcome, RegistryError};

pub(super) async fn start(
    call: &Call,
    repository: &RepositoryName,
    body: Body,
) -> Result<Response, RegistryError> {
    let registry = &call.registry;
    if let Some(mount) = &call.params.mount {
        let digest: Digest = mount.parse().map_err(RegistryError::digest)?;
        // A source the caller may not pull is never used (no blob is revealed): the client
        // gets a regular upload, as the spec says for a source that is not readable. Without
        // `from`, the registry looks for a repository the caller may pull that has the blob
        // (the spec's "automatic content discovery").
        let source = match &call.params.from {
            Some(from) if call.auth.may_pull(&call.caller, from) => Some(from.parse()?),
            Some(_) => None,
            None => {
                let readable = call.auth.listing_permissions(&call.caller).await?;
                registry
                    .find_mount_source(&digest, |candidate| {
                        readable
                            .as_ref()
                            .is_none_or(|p| p.allows(candidate.as_str(), Action::Pull))
                    })
                    .await?
            }
        };
        if let Some(from) = source {
            return Ok(
                match registry
                    .mount_or_open(repository, &digest, &from, &call.client)
                    .await?
                {
                    MountOutcome::Mounted(blob) => created(repository, &blob),
                    MountOutcome::Opened(session) => accepted(call, &session),
                },
            );
        }
    } else if let Some(digest) = &call.params.digest {
        let digest: Digest = digest.parse().map_err(RegistryError::digest)?;
        let blob = registry
            .upload_monolithic(repository, &call.client, &digest, body.into_data_stream())
            .await?;
        return Ok(created(repository, &blob));
    }
    let algorithm = match call.params.digest_algorithm.as_deref() {
        None => Algorithm::Sha256,
        Some(name) => Algorithm::from_name(name).ok_or_else(|| {
            RegistryError::DigestInvalid(format!(
                "unsupported digest-algorithm {name:?}: use sha256 or sha512"
            ))
        })?,
    };
    let session = registry
        .open_upload(repository, &call.client, algorithm)
        .await?;
    Ok(accepted(call, &session))
}

pub(super) async fn status(
    call: &Call,
    repository: &RepositoryName,
    id: &str,
) -> Result<Response, RegistryError> {
    let session = call
        .registry
        .upload_status(repository, &upload_id(id)?)
        .await?;
    let mut response = empty(StatusCode::NO_CONTENT);
    headers::upload_progress(
        response.headers_mut(),
        repository,
        &session.id,
        session.received,
    );
    Ok(response)
}

pub(super) async fn patch(
    call: &Call,
    repository: &RepositoryName,
    id: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    let id = upload_id(id)?;
    let range = chunk_range(call)?;
    let session = call
        .registry
        .append_chunk(repository, &id, range, body.into_data_stream())
        .await?;
    Ok(accepted(call, &session))
}

pub(super) async fn put(
    call: &Call,
    repository: &RepositoryName,
    id: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    let id = upload_id(id)?;
    let digest = call.params.digest.as_deref().ok_or_else(|| {
        RegistryError::DigestInvalid(
            "completing an upload needs the ?digest= query parameter".to_owned(),
        )
    })?;
    let digest: Digest = digest.parse().map_err(RegistryError::digest)?;
    let range = chunk_range(call)?;
    let blob = call
        .registry
        .complete_upload(repository, &id, &digest, range, body.into_data_stream())
        .await?;
    Ok(created(repository, &blob))
}

pub(super) async fn cancel(
    call: &Call,
    repository: &RepositoryName,
    id: &str,
) -> Result<Response, RegistryError> {
    call.registry
        .cancel_upload(repository, &upload_id(id)?)
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// An id Wharf never issued names no upload.
fn upload_id(id: &str) -> Result<UploadId, RegistryError> {
    id.parse().map_err(|_| RegistryError::BlobUploadUnknown)
}

fn chunk_range(call: &Call) -> Result<Option<ChunkRange>, RegistryError> {
    call.header(header::CONTENT_RANGE)
        .map(|value| {
            parse_content_range(value).ok_or_else(|| {
                RegistryError::BlobUploadInvalid(format!(
                    "invalid Content-Range {value:?}: expected <start>-<end>"
                ))
            })
        })
        .transpose()
}

/// `202 Accepted` for an upload session in progress; where blob storage keeps uploads in
/// parts (S3), with the part size as the smallest chunk worth sending (`OCI-Chunk-Min-Length`,
/// from the distribution spec's main branch): smaller chunks are staged until a part fills.
fn accepted(call: &Call, session: &UploadSession) -> Response {
    let mut response = empty(StatusCode::ACCEPTED);
    headers::upload_progress(
        response.headers_mut(),
        &session.repository,
        &session.id,
        session.received,
    );
    if let Some(length) = call.registry.blobs().chunk_min_length() {
        headers::insert(
            response.headers_mut(),
            headers::OCI_CHUNK_MIN_LENGTH,
            length,
        );
    }
    response
}

/// `201 Created` for a blob now in the repository.
fn created(repository: &RepositoryName, blob: &BlobRecord) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let out = response.headers_mut();
    headers::insert(
        out,
        header::LOCATION,
        headers::blob_location(repository, &blob.digest),
    );
    headers::insert(out, DOCKER_CONTENT_DIGEST, &blob.digest);
    response
}
