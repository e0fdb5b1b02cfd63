//! A backup folder being written: a folder, or a bucket's prefix (`s3://bucket/prefix`) with
//! the same layout.
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
//!
//! In a bucket the same holds with S3's own guarantee: an object appears whole or not at all,
//! and each blob and the snapshot are verified before their multipart upload completes; so
//! `backup.json`, one `PUT` after everything it names is in place, is the commit. A bucket has
//! no lock: one backup at a time into a prefix is the operator's to ensure.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;

use super::BackupManifest;
use super::files::{blob_key, blob_path, sync_folder, write_verified};
use wharf_core::digest::Digest;
use wharf_registry::backups::BackupError;
use wharf_storage::S3Folder;

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
    kind: Kind,
}

enum Kind {
    Folder { root: PathBuf, _lock: std::fs::File },
    Bucket(S3Folder),
}

/// The probe objects a bucket's check writes and deletes (left if the delete failed).
const STARTUP_CHECK: &str = "wharf-startup-check/";

fn storage_error(what: String) -> impl FnOnce(wharf_storage::StorageError) -> BackupError {
    move |error| BackupError::Destination(format!("{what}: {error}"))
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
            kind: Kind::Folder {
                root: root.to_owned(),
                _lock: lock,
            },
        })
    }

    /// Prepares a bucket's prefix for a backup, as [`Destination::create`] a folder: a prefix
    /// holding anything but backups is refused, and one without a complete backup is marked
    /// incomplete until [`Destination::finish`].
    pub async fn create_in_bucket(bucket: S3Folder) -> Result<Destination, BackupError> {
        let url = bucket.url();
        let names = bucket
            .top_level()
            .await
            .map_err(storage_error(format!("listing {url}")))?;
        for name in &names {
            let ours = ["blobs/", STARTUP_CHECK, INCOMPLETE, MANIFEST].contains(&name.as_str())
                || is_metadata_file_name(name);
            if !ours {
                return Err(BackupError::Destination(format!(
                    "{url} holds {name:?}, which is not part of a backup; give an empty prefix or an earlier backup's"
                )));
            }
        }
        if !names.iter().any(|n| n == MANIFEST) {
            bucket
                .put(
                    INCOMPLETE,
                    Bytes::from_static(
                        b"a first backup is being written here, or was interrupted\n",
                    ),
                )
                .await
                .map_err(storage_error(format!("marking {url} incomplete")))?;
        }
        Ok(Destination {
            kind: Kind::Bucket(bucket),
        })
    }

    /// Where the backup is written: a folder's path or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Folder { root, .. } => root.display().to_string(),
            Kind::Bucket(bucket) => bucket.url(),
        }
    }

    /// Whether the destination already has blob `digest` of `size` bytes (from an earlier
    /// backup).
    pub async fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, BackupError> {
        match &self.kind {
            Kind::Folder { root, .. } => {
                Ok(std::fs::metadata(blob_path(root, digest)).is_ok_and(|m| m.len() == size))
            }
            Kind::Bucket(bucket) => {
                let key = blob_key(digest);
                let found = bucket.size(&key).await.map_err(storage_error(format!(
                    "looking for {key} in {}",
                    bucket.url()
                )))?;
                Ok(found == Some(size))
            }
        }
    }

    /// Writes blob `digest`, checking it has that digest and `size` bytes.
    pub async fn write_blob<E: std::fmt::Display>(
        &self,
        digest: &Digest,
        size: u64,
        content: impl Stream<Item = Result<Bytes, E>> + Send + Unpin,
    ) -> Result<(), BackupError> {
        match &self.kind {
            Kind::Folder { root, .. } => {
                write_verified(
                    content,
                    &blob_path(root, digest),
                    &root.join(SCRATCH),
                    digest,
                    size,
                )
                .await
            }
            Kind::Bucket(bucket) => {
                put_verified(bucket, &blob_key(digest), digest, size, content).await
            }
        }
    }

    /// Writes the metadata snapshot, checking it has `digest` and `size` bytes, under the name
    /// [`metadata_file_name`] gives; the backup refers to it from [`Destination::finish`].
    pub async fn write_metadata<E: std::fmt::Display>(
        &self,
        digest: &Digest,
        size: u64,
        content: impl Stream<Item = Result<Bytes, E>> + Send + Unpin,
    ) -> Result<(), BackupError> {
        match &self.kind {
            Kind::Folder { root, .. } => {
                let target = root.join(metadata_file_name(digest));
                write_verified(content, &target, &root.join(SCRATCH), digest, size).await
            }
            Kind::Bucket(bucket) => {
                put_verified(bucket, &metadata_file_name(digest), digest, size, content).await
            }
        }
    }

    /// Completes the backup: `backup.json` is renamed into place (the commit), then the mark and
    /// the snapshots no backup refers to any more are removed.
    pub async fn finish(self, manifest: &BackupManifest) -> Result<(), BackupError> {
        let root = match &self.kind {
            Kind::Folder { root, .. } => root,
            Kind::Bucket(bucket) => return finish_in_bucket(bucket, manifest).await,
        };
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

/// Streams `content` to `key` in the bucket if it has `digest` and `size` bytes.
async fn put_verified<E: std::fmt::Display>(
    bucket: &S3Folder,
    key: &str,
    digest: &Digest,
    size: u64,
    content: impl Stream<Item = Result<Bytes, E>> + Send + Unpin,
) -> Result<(), BackupError> {
    let written = bucket.put_verified(key, digest, size, content).await;
    written.map_err(|e| match e {
        wharf_storage::StorageError::Io(e) => {
            BackupError::Corrupt(format!("{key} in {}: {e}", bucket.url()))
        }
        other => BackupError::Destination(format!("writing {key} to {}: {other}", bucket.url())),
    })
}

/// Completes a backup in a bucket: `backup.json` in one `PUT` (the commit), then the mark
/// and the snapshots no backup refers to any more are removed.
async fn finish_in_bucket(bucket: &S3Folder, manifest: &BackupManifest) -> Result<(), BackupError> {
    let url = bucket.url();
    let json =
        serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Destination(e.to_string()))?;
    wharf_core::failpoint::hit("backup-manifest-written");
    bucket
        .put(MANIFEST, Bytes::from(json))
        .await
        .map_err(storage_error(format!("writing {MANIFEST} to {url}")))?;
    wharf_core::failpoint::hit("backup-committed");
    let _ = bucket.delete(INCOMPLETE).await;
    if let Ok(names) = bucket.top_level().await {
        for name in names {
            if is_metadata_file_name(&name) && name != manifest.metadata.file {
                let _ = bucket.delete(&name).await;
            }
        }
    }
    Ok(())
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
