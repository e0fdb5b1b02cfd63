//! The registry's error type: every failure a request can meet, each carrying what the client
//! needs to know. The HTTP layer turns it into the OCI error body with the right status and code
//! (`wharf_server::api::errors`); outside the request path (CLI, background jobs) it is reported as text.

use wharf_core::digest::{Digest, DigestError};
use wharf_core::reference::{NameError, RepositoryName};
use wharf_core::storage_full::is_storage_full;
use wharf_core::unavailable::is_unavailable;
use wharf_core::upload_id::UploadId;
use wharf_gate::WriteRefused;
use wharf_gate::store::StoreError;
use wharf_metadata::MetadataError;
use wharf_storage::StorageError;

/// A failed registry operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The blob is not in the repository.
    #[error("blob unknown to registry")]
    BlobUnknown,
    /// The upload session does not exist (or belongs to another repository).
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// The upload request is malformed or inconsistent.
    #[error("{0}")]
    BlobUploadInvalid(String),
    /// A chunk does not start where the upload currently ends.
    #[error(
        "the chunk must start at byte {received}, where the upload currently ends; \
         ask for the upload's status and continue from there"
    )]
    UploadOutOfOrder {
        /// The upload's repository, for its Location.
        repository: RepositoryName,
        /// The upload session.
        id: UploadId,
        /// How many bytes the upload holds.
        received: u64,
    },
    /// A digest is malformed, unsupported, or does not match the content.
    #[error("{0}")]
    DigestInvalid(String),
    /// A manifest refers to a blob or manifest that is not in the repository.
    #[error("the manifest refers to {0}, which is not in this repository; push it first")]
    ManifestBlobUnknown(Digest),
    /// A manifest is malformed or of an unsupported kind.
    #[error("{0}")]
    ManifestInvalid(String),
    /// The manifest is not in the repository.
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    /// The manifest exists, but its media type is not one the request's `Accept` header lists.
    #[error("the manifest is of type {0}, which the request's Accept header does not list")]
    ManifestUnknownForAccept(String),
    /// A repository name or tag is malformed.
    #[error("{0}")]
    NameInvalid(String),
    /// The repository does not exist.
    #[error("repository name not known to registry")]
    NameUnknown,
    /// A declared length does not match the content.
    #[error("{0}")]
    SizeInvalid(String),
    /// The content exceeds a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A requested byte range lies outside the blob.
    #[error("the requested range is not satisfiable: the blob has {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// A listing's pagination parameters are malformed.
    #[error("{0}")]
    PaginationInvalid(String),
    /// No endpoint of the API has this path.
    #[error("no such endpoint; see the OCI distribution specification")]
    EndpointUnknown,
    /// The operation is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// The request is malformed (a query string, a form).
    #[error("{0}")]
    BadRequest(String),
    /// A blob cannot be deleted from a repository whose manifests still use it.
    #[error("the blob is used by manifests in this repository; delete those manifests first")]
    BlobInUse,
    /// A manifest cannot be deleted while an index in its repository refers to it.
    #[error("the manifest is part of the index {0} in this repository; delete the index first")]
    ManifestInUse(Digest),
    /// Another request is writing to the same upload right now.
    #[error("another request is writing to this upload; wait for it, then ask for the status")]
    UploadBusy,
    /// The request needs credentials, or better ones: the challenge tells the client where to
    /// get a token and for what.
    #[error("{message}")]
    Unauthorized {
        /// The `WWW-Authenticate` header's value.
        challenge: String,
        /// Why.
        message: String,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Denied(String),
    /// Too many failed logins.
    #[error("{message}")]
    TooManyRequests {
        /// When to try again.
        retry_after: std::time::Duration,
        /// Why.
        message: String,
    },
    /// The write gate refused or stopped the write.
    #[error(transparent)]
    Refused(#[from] WriteRefused),
    /// The storage the registry writes to (its database's or its blobs') is full: nothing was
    /// written, and writes work again once space is freed.
    #[error("{0}")]
    StorageFull(String),
    /// The metadata database cannot be reached (down, restarting, not answering in time):
    /// nothing was done, and the request may be retried. The detail is logged, not sent.
    #[error("the metadata database is unreachable ({0})")]
    DatabaseUnavailable(String),
    /// The blob storage (S3) cannot be reached or keeps throttling requests, after the retries
    /// that are safe: nothing was done, and the request may be retried. The detail is logged,
    /// not sent.
    #[error("the blob storage is unreachable or throttling requests ({0})")]
    BlobStorageUnavailable(String),
    /// The configured storage cannot be used (found when the registry opens); the message
    /// names what and why, and no secret.
    #[error("{0}")]
    StorageUnusable(String),
    /// Something failed inside the registry (database, storage); details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RegistryError {
    /// Wraps an unexpected failure.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        RegistryError::Internal(error.to_string())
    }

    /// A malformed digest given where a blob is expected.
    pub fn digest(error: DigestError) -> Self {
        RegistryError::DigestInvalid(error.to_string())
    }
}

impl RegistryError {
    /// A failure of a store: [`RegistryError::StorageFull`] when the storage is full,
    /// [`RegistryError::DatabaseUnavailable`] when the database cannot be reached and
    /// [`RegistryError::BlobStorageUnavailable`] when S3 cannot be reached or throttles
    /// (wherever in the error's sources that shows), [`RegistryError::Internal`] otherwise.
    pub fn store_failed(error: impl std::error::Error + 'static) -> Self {
        if is_storage_full(&error) {
            RegistryError::StorageFull(format!(
                "the registry's storage is full, so nothing was written ({error}); \
                 pulls still work, and writes work again once an administrator frees space"
            ))
        } else if is_unavailable(&error) {
            RegistryError::DatabaseUnavailable(error.to_string())
        } else if wharf_storage::is_storage_unavailable(&error) {
            RegistryError::BlobStorageUnavailable(error.to_string())
        } else {
            RegistryError::internal(error)
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(error: StoreError) -> Self {
        RegistryError::store_failed(error)
    }
}

impl From<MetadataError> for RegistryError {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::Refused(refused) => RegistryError::Refused(refused),
            other => RegistryError::store_failed(other),
        }
    }
}

impl From<StorageError> for RegistryError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Refused(refused) => RegistryError::Refused(refused),
            StorageError::Unusable(why) => RegistryError::StorageUnusable(why),
            other => RegistryError::store_failed(other),
        }
    }
}

impl From<NameError> for RegistryError {
    fn from(error: NameError) -> Self {
        RegistryError::NameInvalid(error.to_string())
    }
}
