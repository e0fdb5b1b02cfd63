//! Turning a [`RegistryError`] into the OCI error response: the status, the error code, a
//! message that says what to do, and the headers some errors need.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Refusal;
use super::headers;
use wharf_gate::WriteRefused;
use wharf_registry::{RegistryError, WriteFailure};

/// What a client is told when the metadata database cannot be reached (the details, which name
/// the database's address, go to the log).
pub const DATABASE_UNAVAILABLE: &str = "the registry's metadata database is unreachable, so the request could not be served; \
     retry in a moment";

/// What a client is told when the blob storage (S3) cannot be reached or keeps throttling after
/// the retries that are safe (the details, which name the endpoint, go to the log).
pub const BLOB_STORAGE_UNAVAILABLE: &str = "the registry's blob storage is unreachable or throttling requests, so the request could not be served; \
     retry in a moment";

/// The status and OCI error code of each error.
fn status_and_code(error: &RegistryError) -> (StatusCode, &'static str) {
    use RegistryError::*;
    match error {
        BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        UploadOutOfOrder { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        UploadBusy => (StatusCode::CONFLICT, "BLOB_UPLOAD_INVALID"),
        DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        ManifestUnknown | ManifestUnknownForAccept(_) => {
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
        }
        NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
        TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
        PaginationInvalid(_) => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
        EndpointUnknown => (StatusCode::NOT_FOUND, "UNSUPPORTED"),
        Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        BadRequest(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        // 405: of the answers the specification gives a DELETE (202, 404, 405), the one that
        // says "not allowed"; the message says why and what to delete first.
        BlobInUse | ManifestInUse(_) => (StatusCode::METHOD_NOT_ALLOWED, "DENIED"),
        Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
        TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        // 405, as clients (podman, docker, skopeo) print a 405's DENIED message as
        // `denied: <message>` and give up instead of retrying.
        Refused(WriteRefused::ReadOnly { .. }) => (StatusCode::METHOD_NOT_ALLOWED, "DENIED"),
        Refused(WriteRefused::Cancelled) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        // 507 says what happened in its status line, which docker, podman and skopeo print
        // for a 5xx (they print the body of 4xx answers only); UNAVAILABLE, as writes are.
        StorageFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE"),
        // 503 with Retry-After: nothing was done, and the same request succeeds once the
        // database is back.
        DatabaseUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        // The same for the blob storage: S3 down or answering SlowDown.
        BlobStorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        // Found at start, never while serving; an internal error if it ever were.
        StorageUnusable(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
    }
}

/// A write that failed inside the registry, attached to its response so that the layer that
/// sees every write's outcome ([`super::record_write_outcome`]) can tell the registry.
#[derive(Debug, Clone)]
pub struct WriteFailed {
    /// Why.
    pub kind: WriteFailure,
    /// What the error said (for the health report; already logged).
    pub message: String,
}

/// Attaches a write failure to `response`.
pub fn mark_write_failed(response: &mut Response, kind: WriteFailure, message: String) {
    response
        .extensions_mut()
        .insert(WriteFailed { kind, message });
}

/// A [`RegistryError`] as an axum handler's error: answered with [`oci_error`].
#[derive(Debug)]
pub struct OciError(pub RegistryError);

impl From<RegistryError> for OciError {
    fn from(error: RegistryError) -> Self {
        OciError(error)
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        oci_error(self.0)
    }
}

/// The OCI error response for `error` (a [`RegistryError`], or a [`Refusal`] of authorization):
/// its status, code, message and headers. (A function, not an `IntoResponse` impl: the error type
/// belongs to the registry crate, the response to axum.)
pub fn oci_error(error: impl Into<Refusal>) -> Response {
    match error.into() {
        Refusal::Registry(error) => registry_error(error),
        Refusal::WriteNotInToken { challenge, message } => {
            let mut response = registry_error(RegistryError::Denied(message));
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

fn registry_error(error: RegistryError) -> Response {
    let (status, code) = status_and_code(&error);
    let mut failure = None;
    let message = match &error {
        RegistryError::Internal(detail) | RegistryError::StorageUnusable(detail) => {
            tracing::error!(error = %detail, "request failed");
            failure = Some((WriteFailure::Internal, detail.clone()));
            "internal error; the registry's log has the details".to_owned()
        }
        RegistryError::StorageFull(detail) => {
            // The line an alert on the log matches: "storage full".
            tracing::error!(error = %detail, "storage full: the write failed");
            failure = Some((WriteFailure::StorageFull, detail.clone()));
            detail.clone()
        }
        RegistryError::DatabaseUnavailable(detail) => {
            tracing::error!(error = %detail, "metadata database unreachable: the request failed");
            failure = Some((WriteFailure::DatabaseUnavailable, detail.clone()));
            DATABASE_UNAVAILABLE.to_owned()
        }
        RegistryError::BlobStorageUnavailable(detail) => {
            tracing::error!(error = %detail, "blob storage unreachable or throttling: the request failed");
            failure = Some((WriteFailure::BlobStorageUnavailable, detail.clone()));
            BLOB_STORAGE_UNAVAILABLE.to_owned()
        }
        other => other.to_string(),
    };
    let detail = match &error {
        RegistryError::ManifestBlobUnknown(digest) => json!({ "digest": digest }),
        RegistryError::ManifestInUse(index) => json!({ "index": index }),
        RegistryError::Refused(WriteRefused::ReadOnly {
            mode,
            reason,
            holds,
        }) => {
            json!({ "mode": mode, "reason": reason, "holds": holds })
        }
        _ => json!({}),
    };
    let body = json!({ "errors": [{ "code": code, "message": message, "detail": detail }] });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some((kind, detail)) = failure {
        mark_write_failed(&mut response, kind, detail);
    }
    let headers_out = response.headers_mut();
    match &error {
        RegistryError::UploadOutOfOrder {
            repository,
            id,
            received,
        } => headers::upload_progress(headers_out, repository, id, *received),
        RegistryError::RangeNotSatisfiable { size } => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                headers_out.insert(header::CONTENT_RANGE, value);
            }
        }
        RegistryError::Refused(WriteRefused::Cancelled)
        | RegistryError::DatabaseUnavailable(_)
        | RegistryError::BlobStorageUnavailable(_) => {
            headers_out.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        RegistryError::Unauthorized { challenge, .. } => {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                headers_out.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        RegistryError::TooManyRequests { retry_after, .. } => {
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                headers_out.insert(header::RETRY_AFTER, value);
            }
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_bodies_follow_the_spec() {
        let response = oci_error(RegistryError::ManifestBlobUnknown(
            wharf_core::digest::Digest::sha256_of(b"x"),
        ));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(
            body["errors"][0]["detail"]["digest"],
            wharf_core::digest::Digest::sha256_of(b"x").to_string()
        );
    }

    #[tokio::test]
    async fn read_only_refusals_carry_the_exact_message() {
        let refused = WriteRefused::ReadOnly {
            mode: wharf_gate::Mode::ReadOnly,
            reason: "backup (backup-1)".to_owned(),
            holds: vec!["backup-1".to_owned()],
        };
        let response = oci_error(RegistryError::Refused(refused));
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "DENIED");
        assert_eq!(
            body["errors"][0]["message"],
            "System is currently read-only. Pulls will succeed but all write operations are currently suspended."
        );
        assert_eq!(body["errors"][0]["detail"]["reason"], "backup (backup-1)");
        assert_eq!(body["errors"][0]["detail"]["mode"], "read-only");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_details() {
        let response = oci_error(RegistryError::internal("disk /secret/path exploded"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("/secret/path"));
    }
}
