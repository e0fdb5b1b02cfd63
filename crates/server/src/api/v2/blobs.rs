//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::{Call, empty};
use crate::api::headers::{self, DOCKER_CONTENT_DIGEST};
use crate::api::ranges::{RangeRequest, parse_range};
use wharf_core::digest::Digest;
use wharf_core::reference::RepositoryName;
use wharf_registry::RegistryError;

pub(super) async fn get(
    call: &Call,
    repository: &RepositoryName,
    digest: &str,
) -> Result<Response, RegistryError> {
    let digest: Digest = digest.parse().map_err(RegistryError::digest)?;
    let blob = call.registry.blob(repository, &digest).await?;
    let (status, range) = match parse_range(call.header(header::RANGE), blob.size) {
        RangeRequest::Full => (StatusCode::OK, 0..blob.size),
        RangeRequest::Partial(range) => (StatusCode::PARTIAL_CONTENT, range),
        RangeRequest::Unsatisfiable => {
            return Err(RegistryError::RangeNotSatisfiable { size: blob.size });
        }
    };
    // Storage configured to redirect downloads (S3's presigned URLs) is read by the client
    // itself, ranges and all; a HEAD is still answered here.
    if !call.is_head()
        && let Some(url) = call
            .registry
            .blobs()
            .download_url(&blob.storage_key)
            .await?
    {
        let mut response = empty(StatusCode::TEMPORARY_REDIRECT);
        let out = response.headers_mut();
        headers::insert(out, header::LOCATION, url);
        headers::insert(out, DOCKER_CONTENT_DIGEST, &digest);
        return Ok(response);
    }
    let body = if call.is_head() {
        Body::empty()
    } else {
        Body::from_stream(call.registry.read_blob(&blob, range.clone()).await?)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    headers::insert(out, header::CONTENT_TYPE, "application/octet-stream");
    headers::insert(out, header::CONTENT_LENGTH, range.end - range.start);
    headers::insert(out, header::ACCEPT_RANGES, "bytes");
    headers::insert(out, header::ETAG, format!("\"{digest}\""));
    // Content under a digest never changes.
    headers::insert(out, header::CACHE_CONTROL, "max-age=31536000");
    if status == StatusCode::PARTIAL_CONTENT {
        let content_range = format!("bytes {}-{}/{}", range.start, range.end - 1, blob.size);
        headers::insert(out, header::CONTENT_RANGE, content_range);
    }
    headers::insert(out, DOCKER_CONTENT_DIGEST, &digest);
    Ok(response)
}

pub(super) async fn delete(
    call: &Call,
    repository: &RepositoryName,
    digest: &str,
) -> Result<Response, RegistryError> {
    let digest: Digest = digest.parse().map_err(RegistryError::digest)?;
    call.registry.delete_blob(repository, &digest).await?;
    let mut response = empty(StatusCode::ACCEPTED);
    headers::insert(response.headers_mut(), DOCKER_CONTENT_DIGEST, &digest);
    Ok(response)
}
