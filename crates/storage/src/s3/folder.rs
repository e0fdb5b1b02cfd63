//! A bucket and prefix that is not a registry's blob store: where a backup is written to and
//! restored from (`s3://bucket/prefix`). The caller names the objects (relative to the
//! prefix); writes stream through the same verified multipart uploads as a registry's blobs,
//! so an object under its final name is always whole and has the digest it was written with.
//! Nothing written here is a registry write: no write permit is asked for.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{S3Blobs, S3Settings};
use crate::{BlobStream, StorageError};
use wharf_core::digest::Digest;

/// A prefix of a bucket, as a folder of named objects. Cheap to clone.
#[derive(Clone)]
pub struct S3Folder {
    s3: Arc<S3Blobs>,
}

impl S3Folder {
    /// Reaches the bucket and checks, as a registry's start does, that objects can be listed
    /// and written under the prefix; the error is one line naming the bucket and what failed.
    pub async fn connect(settings: &S3Settings) -> Result<Self, StorageError> {
        Ok(S3Folder {
            s3: Arc::new(S3Blobs::connect(settings).await?),
        })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.s3.bucket, self.s3.prefix)
    }

    /// The size of object `key`, if it exists.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.s3.store.head(&self.s3.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Object `key`'s content as it streams in, if it exists.
    pub async fn read(&self, key: &str) -> Result<Option<BlobStream>, StorageError> {
        match self.s3.store.get(&self.s3.path(key)).await {
            Ok(result) => Ok(Some(
                result.into_stream().map_err(std::io::Error::other).boxed(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `body` as object `key`, streamed a part at a time, if it has `digest` and at
    /// most `size` bytes (checked before the object exists under its name); otherwise nothing
    /// is written and it fails.
    pub async fn put_verified<E: std::fmt::Display>(
        &self,
        key: &str,
        digest: &Digest,
        size: u64,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
    ) -> Result<(), StorageError> {
        let written = self
            .s3
            .put_verified_at(None, key, digest, body, Some(size))
            .await
            .map_err(super::upload::append_to_storage)?;
        if written != size {
            // Same digest, other size: the caller's size was wrong. Nothing refers to it yet.
            self.delete(key).await?;
            return Err(StorageError::Io(std::io::Error::other(format!(
                "{digest} has {written} bytes, not {size}"
            ))));
        }
        Ok(())
    }

    /// Writes a small object in one `PUT` (S3 makes it visible whole, or not at all).
    pub async fn put(&self, key: &str, content: Bytes) -> Result<(), StorageError> {
        self.s3
            .store
            .put(&self.s3.path(key), PutPayload::from(content))
            .await?;
        Ok(())
    }

    /// Deletes object `key` (gone already is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.s3.delete(key).await
    }

    /// The names right under the prefix: objects, and folders (with a `/` at the end).
    pub async fn top_level(&self) -> Result<Vec<String>, StorageError> {
        let prefix = (!self.s3.prefix.is_empty()).then(|| self.s3.path(""));
        let listing = self.s3.store.list_with_delimiter(prefix.as_ref()).await?;
        let name = |path: &object_store::path::Path| {
            path.filename().map(str::to_owned).unwrap_or_default()
        };
        let mut names: Vec<String> = listing.objects.iter().map(|o| name(&o.location)).collect();
        names.extend(
            listing
                .common_prefixes
                .iter()
                .map(|p| format!("{}/", name(p))),
        );
        Ok(names)
    }
}
