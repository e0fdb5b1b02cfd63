//! `wharf restore`: a registry from a backup, in an empty data folder.

use std::path::Path;

use serde::Serialize;

use super::Progress;
use super::destination::{INCOMPLETE, MANIFEST};
use super::files::{blob_key, blob_path, read_file, write_verified};
use super::verify::{check_metadata, metadata_path, parse_manifest, read_manifest};
use futures_util::TryStreamExt;
use std::sync::Arc;
use wharf_core::digest::Digest;
use wharf_storage::S3Folder;

use wharf_gate::metrics::Metrics;
use wharf_gate::{DrainSettings, WriteGate, WriteIntent};
use wharf_metadata::{BlobCursor, MetadataStore};
use wharf_metadata_sqlite::SqliteStore;
use wharf_registry::backups::BackupError;
use wharf_registry::{DataPaths, FsckReport, Limits, Registry};
use wharf_storage::BlobStore;

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
/// read-write. The registry is built in a folder beside `data` and renamed into place at the
/// end, so a restore that fails — or is killed — never leaves half a registry in `data`.
pub async fn restore(
    backup: &Path,
    data: &Path,
    fsync: bool,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    restore_with_blobs(backup, data, fsync, None, progress).await
}

/// As [`restore`], with the blobs written into `blobs` (an S3 bucket) instead of the data
/// folder's `storage/` when it is given. Until the data folder is renamed into place nothing
/// refers to the objects written; a restore that fails leaves them to garbage collection's
/// sweep of objects no record uses.
pub async fn restore_with_blobs(
    backup: &Path,
    data: &Path,
    fsync: bool,
    blobs: Option<BlobStore>,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let manifest = read_manifest(backup).map_err(BackupError::Destination)?;
    check_metadata(backup, &manifest)
        .await
        .map_err(BackupError::Destination)?;
    let source = Source::Folder(backup);
    restore_from(&source, manifest, data, fsync, blobs, progress).await
}

/// As [`restore_with_blobs`], from a backup in a bucket's prefix (`s3://bucket/prefix`):
/// its metadata snapshot is downloaded (verified) beside `data` first, its blobs stream from
/// the bucket, each verified again as it is placed.
pub async fn restore_from_bucket(
    backup: &S3Folder,
    data: &Path,
    fsync: bool,
    blobs: Option<BlobStore>,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let url = backup.url();
    let unreadable =
        |e: wharf_storage::StorageError| BackupError::Destination(format!("reading {url}: {e}"));
    let manifest = match backup.read(MANIFEST).await.map_err(unreadable)? {
        Some(stream) => {
            let bytes: Vec<u8> = stream
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await
                .map_err(|e| BackupError::Destination(format!("reading {url}: {e}")))?;
            parse_manifest(&bytes).map_err(BackupError::Destination)?
        }
        None => {
            let incomplete = backup.size(INCOMPLETE).await.map_err(unreadable)?.is_some();
            return Err(BackupError::Destination(if incomplete {
                format!(
                    "{url} holds an incomplete backup: it was interrupted ({INCOMPLETE} is present); take a new one"
                )
            } else {
                format!("{url} is not a backup: it has no {MANIFEST}")
            }));
        }
    };
    let name = data
        .file_name()
        .ok_or_else(|| BackupError::NotEmpty(format!("{} names no folder", data.display())))?;
    let snapshot = data.with_file_name(format!(".{}.snapshot", name.to_string_lossy()));
    let digest: Digest = manifest
        .metadata
        .digest
        .parse()
        .map_err(|e| BackupError::Corrupt(format!("{MANIFEST}: {e}")))?;
    let content = backup
        .read(&manifest.metadata.file)
        .await
        .map_err(unreadable)?
        .ok_or_else(|| {
            BackupError::Destination(format!(
                "{url} lacks its metadata snapshot {}",
                manifest.metadata.file
            ))
        })?;
    let scratch = data.with_file_name(format!(".{}.snapshot-scratch", name.to_string_lossy()));
    let restored = async {
        write_verified(
            content,
            &snapshot,
            &scratch,
            &digest,
            manifest.metadata.size,
        )
        .await?;
        let source = Source::Bucket {
            bucket: backup,
            snapshot: snapshot.clone(),
        };
        restore_from(&source, manifest, data, fsync, blobs, progress).await
    }
    .await;
    let _ = std::fs::remove_file(&snapshot);
    let _ = std::fs::remove_dir_all(&scratch);
    restored
}

/// Where a restore reads the backup.
enum Source<'a> {
    /// A backup folder.
    Folder(&'a Path),
    /// A bucket's prefix, with its metadata snapshot downloaded (and verified) to `snapshot`.
    Bucket {
        bucket: &'a S3Folder,
        snapshot: std::path::PathBuf,
    },
}

impl Source<'_> {
    /// The metadata snapshot, as a local file.
    fn snapshot(&self, manifest: &super::BackupManifest) -> std::path::PathBuf {
        match self {
            Source::Folder(root) => metadata_path(root, manifest),
            Source::Bucket { snapshot, .. } => snapshot.clone(),
        }
    }

    /// Blob `digest`'s content.
    async fn blob(&self, digest: &Digest) -> Result<wharf_storage::BlobStream, BackupError> {
        let lacks = || BackupError::Destination(format!("the backup lacks blob {digest}"));
        match self {
            Source::Folder(root) => read_file(&blob_path(root, digest))
                .await
                .map_err(|_| lacks()),
            Source::Bucket { bucket, .. } => bucket
                .read(&blob_key(digest))
                .await
                .map_err(|e| {
                    BackupError::Destination(format!(
                        "reading blob {digest} from {}: {e}",
                        bucket.url()
                    ))
                })?
                .ok_or_else(lacks),
        }
    }
}

async fn restore_from(
    source: &Source<'_>,
    manifest: super::BackupManifest,
    data: &Path,
    fsync: bool,
    blobs: Option<BlobStore>,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    check_schema(&source.snapshot(&manifest), &manifest).await?;
    let existing = std::fs::read_dir(data).ok();
    if existing.is_some_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::NotEmpty(format!(
            "{} is not empty; restore into a new folder",
            data.display()
        )));
    }
    let name = data
        .file_name()
        .ok_or_else(|| BackupError::NotEmpty(format!("{} names no folder", data.display())))?;
    let building = data.with_file_name(format!(".{}.restoring", name.to_string_lossy()));
    // A restore killed earlier left this; it is nobody's registry.
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building)
        .map_err(BackupError::io(format!("creating {}", building.display())))?;
    wharf_core::failpoint::hit("restore-started");
    let restored = restore_into(source, &building, fsync, blobs, progress, manifest).await;
    if restored.is_ok() {
        if data.exists() {
            // Empty (checked above): rename(2) cannot replace it by a folder with content.
            let _ = std::fs::remove_dir(data);
        }
        std::fs::rename(&building, data).map_err(BackupError::io(format!(
            "moving the restored registry to {}",
            data.display()
        )))?;
        if let Some(parent) = data.parent() {
            super::files::sync_folder(parent)?;
        }
    } else {
        let _ = std::fs::remove_dir_all(&building);
    }
    restored
}

/// Refuses a backup whose metadata has schema migrations this Wharf does not know (it was
/// taken by a newer version).
async fn check_schema(
    snapshot: &Path,
    manifest: &super::BackupManifest,
) -> Result<(), BackupError> {
    let snapshot = wharf_metadata_sqlite::SqliteSnapshot::open(snapshot).await?;
    let versions = snapshot.schema_versions().await;
    snapshot.close().await;
    let known = SqliteStore::known_schema_versions();
    if let Some(unknown) = versions?.into_iter().find(|v| !known.contains(v)) {
        return Err(BackupError::Destination(format!(
            "the backup was taken by a newer Wharf (its metadata has schema migration {unknown}, which \
             this version does not know); restore it with Wharf {} or newer",
            manifest.wharf_version
        )));
    }
    Ok(())
}

async fn restore_into(
    source: &Source<'_>,
    data: &Path,
    fsync: bool,
    blobs: Option<BlobStore>,
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
        read_file(&source.snapshot(&manifest)).await?,
        &paths.metadata,
        &scratch,
        &metadata,
        manifest.metadata.size,
    )
    .await?;

    let store = Arc::new(SqliteStore::open(&paths.metadata).await?);
    let forgotten = store.forget_transient_state().await?;
    progress.start(manifest.counts.blobs, manifest.counts.bytes);
    let target = match &blobs {
        None => BlobTarget::Folder(&paths.storage),
        Some(blobs) => BlobTarget::Store {
            blobs,
            // The restored registry's own gate (it has no holds now): the store's writes take
            // a permit.
            gate: WriteGate::open(
                store.clone(),
                DrainSettings::default(),
                Arc::new(Metrics::new()),
            )
            .await
            .map_err(wharf_registry::RegistryError::from)?,
        },
    };
    let counts = restore_blobs(&store, source, &target, &scratch, progress).await;
    drop(target);
    store.close().await;
    let (restored_blobs, bytes) = counts?;
    let _ = std::fs::remove_dir_all(&scratch);

    let registry = match blobs {
        None => {
            Registry::open_local(&paths, fsync, Limits::default(), DrainSettings::default()).await?
        }
        Some(blobs) => {
            Registry::open_with_blobs(&paths, blobs, Limits::default(), DrainSettings::default())
                .await?
        }
    };
    let fsck = registry.fsck(true).await;
    registry.close().await;
    Ok(RestoreReport {
        id: manifest.id,
        blobs: restored_blobs,
        bytes,
        forgotten,
        fsck: fsck?,
    })
}

/// Where a restore places blobs.
enum BlobTarget<'a> {
    /// The data folder's `storage/`, written as files.
    Folder(&'a Path),
    /// A blob store shared with other processes (S3), written through the restored
    /// registry's gate.
    Store {
        blobs: &'a BlobStore,
        gate: WriteGate,
    },
}

/// Places every live blob of the restored metadata where its record says it is.
async fn restore_blobs(
    store: &SqliteStore,
    source: &Source<'_>,
    target: &BlobTarget<'_>,
    scratch: &Path,
    progress: &dyn Progress,
) -> Result<(u64, u64), BackupError> {
    let (mut blobs, mut bytes) = (0u64, 0u64);
    let mut cursor = BlobCursor::new(PAGE);
    loop {
        let page = store.live_blobs(cursor.page()).await?;
        if !cursor.advance(&page) {
            break;
        }
        for blob in page {
            let content = source.blob(&blob.digest).await?;
            match target {
                BlobTarget::Folder(storage) => {
                    let path = storage.join(blob.storage_key.as_str());
                    write_verified(content, &path, scratch, &blob.digest, blob.size).await?;
                }
                BlobTarget::Store { blobs, gate } => {
                    let permit = gate
                        .admit(WriteIntent::Housekeeping { job: "restore" })
                        .await
                        .map_err(|e| BackupError::Corrupt(e.to_string()))?;
                    blobs
                        .restore_object(&permit, &blob.storage_key, &blob.digest, content)
                        .await
                        .map_err(|e| {
                            BackupError::Corrupt(format!(
                                "restoring blob {} into the bucket failed: {e}",
                                blob.digest
                            ))
                        })?;
                }
            }
            blobs += 1;
            bytes += blob.size;
            progress.advance(blob.size);
            progress.blob_done(true);
        }
    }
    Ok((blobs, bytes))
}
