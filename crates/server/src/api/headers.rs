//! Header names of the Distribution API and the headers several endpoints share.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use wharf_core::digest::Digest;
use wharf_core::reference::RepositoryName;
use wharf_core::upload_id::UploadId;

/// The digest of the content a response is about.
pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// The upload session a response is about.
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// The smallest chunk of a chunked upload the registry wants (all but the last).
pub const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
/// Sent on every `/v2/` response so clients know they talk to a registry.
pub const DOCKER_DISTRIBUTION_API_VERSION: HeaderName =
    HeaderName::from_static("docker-distribution-api-version");
/// The subject of a manifest just pushed.
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// A tag a manifest push applied, one header per tag (OCI distribution specification v1.2).
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
/// Which filters a referrers response applied.
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Inserts a header whose value is built from validated parts (digests, names, numbers), which
/// are always valid header text.
pub fn insert(headers: &mut HeaderMap, name: HeaderName, value: impl std::fmt::Display) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, value);
    }
}

/// The path of a blob.
pub fn blob_location(repository: &RepositoryName, digest: &Digest) -> String {
    format!("/v2/{repository}/blobs/{digest}")
}

/// The path of a manifest.
pub fn manifest_location(repository: &RepositoryName, digest: &Digest) -> String {
    format!("/v2/{repository}/manifests/{digest}")
}

/// `Location`, `Range` and `Docker-Upload-UUID` of an upload session holding `received` bytes.
pub fn upload_progress(
    headers: &mut HeaderMap,
    repository: &RepositoryName,
    id: &UploadId,
    received: u64,
) {
    insert(
        headers,
        axum::http::header::LOCATION,
        format!("/v2/{repository}/blobs/uploads/{id}"),
    );
    // The inclusive range of bytes received; an empty upload is reported as `0-0`, as clients
    // of Distribution expect.
    insert(
        headers,
        axum::http::header::RANGE,
        format!("0-{}", received.saturating_sub(1)),
    );
    insert(headers, DOCKER_UPLOAD_UUID, id);
}
