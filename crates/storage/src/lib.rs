//! Blob storage: content-addressed objects on the `object_store` crate, and the staging area where
//! uploads accumulate until their digest is verified.
//!
//! Layout under the storage root:
//!
//! ```text
//! blobs/<algorithm>/<first two hex digits>/<hex>/<incarnation>   committed blob content
//! uploads/<upload id>                                           bytes of an open upload
//! ```
//!
//! A committed object is never modified. The `<incarnation>` (a random id) makes every placement
//! of a blob a distinct object, so the garbage collector deleting an old, unreferenced copy can
//! never delete a copy that a new upload of the same content has just placed: the metadata store
//! records which incarnation is live.
//!
//! Upload staging appends to a file. `object_store`'s local store has no appendable or resumable
//! multipart upload (its `put_multipart` handle lives only in memory), so appends use the file
//! system directly under the same root, and the finished file is moved into place with the
//! store's rename, which is atomic.
//!
//! The same layout can live in an S3 bucket instead ([`s3`]), where uploads are multipart
//! uploads whose state the metadata database keeps (an upload session's `storage_state`), so
//! that any replica can continue them.

mod batch_policy;
mod file_stream;
mod locks;
pub mod s3;
mod staging;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt};

pub use locks::UploadLock;
pub use s3::{OpenMultipartUpload, S3Credentials, S3Folder, S3Settings, is_storage_unavailable};
pub use staging::{AppendError, HashProgress, HashResume, Hashing};

use wharf_core::digest::{ContentHasher, Digest};
use wharf_core::placement::StorageKey;
use wharf_core::upload_id::UploadId;
use wharf_gate::WritePermit;

/// A failure of blob storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object store failed.
    #[error("blob storage error: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A file system operation failed.
    #[error("blob storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The write was stopped by the write gate before it became visible.
    #[error(transparent)]
    Refused(#[from] wharf_gate::WriteRefused),
    /// The configured storage cannot be used (checked at start); the message names the
    /// bucket and what failed, never a credential.
    #[error("{0}")]
    Unusable(String),
    /// Bytes already in an object store were hashed with one algorithm and cannot be read
    /// back to hash them with another.
    #[error(
        "this upload was hashed with {hashed} as it arrived and its bytes cannot be read back; \
         open the upload with ?digest-algorithm={asked} to complete it with a {asked} digest"
    )]
    OtherAlgorithm {
        /// The algorithm the upload was hashed with.
        hashed: &'static str,
        /// The algorithm of the digest the client named.
        asked: &'static str,
    },
}

/// A committed object as listed by the garbage collector.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The object's key.
    pub key: StorageKey,
    /// When it was last written, in milliseconds since the Unix epoch.
    pub modified_millis: i64,
}

/// A stream of a blob's bytes.
pub type BlobStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Blob storage. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    /// A folder: committed objects through `object_store`, staging in files.
    Files {
        objects: Arc<LocalFileSystem>,
        staging: staging::Staging,
    },
    /// An S3 bucket: objects and uploads through `object_store`'s S3 store.
    S3(Arc<s3::S3Blobs>),
}

/// How an append took in a request body.
pub struct Appended {
    /// The bytes appended.
    pub bytes: u64,
    /// Their hashing, which may still be running.
    pub hashing: Hashing,
    /// The upload's new storage state, to record with its progress; `None` if it did not
    /// change (always on the file system, whose staged file is named by the upload).
    pub storage_state: Option<String>,
}

impl BlobStore {
    /// Blob storage in a folder of the local file system, created if missing. With `fsync`,
    /// content and folder entries are flushed to disk before a blob is committed.
    pub fn filesystem(root: &Path, fsync: bool) -> Result<Self, StorageError> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        let objects = LocalFileSystem::new_with_prefix(root)?
            .with_fsync(fsync)
            .with_automatic_cleanup(true);
        Ok(BlobStore {
            backend: Backend::Files {
                objects: Arc::new(objects),
                staging: staging::Staging::new(root.join("uploads"), fsync),
            },
        })
    }

    /// Blob storage in an S3 bucket, after checking that it can list and write there (see
    /// [`s3`]); the error is one line naming the bucket and what failed.
    pub async fn s3(settings: &S3Settings) -> Result<Self, StorageError> {
        Ok(BlobStore {
            backend: Backend::S3(Arc::new(s3::S3Blobs::connect(settings).await?)),
        })
    }

    /// Whether other processes may use the same storage at once (S3), so that nothing about
    /// an upload may be assumed from what this process saw of it.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::S3(_))
    }

    /// The part size of uploads, where bytes are stored in parts (S3): the smallest chunk
    /// worth sending (`OCI-Chunk-Min-Length`).
    pub fn chunk_min_length(&self) -> Option<u64> {
        match &self.backend {
            Backend::Files { .. } => None,
            Backend::S3(s3) => Some(s3.part_size()),
        }
    }

    /// A short-lived URL to download the object `key` from directly, where the storage is
    /// configured to redirect downloads.
    pub async fn download_url(&self, key: &StorageKey) -> Result<Option<String>, StorageError> {
        match &self.backend {
            Backend::Files { .. } => Ok(None),
            Backend::S3(s3) => s3.download_url(key).await,
        }
    }

    /// Streams `range` of the object `key`. The range must lie within the object.
    pub async fn read(
        &self,
        key: &StorageKey,
        range: Range<u64>,
    ) -> Result<BlobStream, StorageError> {
        if range.start >= range.end {
            return Ok(futures_util::stream::empty().boxed());
        }
        let objects = match &self.backend {
            Backend::Files { objects, .. } => objects,
            Backend::S3(s3) => return s3.read(key, range).await,
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = objects.get_opts(&object_path(key), options).await?;
        let range = result.range.clone();
        Ok(match result.payload {
            GetResultPayload::File(file, _path) => {
                file_stream::FileStream::new(file, range).boxed()
            }
            GetResultPayload::Stream(stream) => stream.map_err(std::io::Error::other).boxed(),
        })
    }

    /// Computes the digest of the object `key` under `algorithm`, reading it all.
    pub async fn digest_of(
        &self,
        key: &StorageKey,
        algorithm: wharf_core::digest::Algorithm,
        size: u64,
    ) -> Result<Digest, StorageError> {
        let mut stream = self.read(key, 0..size).await?;
        let mut hasher = ContentHasher::new(algorithm);
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher.finish())
    }

    /// The size of the object `key`, or `None` if it does not exist.
    pub async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StorageError> {
        let objects = match &self.backend {
            Backend::Files { objects, .. } => objects,
            Backend::S3(s3) => return s3.size(key).await,
        };
        match objects.head(&object_path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object `key`; deleting a missing object succeeds.
    pub async fn delete(&self, permit: &WritePermit, key: &StorageKey) -> Result<(), StorageError> {
        permit.check()?;
        let objects = match &self.backend {
            Backend::Files { objects, .. } => objects,
            Backend::S3(s3) => return s3.delete(key.as_str()).await,
        };
        match objects.delete(&object_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every committed object, for the garbage collector's sweep of objects no record uses.
    pub fn list_objects(&self) -> BoxStream<'static, Result<StoredObject, StorageError>> {
        let objects = match &self.backend {
            Backend::Files { objects, .. } => objects,
            Backend::S3(s3) => return s3.list_objects(),
        };
        objects
            .list(Some(&ObjectPath::from("blobs")))
            .map(|meta| {
                let meta = meta?;
                let key = StorageKey::from_stored(meta.location.to_string())
                    .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
                Ok(StoredObject {
                    key,
                    modified_millis: meta.last_modified.timestamp_millis(),
                })
            })
            .boxed()
    }

    // ---- Upload staging ----

    /// Takes the exclusive right to write to upload `id`'s staging data, or `None` if another
    /// request is writing to it right now.
    pub fn lock_upload(&self, id: &UploadId) -> Option<UploadLock> {
        match &self.backend {
            Backend::Files { staging, .. } => staging.lock(id),
            Backend::S3(s3) => s3.lock_upload(id),
        }
    }

    /// Appends a request body to upload `id`, whose first `offset` bytes are committed (with
    /// `storage_state`, the session's record of where they are), hashing the bytes on from
    /// `hash`. Bytes beyond `offset` left by an interrupted request are discarded first.
    /// Returns once the bytes are written: how many were appended, their hashing, which may
    /// still be running, and the new storage state to record. Stops, with nothing committed,
    /// if the permit is cancelled, the body fails, or the upload would exceed `max_size`.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_upload<E>(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        offset: u64,
        storage_state: &str,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        hash: HashResume,
        max_size: Option<u64>,
    ) -> Result<Appended, AppendError>
    where
        E: std::fmt::Display,
    {
        match &self.backend {
            Backend::Files { staging, .. } => {
                let (bytes, hashing) = staging
                    .append(permit, lock, offset, body, hash, max_size)
                    .await?;
                Ok(Appended {
                    bytes,
                    hashing,
                    storage_state: None,
                })
            }
            Backend::S3(s3) => {
                let appended = s3
                    .append(permit, lock, offset, storage_state, body, hash, max_size)
                    .await?;
                Ok(Appended {
                    bytes: appended.appended,
                    hashing: appended.hashing,
                    storage_state: appended.storage_state,
                })
            }
        }
    }

    /// Writes `body`, verified to have `digest`, at `key` (a restore placing a backed-up blob
    /// where its record says it is), on storage shared between processes (S3); a failure
    /// leaves nothing at the key. The file system's restore writes its files itself.
    pub async fn restore_object<E: std::fmt::Display>(
        &self,
        permit: &WritePermit,
        key: &StorageKey,
        digest: &Digest,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
    ) -> Result<u64, AppendError> {
        match &self.backend {
            Backend::Files { .. } => {
                Err(std::io::Error::other("a restore writes the data folder's files itself").into())
            }
            Backend::S3(s3) => s3.put_verified(permit, key, digest, body, None).await,
        }
    }

    /// Once an append's new storage state is recorded (or failed to be), deletes what the
    /// state not recorded names and the recorded one does not (S3: the staged object it
    /// replaced); a failure only leaves it to upload expiry.
    pub async fn discard_replaced_staging(&self, id: &UploadId, replaced: &str, recorded: &str) {
        if let Backend::S3(s3) = &self.backend {
            s3.discard_replaced(id, replaced, recorded).await;
        }
    }

    /// Uploads a whole blob at its final key as it arrives, verifying that it has `digest`
    /// before it is completed, and returns its key and size: for storage shared between
    /// processes ([`BlobStore::is_shared`]: S3). The file system stages uploads and publishes
    /// them instead ([`BlobStore::append_upload`], [`BlobStore::publish_upload`]).
    pub async fn put_verified_blob<E: std::fmt::Display>(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        digest: &Digest,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        max_size: Option<u64>,
    ) -> Result<(StorageKey, u64), AppendError> {
        match &self.backend {
            Backend::Files { .. } => Err(std::io::Error::other(
                "the file system stages uploads: append and publish them",
            )
            .into()),
            Backend::S3(s3) => s3.put_blob(permit, lock, digest, body, max_size).await,
        }
    }

    /// Computes the digest of the first `size` staged bytes of an upload under `algorithm` (for
    /// a client that names a digest algorithm other than the one hashed while receiving).
    pub async fn digest_of_upload(
        &self,
        lock: &UploadLock,
        algorithm: wharf_core::digest::Algorithm,
        size: u64,
        hashed_with: wharf_core::digest::Algorithm,
    ) -> Result<Digest, StorageError> {
        match &self.backend {
            Backend::Files { staging, .. } => staging.digest(lock, algorithm, size).await,
            Backend::S3(_) => Err(StorageError::OtherAlgorithm {
                hashed: hashed_with.name(),
                asked: algorithm.name(),
            }),
        }
    }

    /// Moves the first `size` staged bytes of an upload (verified to have `digest`) into a new
    /// placement, durable if configured, and returns its key. The upload's staging is gone.
    pub async fn publish_upload(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        digest: &Digest,
        size: u64,
        storage_state: &str,
    ) -> Result<StorageKey, StorageError> {
        let (objects, staging) = match &self.backend {
            Backend::Files { objects, staging } => (objects, staging),
            Backend::S3(s3) => return s3.publish(permit, lock, digest, size, storage_state).await,
        };
        let staged = staging.seal(lock, size).await?;
        let key = StorageKey::for_new_placement(digest);
        permit.check()?;
        objects
            .rename(&staging_path(&staged), &object_path(&key))
            .await?;
        Ok(key)
    }

    /// Deletes an upload's staged bytes (on S3 also its multipart upload, which
    /// `storage_state` names).
    pub async fn discard_upload(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        storage_state: &str,
    ) -> Result<(), StorageError> {
        permit.check()?;
        match &self.backend {
            Backend::Files { staging, .. } => staging.discard(id).await,
            Backend::S3(s3) => s3.discard(id, storage_state).await,
        }
    }

    /// The identifiers of uploads with staged bytes, and when each was last written.
    pub async fn staged_uploads(&self) -> Result<Vec<(UploadId, i64)>, StorageError> {
        match &self.backend {
            Backend::Files { staging, .. } => staging.list().await,
            Backend::S3(s3) => s3.staged_uploads().await,
        }
    }

    /// The multipart uploads open in the bucket, for the garbage collector to abort those a
    /// killed process left (empty on the file system, which has none).
    pub async fn open_multipart_uploads(&self) -> Result<Vec<OpenMultipartUpload>, StorageError> {
        match &self.backend {
            Backend::Files { .. } => Ok(Vec::new()),
            Backend::S3(s3) => s3.open_multipart_uploads().await,
        }
    }

    /// Aborts a multipart upload found open, deleting its parts.
    pub async fn abort_multipart_upload(
        &self,
        permit: &WritePermit,
        upload: &OpenMultipartUpload,
    ) -> Result<(), StorageError> {
        permit.check()?;
        match &self.backend {
            Backend::Files { .. } => Ok(()),
            Backend::S3(s3) => s3.abort_open_multipart(upload).await,
        }
    }
}

fn staging_path(file: &Path) -> ObjectPath {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ObjectPath::from(format!("uploads/{name}"))
}

/// Where a placement is in the object store.
fn object_path(key: &StorageKey) -> ObjectPath {
    ObjectPath::from(key.as_str())
}
