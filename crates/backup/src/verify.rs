//! `wharf backup verify`: is a backup, in a folder or a bucket, a complete, intact backup?

use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use serde::Serialize;

use super::Progress;
use super::destination::{INCOMPLETE, MANIFEST, is_metadata_file_name};
use super::files::{blob_key, blob_path, write_verified};
use super::manifest::{BackupManifest, FORMAT_VERSION};
use wharf_core::digest::{Algorithm, ContentHasher, Digest};
use wharf_metadata::BlobCursor;
use wharf_metadata_sqlite::SqliteSnapshot;
use wharf_registry::backups::BackupError;
use wharf_registry::backups::{digest_file, hash_file};
use wharf_storage::S3Folder;

const PAGE: u32 = 500;

/// What verifying a backup found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// The backup's identifier, if its manifest could be read.
    pub id: Option<String>,
    /// Blobs checked.
    pub blobs_checked: u64,
    /// Bytes hashed.
    pub bytes_checked: u64,
    /// What is wrong; empty for a good backup.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the backup is complete and intact.
    pub fn is_good(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads a complete backup's manifest, refusing an incomplete backup or one in an unknown format.
pub fn read_manifest(root: &Path) -> Result<BackupManifest, String> {
    // `backup.json` is written last, by a rename: with it the backup is complete, even if a
    // crash came before the mark was removed.
    if !root.join(MANIFEST).exists() && root.join(INCOMPLETE).exists() {
        return Err(format!(
            "{} holds an incomplete backup: it was interrupted ({INCOMPLETE} is present); take a new one",
            root.display()
        ));
    }
    let text = std::fs::read(root.join(MANIFEST)).map_err(|e| {
        format!(
            "{} is not a backup: no readable {MANIFEST} ({e})",
            root.display()
        )
    })?;
    parse_manifest(&text)
}

/// Reads a complete backup's manifest from its text, refusing one in an unknown format.
pub fn parse_manifest(text: &[u8]) -> Result<BackupManifest, String> {
    let manifest: BackupManifest =
        serde_json::from_slice(text).map_err(|e| format!("{MANIFEST} is damaged: {e}"))?;
    if manifest.format != FORMAT_VERSION {
        return Err(format!(
            "the backup has format {}, which this Wharf (format {FORMAT_VERSION}) cannot read",
            manifest.format
        ));
    }
    if !is_metadata_file_name(&manifest.metadata.file) {
        return Err(format!(
            "{MANIFEST} names no valid metadata snapshot: {:?}",
            manifest.metadata.file
        ));
    }
    Ok(manifest)
}

/// The metadata snapshot a complete backup's manifest names (validated by [`read_manifest`]).
pub fn metadata_path(root: &Path, manifest: &BackupManifest) -> PathBuf {
    root.join(&manifest.metadata.file)
}

/// Checks that the metadata snapshot is the one the manifest names.
pub async fn check_metadata(root: &Path, manifest: &BackupManifest) -> Result<(), String> {
    let (size, digest) = digest_file(&metadata_path(root, manifest))
        .await
        .map_err(|e| e.to_string())?;
    if size != manifest.metadata.size || digest.to_string() != manifest.metadata.digest {
        return Err(format!(
            "{} has digest {digest} and {size} bytes, but the backup was written with {} and {} bytes",
            manifest.metadata.file, manifest.metadata.digest, manifest.metadata.size
        ));
    }
    Ok(())
}

/// Verifies the backup in `root`: complete, its snapshot intact, every blob it references
/// present with the right size and (when `hash`) content.
pub async fn verify(
    root: &Path,
    hash: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport, BackupError> {
    let mut report = VerifyReport::default();
    let manifest = match read_manifest(root) {
        Ok(manifest) => manifest,
        Err(problem) => {
            report.problems.push(problem);
            return Ok(report);
        }
    };
    report.id = Some(manifest.id.clone());
    if let Err(problem) = check_metadata(root, &manifest).await {
        report.problems.push(problem);
        return Ok(report);
    }
    check_blobs(
        &metadata_path(root, &manifest),
        &manifest,
        &Blobs::Folder(root),
        hash,
        progress,
        report,
    )
    .await
}

/// Verifies the backup under a bucket's prefix as [`verify`] does a folder's: its metadata
/// snapshot is downloaded (and checked against `backup.json`) into a temporary folder, and
/// each blob's size is read from the bucket, its content (when `hash`) streamed and hashed.
pub async fn verify_bucket(
    bucket: &S3Folder,
    hash: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport, BackupError> {
    let mut report = VerifyReport::default();
    let manifest = match read_bucket_manifest(bucket).await {
        Ok(manifest) => manifest,
        Err(BackupError::Destination(problem)) => {
            report.problems.push(problem);
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    report.id = Some(manifest.id.clone());
    let scratch = std::env::temp_dir().join(format!("wharf-verify-{}", uuid::Uuid::new_v4()));
    let snapshot = scratch.join(&manifest.metadata.file);
    let checked = async {
        match download_snapshot(bucket, &manifest, &snapshot, &scratch.join("partial")).await {
            Ok(()) => {}
            Err(BackupError::Corrupt(problem) | BackupError::Destination(problem)) => {
                report.problems.push(problem);
                return Ok(report);
            }
            Err(error) => return Err(error),
        }
        check_blobs(
            &snapshot,
            &manifest,
            &Blobs::Bucket(bucket),
            hash,
            progress,
            report,
        )
        .await
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    checked
}

/// Reads the manifest of the backup under a bucket's prefix, refusing an incomplete backup or
/// a prefix that holds none (as [`BackupError::Destination`]).
pub(crate) async fn read_bucket_manifest(bucket: &S3Folder) -> Result<BackupManifest, BackupError> {
    let url = bucket.url();
    let unreadable =
        |e: wharf_storage::StorageError| BackupError::Destination(format!("reading {url}: {e}"));
    match bucket.read(MANIFEST).await.map_err(unreadable)? {
        Some(stream) => {
            let bytes: Vec<u8> = stream
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await
                .map_err(|e| BackupError::Destination(format!("reading {url}: {e}")))?;
            parse_manifest(&bytes).map_err(BackupError::Destination)
        }
        None => {
            let incomplete = bucket.size(INCOMPLETE).await.map_err(unreadable)?.is_some();
            Err(BackupError::Destination(if incomplete {
                format!(
                    "{url} holds an incomplete backup: it was interrupted ({INCOMPLETE} is present); take a new one"
                )
            } else {
                format!("{url} is not a backup: it has no {MANIFEST}")
            }))
        }
    }
}

/// Downloads the metadata snapshot of the backup under a bucket's prefix to `snapshot`,
/// checking its digest and size against the manifest (through `scratch`, so that a damaged
/// download is never found at `snapshot`).
pub(crate) async fn download_snapshot(
    bucket: &S3Folder,
    manifest: &BackupManifest,
    snapshot: &Path,
    scratch: &Path,
) -> Result<(), BackupError> {
    let url = bucket.url();
    let digest: Digest = manifest
        .metadata
        .digest
        .parse()
        .map_err(|e| BackupError::Corrupt(format!("{MANIFEST}: {e}")))?;
    let content = bucket
        .read(&manifest.metadata.file)
        .await
        .map_err(|e| BackupError::Destination(format!("reading {url}: {e}")))?
        .ok_or_else(|| {
            BackupError::Destination(format!(
                "{url} lacks its metadata snapshot {}",
                manifest.metadata.file
            ))
        })?;
    write_verified(content, snapshot, scratch, &digest, manifest.metadata.size).await
}

/// Where a backup's blobs are.
enum Blobs<'a> {
    Folder(&'a Path),
    Bucket(&'a S3Folder),
}

impl Blobs<'_> {
    /// Blob `digest`'s size, if it is there.
    async fn size(&self, digest: &Digest) -> Result<Option<u64>, BackupError> {
        match self {
            Blobs::Folder(root) => Ok(std::fs::metadata(blob_path(root, digest))
                .ok()
                .map(|m| m.len())),
            Blobs::Bucket(bucket) => bucket
                .size(&blob_key(digest))
                .await
                .map_err(|e| BackupError::Destination(format!("reading {}: {e}", bucket.url()))),
        }
    }

    /// The digest of blob `digest`'s content, hashed with its algorithm.
    async fn content_digest(&self, digest: &Digest) -> Result<Digest, BackupError> {
        match self {
            Blobs::Folder(root) => Ok(hash_file(&blob_path(root, digest), digest.algorithm())
                .await?
                .1),
            Blobs::Bucket(bucket) => {
                let unreadable = |e: String| {
                    BackupError::Destination(format!(
                        "reading blob {digest} from {}: {e}",
                        bucket.url()
                    ))
                };
                let stream = bucket
                    .read(&blob_key(digest))
                    .await
                    .map_err(|e| unreadable(e.to_string()))?
                    .ok_or_else(|| unreadable("it is gone".to_owned()))?;
                let hasher = stream
                    .map_err(|e| unreadable(e.to_string()))
                    .try_fold(
                        ContentHasher::new(digest.algorithm()),
                        |mut hasher, chunk| async move {
                            hasher.update(&chunk);
                            Ok(hasher)
                        },
                    )
                    .await?;
                Ok(hasher.finish())
            }
        }
    }
}

/// Checks every blob the snapshot at `snapshot` references: present in `blobs` with the right
/// size and (when `hash`) content; and the snapshot's list of blobs the one the manifest was
/// written with. Adds what is wrong to `report`.
async fn check_blobs(
    snapshot: &Path,
    manifest: &BackupManifest,
    blobs: &Blobs<'_>,
    hash: bool,
    progress: &dyn Progress,
    mut report: VerifyReport,
) -> Result<VerifyReport, BackupError> {
    let snapshot = SqliteSnapshot::open(snapshot).await?;
    let counts = snapshot.counts().await?;
    if counts != manifest.counts {
        report.problems.push(format!(
            "the snapshot holds {counts:?}, but the backup was written with {:?}",
            manifest.counts
        ));
    }
    progress.start(counts.blobs, counts.bytes);
    let mut list = ContentHasher::new(Algorithm::Sha256);
    let mut cursor = BlobCursor::new(PAGE);
    loop {
        let page = snapshot.live_blobs(cursor.page()).await?;
        if !cursor.advance(&page) {
            break;
        }
        for blob in page {
            list.update(format!("{} {}\n", blob.digest, blob.size).as_bytes());
            report.blobs_checked += 1;
            match blobs.size(&blob.digest).await? {
                None => report
                    .problems
                    .push(format!("blob {} is missing", blob.digest)),
                Some(size) if size != blob.size => report.problems.push(format!(
                    "blob {} has {size} bytes, not {}",
                    blob.digest, blob.size
                )),
                Some(_) if hash => {
                    let actual = blobs.content_digest(&blob.digest).await?;
                    report.bytes_checked += blob.size;
                    if actual != blob.digest {
                        report.problems.push(format!(
                            "blob {} holds content with digest {actual}",
                            blob.digest
                        ));
                    }
                }
                Some(_) => {}
            }
            progress.advance(blob.size);
            progress.blob_done(false);
        }
    }
    snapshot.close().await;
    if list.finish().to_string() != manifest.blobs_list_sha256 {
        report.problems.push(
            "the snapshot's list of blobs is not the one the backup was written with".to_owned(),
        );
    }
    Ok(report)
}
