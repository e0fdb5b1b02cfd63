//! Writing content-addressed files safely: into a temporary file, hashed as they arrive, checked
//! against the expected digest and size, flushed, then renamed into place — so a file at its
//! final path is always complete and correct.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use wharf_core::digest::{ContentHasher, Digest};
use wharf_registry::backups::BackupError;

/// Where a blob lives in a backup folder: `blobs/<algorithm>/<xx>/<hex>`.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join(blob_key(digest))
}

/// A blob's name in a backup, relative to its folder or prefix: `blobs/<algorithm>/<xx>/<hex>`.
pub fn blob_key(digest: &Digest) -> String {
    format!(
        "blobs/{}/{}/{}",
        digest.algorithm().name(),
        &digest.hex()[..2],
        digest.hex()
    )
}

/// Writes `content` to `target`, through a temporary file in `scratch`, if it has `digest` and
/// `size`; otherwise writes nothing and fails.
pub async fn write_verified<E: std::fmt::Display>(
    mut content: impl Stream<Item = Result<Bytes, E>> + Unpin,
    target: &Path,
    scratch: &Path,
    digest: &Digest,
    size: u64,
) -> Result<(), BackupError> {
    tokio::fs::create_dir_all(scratch)
        .await
        .map_err(BackupError::io(format!("creating {}", scratch.display())))?;
    let temporary = scratch.join(uuid::Uuid::new_v4().simple().to_string());
    let written = async {
        let mut file = tokio::fs::File::create(&temporary)
            .await
            .map_err(BackupError::io(format!("creating {}", temporary.display())))?;
        let mut hasher = ContentHasher::new(digest.algorithm());
        let mut length = 0u64;
        while let Some(chunk) = content.next().await {
            let chunk = chunk.map_err(|e| BackupError::Source(format!("reading {digest}: {e}")))?;
            hasher.update(&chunk);
            length += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(BackupError::io(format!("writing {}", temporary.display())))?;
        }
        let actual = hasher.finish();
        if actual != *digest || length != size {
            return Err(BackupError::Corrupt(format!(
                "{digest}: the content read has digest {actual} and {length} bytes, not {size}"
            )));
        }
        file.sync_all()
            .await
            .map_err(BackupError::io(format!("flushing {}", temporary.display())))?;
        let (target, moved) = (target.to_owned(), temporary.clone());
        // The rename, and any folder created for it, must be on disk too before anything
        // (a backup.json) says the file is there.
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = target.parent() {
                create_folders_durably(parent)?;
            }
            std::fs::rename(&moved, &target).map_err(BackupError::io(format!(
                "moving {} into place",
                target.display()
            )))?;
            match target.parent() {
                Some(parent) => sync_folder(parent),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| BackupError::io("moving a file into place")(std::io::Error::other(e)))?
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&temporary).await;
    }
    written
}

/// Creates `folder` and its missing parents, flushing each new entry to disk.
fn create_folders_durably(folder: &Path) -> Result<(), BackupError> {
    if folder.is_dir() {
        return Ok(());
    }
    if let Some(parent) = folder.parent() {
        create_folders_durably(parent)?;
    }
    match std::fs::create_dir(folder) {
        Ok(()) => {}
        // Another writer created it meanwhile (blobs are written concurrently).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(BackupError::io(format!("creating {}", folder.display()))(e)),
    }
    match folder.parent() {
        Some(parent) => sync_folder(parent),
        None => Ok(()),
    }
}

/// Flushes a folder's entries (renames into it) to disk.
pub fn sync_folder(folder: &Path) -> Result<(), BackupError> {
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io(format!("flushing {}", folder.display())))
}

/// A file's content as a stream of chunks.
pub async fn read_file(path: &Path) -> Result<wharf_storage::BlobStream, BackupError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(BackupError::io(format!("opening {}", path.display())))?;
    Ok(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).boxed())
}
