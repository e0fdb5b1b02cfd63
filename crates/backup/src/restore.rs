//! `wharf restore`: a registry from a backup, in an empty data folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Progress;
use super::files::{blob_key, blob_path, read_file, write_verified};
use super::verify::{
    check_metadata, download_snapshot, metadata_path, read_bucket_manifest, read_manifest,
};
use std::sync::Arc;
use wharf_core::digest::Digest;
use wharf_storage::S3Folder;

use wharf_gate::metrics::Metrics;
use wharf_gate::{DrainSettings, WriteGate, WriteIntent};
use wharf_metadata::{BlobCursor, MetadataStore};
use wharf_metadata_postgres::PostgresStore;
use wharf_metadata_sqlite::SqliteStore;
use wharf_registry::backups::BackupError;
use wharf_registry::{DataPaths, FsckReport, Limits, MetadataDatabase, Registry};
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

/// Where a restore puts the registry.
pub struct RestoreTarget {
    /// The data folder, which must not exist or be empty.
    pub data: PathBuf,
    /// Whether blob files are flushed to disk as they are written.
    pub fsync: bool,
    /// The blob store (an S3 bucket) to write the blobs into; `None` for the data folder's
    /// `storage/`.
    pub blobs: Option<BlobStore>,
    /// The metadata database: SQLite in the data folder, or an empty PostgreSQL database.
    pub metadata: MetadataDatabase,
}

impl RestoreTarget {
    /// A registry all in the data folder `data`: SQLite metadata, blobs in `storage/`.
    pub fn folder(data: &Path, fsync: bool) -> Self {
        RestoreTarget {
            data: data.to_owned(),
            fsync,
            blobs: None,
            metadata: MetadataDatabase::Sqlite,
        }
    }
}

/// Restores the backup in `backup` into `target`, then checks the result with fsck. The
/// restored registry has no holds: it starts read-write. The data folder is built beside
/// `target.data` and renamed into place at the end, and PostgreSQL metadata is written in one
/// transaction committed just before, so a restore that fails — or is killed — never leaves
/// half a registry.
pub async fn restore(
    backup: &Path,
    target: RestoreTarget,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let manifest = read_manifest(backup).map_err(BackupError::Destination)?;
    check_metadata(backup, &manifest)
        .await
        .map_err(BackupError::Destination)?;
    let source = Source::Folder(backup);
    restore_from(&source, manifest, target, progress).await
}

/// As [`restore`], from a backup in a bucket's prefix (`s3://bucket/prefix`):
/// its metadata snapshot is downloaded (verified) beside `data` first, its blobs stream from
/// the bucket, each verified again as it is placed.
pub async fn restore_from_bucket(
    backup: &S3Folder,
    target: RestoreTarget,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let data = target.data.clone();
    let data = data.as_path();
    let manifest = read_bucket_manifest(backup).await?;
    let name = data
        .file_name()
        .ok_or_else(|| BackupError::NotEmpty(format!("{} names no folder", data.display())))?;
    let snapshot = data.with_file_name(format!(".{}.snapshot", name.to_string_lossy()));
    let scratch = data.with_file_name(format!(".{}.snapshot-scratch", name.to_string_lossy()));
    let restored = async {
        download_snapshot(backup, &manifest, &snapshot, &scratch).await?;
        let source = Source::Bucket {
            bucket: backup,
            snapshot: snapshot.clone(),
        };
        restore_from(&source, manifest, target, progress).await
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
        snapshot: PathBuf,
    },
}

impl Source<'_> {
    /// The metadata snapshot, as a local file.
    fn snapshot(&self, manifest: &super::BackupManifest) -> PathBuf {
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
    target: RestoreTarget,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    check_schema(&source.snapshot(&manifest), &manifest).await?;
    let data = target.data.as_path();
    let existing = std::fs::read_dir(data).ok();
    if existing.is_some_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::NotEmpty(format!(
            "{} is not empty; restore into a new folder",
            data.display()
        )));
    }
    // Checked before any blob is copied; checked again as the rows are written.
    let postgres = match &target.metadata {
        MetadataDatabase::Sqlite => None,
        MetadataDatabase::Postgres(options) => {
            let store = PostgresStore::connect(options).await?;
            if let Some(refusal) = store.refuses_restore().await? {
                store.close().await;
                return Err(BackupError::NotEmpty(refusal));
            }
            Some(store)
        }
    };
    let name = data
        .file_name()
        .ok_or_else(|| BackupError::NotEmpty(format!("{} names no folder", data.display())))?;
    let building = data.with_file_name(format!(".{}.restoring", name.to_string_lossy()));
    // A restore killed earlier left this; it is nobody's registry.
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building)
        .map_err(BackupError::io(format!("creating {}", building.display())))?;
    wharf_core::failpoint::hit("restore-started");
    let restored = restore_into(source, &building, &target, postgres, progress, manifest).await;
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
    target: &RestoreTarget,
    postgres: Option<PostgresStore>,
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
    // The snapshot becomes the restored SQLite database; with PostgreSQL it is only where the
    // rows are read from, and is removed once they are written.
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
    let blob_target = match &target.blobs {
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
    let counts = restore_blobs(&store, source, &blob_target, &scratch, progress).await;
    drop(blob_target);
    let (restored_blobs, bytes) = match counts {
        Ok(counts) => counts,
        Err(error) => {
            store.close().await;
            return Err(error);
        }
    };
    if let Some(postgres) = postgres {
        let copied = copy_to_postgres(&store, &postgres).await;
        store.close().await;
        postgres.close().await;
        copied?;
        for file in ["", "-wal", "-shm"] {
            let mut path = paths.metadata.clone().into_os_string();
            path.push(file);
            let _ = std::fs::remove_file(path);
        }
    } else {
        store.close().await;
    }
    let _ = std::fs::remove_dir_all(&scratch);

    let blobs = match &target.blobs {
        None => BlobStore::filesystem(&paths.storage, target.fsync)
            .map_err(wharf_registry::RegistryError::from)?,
        Some(blobs) => blobs.clone(),
    };
    let registry = Registry::open(
        &target.metadata,
        &paths,
        blobs,
        Limits::default(),
        DrainSettings::default(),
    )
    .await?;
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

/// Writes the restored snapshot's rows into the empty PostgreSQL database, in one transaction.
async fn copy_to_postgres(
    snapshot: &SqliteStore,
    postgres: &PostgresStore,
) -> Result<(), BackupError> {
    let mut import = postgres.begin_import().await?;
    snapshot
        .begin_export()
        .await?
        .copy_into(&mut import)
        .await?;
    wharf_core::failpoint::hit("restore-rows-written");
    import.commit().await?;
    Ok(())
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
