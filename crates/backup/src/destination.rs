//! A backup folder being written.
//!
//! ```text
//! backup.json                   the complete backup: what it holds (see BackupManifest)
//! metadata-<digest>.db          its metadata snapshot (SQLite), named in backup.json
//! blobs/<alg>/<xx>/<hex>        blob content, named by digest, shared by successive backups
//! INCOMPLETE                    present while the folder has no complete backup yet
//! .lock                         held by the backup writing the folder
//! ```
//!
//! Renaming `backup.json.partial` over `backup.json` is the one step that completes a backup:
//! everything it names (the snapshot, the blobs) is in place, verified and flushed before. A
//! backup interrupted at any point therefore leaves the folder as it was — empty but marked
//! `INCOMPLETE` for a first backup (which `wharf backup verify` and `wharf restore` refuse), or
//! still holding the previous complete backup, intact, for a later one. Blobs already there are
//! not copied again. One backup writes a folder at a time.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;

use super::BackupManifest;
use super::files::{blob_path, sync_folder, write_verified};
use wharf_core::digest::Digest;
use wharf_registry::backups::BackupError;

/// Present while the folder has no complete backup.
pub const INCOMPLETE: &str = "INCOMPLETE";
/// The manifest of the complete backup.
pub const MANIFEST: &str = "backup.json";
/// Held by the backup writing the folder.
const LOCK: &str = ".lock";
/// Where files are written before they are moved into place.
const SCRATCH: &str = "tmp";
const PARTIAL: &str = ".partial";

/// The file name of a metadata snapshot with `digest`.
pub fn metadata_file_name(digest: &Digest) -> String {
    format!("metadata-{}.db", &digest.hex()[..16])
}

/// Whether `name` is a metadata snapshot's file name (and nothing that leads elsewhere).
pub fn is_metadata_file_name(name: &str) -> bool {
    name.strip_prefix("metadata-")
        .and_then(|rest| rest.strip_suffix(".db"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A backup folder being written; holds the folder's lock until dropped.
pub struct Destination {
    root: PathBuf,
    _lock: std::fs::File,
}

impl Destination {
    /// Prepares `root` (created if missing) for a backup. A folder holding anything but backups
    /// is refused, and so is one another backup is writing. A folder without a complete backup
    /// is marked incomplete until [`Destination::finish`].
    pub fn create(root: &Path) -> Result<Destination, BackupError> {
        std::fs::create_dir_all(root)
            .map_err(BackupError::io(format!("creating {}", root.display())))?;
        let entries = std::fs::read_dir(root)
            .map_err(BackupError::io(format!("reading {}", root.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = ["blobs", SCRATCH, INCOMPLETE, MANIFEST, LOCK].contains(&name.as_str())
                || is_metadata_file_name(&name)
                || name.ends_with(PARTIAL);
            if !ours {
                return Err(BackupError::Destination(format!(
                    "{} holds {name:?}, which is not part of a backup; give an empty folder or an earlier backup's",
                    root.display()
                )));
            }
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK))
            .map_err(BackupError::io(format!("locking {}", root.display())))?;
        if let Err(error) = lock.try_lock() {
            return Err(match error {
                std::fs::TryLockError::WouldBlock => BackupError::Destination(format!(
                    "another backup is writing to {}; wait for it",
                    root.display()
                )),
                std::fs::TryLockError::Error(error) => {
                    BackupError::io(format!("locking {}", root.display()))(error)
                }
            });
        }
        // Leftovers of an interrupted backup: this one rewrites what it needs.
        let _ = std::fs::remove_dir_all(root.join(SCRATCH));
        if !root.join(MANIFEST).exists() {
            std::fs::write(
                root.join(INCOMPLETE),
                "a first backup is being written here, or was interrupted\n",
            )
            .map_err(BackupError::io(format!(
                "marking {} incomplete",
                root.display()
            )))?;
            sync_folder(root)?;
        }
        Ok(Destination {
            root: root.to_owned(),
            _lock: lock,
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

    /// Writes the metadata snapshot, checking it has `digest` and `size` bytes, under the name
    /// [`metadata_file_name`] gives; the backup refers to it from [`Destination::finish`].
    pub async fn write_metadata<E: std::fmt::Display>(
        &self,
        digest: &Digest,
        size: u64,
        content: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<(), BackupError> {
        let target = self.root.join(metadata_file_name(digest));
        write_verified(content, &target, &self.root.join(SCRATCH), digest, size).await
    }

    /// Completes the backup: `backup.json` is renamed into place (the commit), then the mark and
    /// the snapshots no backup refers to any more are removed.
    pub fn finish(self, manifest: &BackupManifest) -> Result<(), BackupError> {
        let root = &self.root;
        let partial = root.join(format!("{MANIFEST}{PARTIAL}"));
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| BackupError::Destination(e.to_string()))?;
        std::fs::write(&partial, json)
            .and_then(|()| std::fs::File::open(&partial)?.sync_all())
            .map_err(BackupError::io(format!("writing {}", partial.display())))?;
        wharf_core::failpoint::hit("backup-manifest-written");
        std::fs::rename(&partial, root.join(MANIFEST)).map_err(BackupError::io(format!(
            "moving {} into place",
            partial.display()
        )))?;
        sync_folder(root)?;
        wharf_core::failpoint::hit("backup-committed");
        let _ = std::fs::remove_file(root.join(INCOMPLETE));
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_metadata_file_name(&name) && name != manifest.metadata.file {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(root.join(SCRATCH));
        sync_folder(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_file_names_lead_nowhere_else() {
        let name = metadata_file_name(&Digest::sha256_of(b"x"));
        assert!(is_metadata_file_name(&name), "{name}");
        for bad in [
            "metadata.db",
            "metadata-../../x.db",
            "metadata-0123456789abcdef/x.db",
            "../metadata-0123456789abcdef.db",
        ] {
            assert!(!is_metadata_file_name(bad), "{bad}");
        }
    }
}
