//! `wharf restore`: a registry from a backup, in an empty data folder.

use std::path::Path;

use serde::Serialize;

use super::destination::METADATA;
use super::files::{blob_path, read_file, write_verified};
use super::verify::{check_metadata, read_manifest};
use super::{BackupError, Progress};
use crate::digest::Digest;
use crate::gate::DrainSettings;
use crate::metadata::{MetadataStore, Page, SqliteStore};
use crate::registry::{DataPaths, FsckReport, Limits, Registry};

const PAGE: u32 = 500;

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub id: String,
    /// Blobs restored.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Holds, upload sessions, backup leases and blobs being deleted that the snapshot had and
    /// the restored registry does not keep.
    pub forgotten: [u64; 4],
    /// The consistency check of the restored registry.
    pub fsck: FsckReport,
}

/// Restores the backup in `backup` into the data folder `data` (which must not exist or be
/// empty), then checks the result with fsck. The restored registry has no holds: it starts
/// read-write.
pub async fn restore(
    backup: &Path,
    data: &Path,
    fsync: bool,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let manifest = read_manifest(backup).map_err(BackupError::Destination)?;
    check_metadata(backup, &manifest)
        .await
        .map_err(BackupError::Destination)?;
    if std::fs::read_dir(data).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::NotEmpty(format!(
            "{} is not empty; restore into a new folder",
            data.display()
        )));
    }
    let restored = restore_into(backup, data, fsync, progress, manifest).await;
    if restored.is_err() {
        // The folder was empty: a failed restore leaves it so, never half a registry.
        if let Ok(entries) = std::fs::read_dir(data) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    }
    restored
}

async fn restore_into(
    backup: &Path,
    data: &Path,
    fsync: bool,
    progress: &dyn Progress,
    manifest: super::BackupManifest,
) -> Result<RestoreReport, BackupError> {
    let paths = DataPaths::in_folder(data);
    let scratch = data.join(".restore");
    let metadata: Digest = manifest
        .metadata
        .digest
        .parse()
        .map_err(|e| BackupError::Corrupt(format!("backup.json: {e}")))?;
    write_verified(
        read_file(&backup.join(METADATA)).await?,
        &paths.metadata,
        &scratch,
        &metadata,
        manifest.metadata.size,
    )
    .await?;

    let store = SqliteStore::open(&paths.metadata).await?;
    let forgotten = store.forget_transient_state().await?;
    progress.start(manifest.counts.blobs, manifest.counts.bytes);
    let counts = restore_blobs(&store, backup, &paths, &scratch, progress).await;
    store.close().await;
    let (blobs, bytes) = counts?;
    let _ = std::fs::remove_dir_all(&scratch);

    let registry =
        Registry::open_local(&paths, fsync, Limits::default(), DrainSettings::default()).await?;
    let fsck = registry.fsck(true).await;
    registry.close().await;
    Ok(RestoreReport {
        id: manifest.id,
        blobs,
        bytes,
        forgotten,
        fsck: fsck?,
    })
}

/// Places every live blob of the restored metadata where its record says it is.
async fn restore_blobs(
    store: &SqliteStore,
    backup: &Path,
    paths: &DataPaths,
    scratch: &Path,
    progress: &dyn Progress,
) -> Result<(u64, u64), BackupError> {
    let (mut blobs, mut bytes) = (0u64, 0u64);
    let mut last: Option<String> = None;
    loop {
        let page = store
            .live_blobs(Page {
                last: last.as_deref(),
                limit: PAGE,
            })
            .await?;
        let Some(final_blob) = page.last() else {
            break;
        };
        last = Some(final_blob.digest.to_string());
        for blob in page {
            let source = blob_path(backup, &blob.digest);
            let content = read_file(&source).await.map_err(|_| {
                BackupError::Destination(format!("the backup lacks blob {}", blob.digest))
            })?;
            let target = paths.storage.join(blob.storage_key.as_str());
            write_verified(content, &target, scratch, &blob.digest, blob.size).await?;
            blobs += 1;
            bytes += blob.size;
            progress.advance(blob.size);
            progress.blob_done(true);
        }
    }
    Ok((blobs, bytes))
}
