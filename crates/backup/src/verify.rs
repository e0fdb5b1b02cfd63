//! `wharf backup verify`: is a backup folder a complete, intact backup?

use std::path::Path;

use serde::Serialize;

use super::Progress;
use super::destination::{INCOMPLETE, MANIFEST, is_metadata_file_name};
use super::files::blob_path;
use super::manifest::{BackupManifest, FORMAT_VERSION};
use wharf_core::digest::{Algorithm, ContentHasher};
use wharf_metadata::BlobCursor;
use wharf_metadata_sqlite::SqliteSnapshot;
use wharf_registry::backups::BackupError;
use wharf_registry::backups::{digest_file, hash_file};

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
pub fn metadata_path(root: &Path, manifest: &BackupManifest) -> std::path::PathBuf {
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
    let snapshot = SqliteSnapshot::open(&metadata_path(root, &manifest)).await?;
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
            let path = blob_path(root, &blob.digest);
            match std::fs::metadata(&path) {
                Err(_) => report
                    .problems
                    .push(format!("blob {} is missing", blob.digest)),
                Ok(m) if m.len() != blob.size => report.problems.push(format!(
                    "blob {} has {} bytes, not {}",
                    blob.digest,
                    m.len(),
                    blob.size
                )),
                Ok(_) if hash => {
                    let (_, actual) = hash_file(&path, blob.digest.algorithm()).await?;
                    report.bytes_checked += blob.size;
                    if actual != blob.digest {
                        report.problems.push(format!(
                            "blob {} holds content with digest {actual}",
                            blob.digest
                        ));
                    }
                }
                Ok(_) => {}
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
