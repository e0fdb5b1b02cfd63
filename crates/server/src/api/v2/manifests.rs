//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;

use super::{Call, empty};
use crate::api::headers::{self, DOCKER_CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG};
use wharf_core::manifest;
use wharf_core::reference::{Reference, ReferenceError, RepositoryName, Tag};
use wharf_registry::RegistryError;

/// Parses a reference in a read or delete: a malformed tag names nothing (404), a malformed
/// digest is a bad request (400).
fn existing_reference(reference: &str) -> Result<Reference, RegistryError> {
    reference.parse().map_err(|e| match e {
        ReferenceError::Tag(_) => RegistryError::ManifestUnknown,
        ReferenceError::Digest(e) => RegistryError::digest(e),
    })
}

pub(super) async fn get(
    call: &Call,
    repository: &RepositoryName,
    reference: &str,
) -> Result<Response, RegistryError> {
    let reference = existing_reference(reference)?;
    let record = call.registry.manifest(repository, &reference).await?;
    let accept = call
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if !manifest::is_acceptable(accept, &record.media_type) {
        return Err(RegistryError::ManifestUnknownForAccept(record.media_type));
    }
    let length = record.content.len();
    let body = if call.is_head() {
        Body::empty()
    } else {
        Body::from(record.content)
    };
    let mut response = Response::new(body);
    let out = response.headers_mut();
    headers::insert(out, header::CONTENT_TYPE, &record.media_type);
    headers::insert(out, header::CONTENT_LENGTH, length);
    headers::insert(out, header::ETAG, format!("\"{}\"", record.digest));
    headers::insert(out, DOCKER_CONTENT_DIGEST, &record.digest);
    Ok(response)
}

pub(super) async fn put(
    call: &Call,
    repository: &RepositoryName,
    reference: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    let reference: Reference = reference.parse().map_err(|e| match e {
        ReferenceError::Tag(e) => RegistryError::ManifestInvalid(e.to_string()),
        ReferenceError::Digest(e) => RegistryError::digest(e),
    })?;
    let also_tags = call
        .params
        .tags
        .iter()
        .map(|tag| {
            tag.parse::<Tag>()
                .map_err(|e| RegistryError::ManifestInvalid(format!("the tag parameter: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let content = read_bounded(call, body, call.registry.limits().max_manifest_size).await?;
    let stored = call
        .registry
        .put_manifest(
            repository,
            &reference,
            &also_tags,
            &call.client,
            call.header(header::CONTENT_TYPE),
            content,
        )
        .await?;
    let mut response = empty(StatusCode::CREATED);
    let out = response.headers_mut();
    headers::insert(
        out,
        header::LOCATION,
        headers::manifest_location(repository, &stored.digest),
    );
    headers::insert(out, DOCKER_CONTENT_DIGEST, &stored.digest);
    if let Some(subject) = &stored.subject {
        headers::insert(out, OCI_SUBJECT, subject);
    }
    // One `OCI-Tag` per tag applied (the specification's v1.2 push with tags), so a client
    // knows the registry took the `?tag=` parameters rather than ignored them.
    for tag in &stored.tags {
        if let Ok(value) = HeaderValue::from_str(tag.as_str()) {
            out.append(OCI_TAG, value);
        }
    }
    Ok(response)
}

pub(super) async fn delete(
    call: &Call,
    repository: &RepositoryName,
    reference: &str,
) -> Result<Response, RegistryError> {
    let reference = existing_reference(reference)?;
    call.registry
        .delete_manifest(repository, &reference)
        .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// Reads a request body of at most `limit` bytes, refusing a larger one without reading it all.
async fn read_bounded(call: &Call, body: Body, limit: u64) -> Result<Vec<u8>, RegistryError> {
    let too_large = || {
        RegistryError::TooLarge(format!(
            "the manifest exceeds the size limit of {limit} bytes"
        ))
    };
    let declared = call
        .header(header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut content = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::ManifestInvalid(format!("the request body could not be read: {e}"))
        })?;
        if (content.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        content.extend_from_slice(&chunk);
    }
    Ok(content)
}
