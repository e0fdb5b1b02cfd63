//! Reading and deleting blobs in a repository.

use std::ops::Range;

use super::{Registry, RegistryError};
use wharf_core::digest::Digest;
use wharf_core::reference::RepositoryName;
use wharf_gate::WriteIntent;
use wharf_metadata::{BlobRecord, BlobUnlink};
use wharf_storage::BlobStream;

impl Registry {
    /// The blob `digest` of `repository`, if the repository has it.
    pub async fn blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobRecord, RegistryError> {
        self.metadata
            .blob_in_repository(repository, digest)
            .await?
            .ok_or(RegistryError::BlobUnknown)
    }

    /// Streams `range` of a blob's content; the range must lie within the blob.
    pub async fn read_blob(
        &self,
        blob: &BlobRecord,
        range: Range<u64>,
    ) -> Result<BlobStream, RegistryError> {
        match self.blobs.read(&blob.storage_key, range).await {
            Ok(stream) => Ok(stream),
            // The record was live when looked up, but the garbage collector removed it since.
            Err(wharf_storage::StorageError::ObjectStore(object_store::Error::NotFound {
                ..
            })) => Err(RegistryError::BlobUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes blob `digest` from `repository`. Its content goes once nothing else uses it.
    pub async fn delete_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let permit = self.admit(WriteIntent::Delete { repository }).await?;
        match self
            .metadata
            .unlink_blob(&permit, repository, digest)
            .await?
        {
            BlobUnlink::Unlinked => Ok(()),
            BlobUnlink::NotLinked => Err(RegistryError::BlobUnknown),
            BlobUnlink::InUse => Err(RegistryError::BlobInUse),
        }
    }
}
