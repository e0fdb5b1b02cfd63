//! Where a backup copies from: the registry's own storage, or its admin API from elsewhere.

use async_trait::async_trait;

use wharf_core::digest::Digest;
use wharf_metadata::Page;
use wharf_metadata_sqlite::SqliteSnapshot;
use wharf_registry::Registry;
use wharf_registry::backups::{BackupError, BackupId};
use wharf_storage::BlobStream;

/// What a backup reads: the snapshot, the list of blobs it references, and their content.
#[async_trait]
pub trait BackupSource: Send + Sync {
    /// The metadata snapshot file's content.
    async fn metadata(&self) -> Result<BlobStream, BackupError>;

    /// Up to `limit` of the snapshot's blobs (digest and size) after `last`, ordered by digest.
    async fn blobs(
        &self,
        last: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>, BackupError>;

    /// A blob's content.
    async fn blob(&self, digest: &Digest) -> Result<BlobStream, BackupError>;

    /// Extends the backup's lease by `ttl` from now.
    async fn renew(&self, ttl: std::time::Duration) -> Result<(), BackupError>;
}

/// Reads a backup in progress from the registry itself (the server answering the admin API, or
/// the command line on a stopped registry's data).
pub struct LocalSource {
    registry: Registry,
    id: BackupId,
}

impl LocalSource {
    /// Reads backup `id` of `registry`; fails if it is not in progress.
    pub async fn new(registry: Registry, id: BackupId) -> Result<Self, BackupError> {
        registry.backup_in_progress(&id).await?;
        Ok(LocalSource { registry, id })
    }
}

#[async_trait]
impl BackupSource for LocalSource {
    async fn metadata(&self) -> Result<BlobStream, BackupError> {
        let path = self.registry.backup_in_progress(&self.id).await?;
        super::files::read_file(&path).await
    }

    async fn blobs(
        &self,
        last: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>, BackupError> {
        let path = self.registry.backup_in_progress(&self.id).await?;
        let snapshot = SqliteSnapshot::open(&path).await?;
        let last = last.map(Digest::to_string);
        let page = snapshot
            .live_blobs(Page {
                last: last.as_deref(),
                limit,
            })
            .await;
        snapshot.close().await;
        Ok(page?.into_iter().map(|b| (b.digest, b.size)).collect())
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobStream, BackupError> {
        // The lease keeps every blob of the snapshot; it may have been stored again since, under
        // another placement, with the same content.
        let blob = self
            .registry
            .metadata()
            .live_blob(digest)
            .await?
            .ok_or_else(|| {
                BackupError::Corrupt(format!(
                    "blob {digest} of the snapshot is gone from the registry"
                ))
            })?;
        Ok(self.registry.read_blob(&blob, 0..blob.size).await?)
    }

    async fn renew(&self, ttl: std::time::Duration) -> Result<(), BackupError> {
        self.registry.renew_backup(&self.id, ttl).await
    }
}
