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

mod batch_policy;
mod file_stream;
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

pub use staging::{AppendError, HashProgress, HashResume, Hashing, UploadLock};

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
    objects: Arc<LocalFileSystem>,
    staging: staging::Staging,
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
            objects: Arc::new(objects),
            staging: staging::Staging::new(root.join("uploads"), fsync),
        })
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
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = self.objects.get_opts(&object_path(key), options).await?;
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
        match self.objects.head(&object_path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object `key`; deleting a missing object succeeds.
    pub async fn delete(&self, permit: &WritePermit, key: &StorageKey) -> Result<(), StorageError> {
        permit.check()?;
        match self.objects.delete(&object_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every committed object, for the garbage collector's sweep of objects no record uses.
    pub fn list_objects(&self) -> BoxStream<'static, Result<StoredObject, StorageError>> {
        self.objects
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
        self.staging.lock(id)
    }

    /// Appends a request body to upload `id`, whose first `offset` bytes are committed, hashing
    /// the bytes on from `hash`. Bytes beyond `offset` left by an interrupted request are
    /// discarded first. Returns once the bytes are written: how many were appended, and their
    /// hashing, which may still be running. Stops, with nothing committed, if the permit is
    /// cancelled, the body fails, or the upload would exceed `max_size`.
    pub async fn append_upload<E>(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        offset: u64,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        hash: HashResume,
        max_size: Option<u64>,
    ) -> Result<(u64, Hashing), AppendError>
    where
        E: std::fmt::Display,
    {
        self.staging
            .append(permit, lock, offset, body, hash, max_size)
            .await
    }

    /// Computes the digest of the first `size` staged bytes of an upload under `algorithm` (for
    /// a client that names a digest algorithm other than the one hashed while receiving).
    pub async fn digest_of_upload(
        &self,
        lock: &UploadLock,
        algorithm: wharf_core::digest::Algorithm,
        size: u64,
    ) -> Result<Digest, StorageError> {
        self.staging.digest(lock, algorithm, size).await
    }

    /// Moves the first `size` staged bytes of an upload (verified to have `digest`) into a new
    /// placement, durable if configured, and returns its key. The upload's staging is gone.
    pub async fn publish_upload(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        digest: &Digest,
        size: u64,
    ) -> Result<StorageKey, StorageError> {
        let staged = self.staging.seal(lock, size).await?;
        let key = StorageKey::for_new_placement(digest);
        permit.check()?;
        self.objects
            .rename(&staging_path(&staged), &object_path(&key))
            .await?;
        Ok(key)
    }

    /// Deletes an upload's staged bytes.
    pub async fn discard_upload(
        &self,
        permit: &WritePermit,
        id: &UploadId,
    ) -> Result<(), StorageError> {
        permit.check()?;
        self.staging.discard(id).await
    }

    /// The identifiers of uploads with staged bytes, and when each was last written.
    pub async fn staged_uploads(&self) -> Result<Vec<(UploadId, i64)>, StorageError> {
        self.staging.list().await
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
