//! A backup folder being written.
//!
//! ```text
//! INCOMPLETE          present from the first write until the backup is complete
//! backup.json         written last: what the backup holds (see BackupManifest)
//! metadata.db         the metadata snapshot (SQLite)
//! blobs/<alg>/<xx>/<hex>   blob content, named by digest, shared by successive backups
//! ```
//!
//! A backup interrupted at any point leaves `INCOMPLETE` behind, and `wharf backup verify` and
//! `wharf restore` refuse a folder that has it: an interrupted backup never looks complete. The
//! new snapshot and manifest are written beside the old ones and renamed over them only at the
//! end; blobs already there (from an earlier backup into the same folder) are not copied again.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;

use super::files::{blob_path, sync_folder, write_verified};
use super::{BackupError, BackupManifest};
use crate::digest::Digest;

/// Present while a backup is being written.
pub const INCOMPLETE: &str = "INCOMPLETE";
/// The manifest of a complete backup.
pub const MANIFEST: &str = "backup.json";
/// The metadata snapshot.
pub const METADATA: &str = "metadata.db";
/// Where files are written before they are moved into place.
const SCRATCH: &str = "tmp";
const PARTIAL: &str = ".partial";

/// A backup folder being written.
pub struct Destination {
    root: PathBuf,
}

impl Destination {
    /// Prepares `root` (created if missing) for a backup, and marks it incomplete until
    /// [`Destination::finish`]. A folder holding anything but backups is refused.
    pub fn create(root: &Path) -> Result<Destination, BackupError> {
        std::fs::create_dir_all(root)
            .map_err(BackupError::io(format!("creating {}", root.display())))?;
        let entries = std::fs::read_dir(root)
            .map_err(BackupError::io(format!("reading {}", root.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = ["blobs", SCRATCH, INCOMPLETE, MANIFEST, METADATA].contains(&name.as_str())
                || name.ends_with(PARTIAL);
            if !ours {
                return Err(BackupError::Destination(format!(
                    "{} holds {name:?}, which is not part of a backup; give an empty folder or an earlier backup's",
                    root.display()
                )));
            }
        }
        std::fs::write(
            root.join(INCOMPLETE),
            "a backup is being written here, or was interrupted\n",
        )
        .map_err(BackupError::io(format!(
            "marking {} incomplete",
            root.display()
        )))?;
        sync_folder(root)?;
        Ok(Destination {
            root: root.to_owned(),
        })
    }

    /// The backup folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the folder already has blob `digest` of `size` bytes (from an earlier backup).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(blob_path(&self.root, digest)).is_ok_and(|m| m.len() == size)
    }

    /// Writes blob `digest`, checking it has that digest and `size` bytes.
    pub async fn write_blob<E: std::fmt::Display>(
        &self,
        digest: &Digest,
        size: u64,
        content: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<(), BackupError> {
        write_verified(
            content,
            &blob_path(&self.root, digest),
            &self.root.join(SCRATCH),
            digest,
            size,
        )
        .await
    }

    /// Writes the metadata snapshot, checking it has `digest` and `size` bytes; it replaces the
    /// folder's current one only at [`Destination::finish`].
    pub async fn write_metadata<E: std::fmt::Display>(
        &self,
        digest: &Digest,
        size: u64,
        content: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<(), BackupError> {
        let target = self.root.join(format!("{METADATA}{PARTIAL}"));
        write_verified(content, &target, &self.root.join(SCRATCH), digest, size).await
    }

    /// Completes the backup: the snapshot and the manifest replace the folder's, and the folder
    /// stops being marked incomplete — the last step, so a crash before it leaves the mark.
    pub fn finish(self, manifest: &BackupManifest) -> Result<(), BackupError> {
        let root = &self.root;
        let manifest_partial = root.join(format!("{MANIFEST}{PARTIAL}"));
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| BackupError::Destination(e.to_string()))?;
        std::fs::write(&manifest_partial, json)
            .and_then(|()| std::fs::File::open(&manifest_partial)?.sync_all())
            .map_err(BackupError::io(format!(
                "writing {}",
                manifest_partial.display()
            )))?;
        for name in [METADATA, MANIFEST] {
            let partial = root.join(format!("{name}{PARTIAL}"));
            std::fs::rename(&partial, root.join(name)).map_err(BackupError::io(format!(
                "moving {} into place",
                partial.display()
            )))?;
            crate::failpoint::hit(&format!("backup-renamed-{name}"));
        }
        sync_folder(root)?;
        std::fs::remove_file(root.join(INCOMPLETE))
            .map_err(BackupError::io(format!("completing {}", root.display())))?;
        sync_folder(root)?;
        let _ = std::fs::remove_dir_all(root.join(SCRATCH));
        Ok(())
    }
}
