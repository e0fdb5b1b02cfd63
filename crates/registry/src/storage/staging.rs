//! The staging area of uploads on the local file system: one file per upload session, appended to
//! by each request of the session, whose committed length lives in the metadata store.
//!
//! Bytes past the committed length are garbage left by a request that failed or was cancelled;
//! the next append truncates them. Only one request may write to a session at a time (an
//! in-process lock: the file system store serves one process per data folder).

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::StorageError;
use crate::digest::{Algorithm, ContentHasher, Digest};
use crate::gate::WritePermit;
use crate::upload_id::UploadId;

/// Bytes gathered from the request before one write to disk (and one hashing step).
const WRITE_BLOCK: usize = 1024 * 1024;

/// Why appending to an upload stopped. Nothing of the request is committed in every case.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The write gate cancelled the write.
    #[error("the upload was cancelled before it completed")]
    Cancelled,
    /// The request body failed (the client disconnected, or sent less than it declared).
    #[error("the request body could not be read: {0}")]
    Body(String),
    /// The upload would grow beyond the configured limit.
    #[error("the upload exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The staged bytes are shorter than the committed length: they were deleted or damaged.
    #[error("the upload's staged data is missing")]
    Lost,
    /// The file system failed.
    #[error("upload staging I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The exclusive right to write to one upload's staging file; released when dropped.
#[derive(Debug)]
pub struct UploadLock {
    id: UploadId,
    held: Arc<Mutex<HashSet<UploadId>>>,
}

impl UploadLock {
    /// The upload this lock is for.
    pub fn id(&self) -> &UploadId {
        &self.id
    }
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[derive(Clone)]
pub(super) struct Staging {
    dir: PathBuf,
    fsync: bool,
    held: Arc<Mutex<HashSet<UploadId>>>,
}

impl Staging {
    pub(super) fn new(dir: PathBuf, fsync: bool) -> Self {
        Staging {
            dir,
            fsync,
            held: Arc::default(),
        }
    }

    pub(super) fn lock(&self, id: &UploadId) -> Option<UploadLock> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.insert(id.clone()).then(|| UploadLock {
            id: id.clone(),
            held: Arc::clone(&self.held),
        })
    }

    fn path(&self, id: &UploadId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    pub(super) async fn append<E: std::fmt::Display>(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        offset: u64,
        mut body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        hasher: ContentHasher,
        max_size: Option<u64>,
    ) -> Result<(u64, ContentHasher), AppendError> {
        let path = self.path(&lock.id);
        let file = blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)?;
            let len = file.metadata()?.len();
            if len < offset {
                return Err(AppendError::Lost);
            }
            // Cut what a failed request left past the committed length. Only then: on ext4 a
            // truncation (even of an empty file) marks the file for writeback when it is closed,
            // which costs a push the disk's time rather than the page cache's.
            if len > offset {
                file.set_len(offset)?;
            }
            file.seek(SeekFrom::Start(offset))?;
            Ok(file)
        })
        .await?;

        let mut writer = BlockWriter::new(file, hasher);
        let mut block = Vec::new();
        let mut block_len = 0;
        let mut appended: u64 = 0;
        let outcome: Result<(), AppendError> = async {
            loop {
                let chunk = tokio::select! {
                    biased;
                    () = permit.cancelled() => return Err(AppendError::Cancelled),
                    chunk = body.next() => chunk,
                };
                let Some(chunk) = chunk else { return Ok(()) };
                let chunk = chunk.map_err(|e| AppendError::Body(e.to_string()))?;
                appended += chunk.len() as u64;
                if let Some(limit) = max_size
                    && offset + appended > limit
                {
                    return Err(AppendError::TooLarge { limit });
                }
                block_len += chunk.len();
                block.push(chunk);
                if block_len >= WRITE_BLOCK {
                    block_len = 0;
                    writer.submit(std::mem::take(&mut block)).await?;
                }
            }
        }
        .await;
        if !block.is_empty() && outcome.is_ok() {
            writer.submit(block).await?;
        }
        // Always wait for the write in progress: it must not outlive this request's lock.
        let hasher = writer.finish().await?;
        outcome?;
        permit.check().map_err(|_| AppendError::Cancelled)?;
        Ok((appended, hasher))
    }

    pub(super) async fn digest(
        &self,
        lock: &UploadLock,
        algorithm: Algorithm,
        size: u64,
    ) -> Result<Digest, StorageError> {
        let path = self.path(&lock.id);
        Ok(blocking(move || {
            let file = std::fs::File::open(path)?;
            let mut reader = file.take(size);
            let mut hasher = ContentHasher::new(algorithm);
            let mut buf = vec![0; WRITE_BLOCK];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok::<_, std::io::Error>(hasher.finish())
        })
        .await?)
    }

    /// Cuts the staged file to its committed `size` and flushes it, ready to be moved into place.
    pub(super) async fn seal(&self, lock: &UploadLock, size: u64) -> Result<PathBuf, StorageError> {
        let path = self.path(&lock.id);
        let fsync = self.fsync;
        Ok(blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            if file.metadata()?.len() < size {
                return Err(std::io::Error::other("the upload's staged data is missing"));
            }
            file.set_len(size)?;
            // The object keeps this time once moved into place; an upload finished after a long
            // pause must not look old enough for the garbage collector's sweep of leftovers.
            file.set_modified(std::time::SystemTime::now())?;
            if fsync {
                file.sync_all()?;
            }
            Ok(path)
        })
        .await?)
    }

    pub(super) async fn discard(&self, id: &UploadId) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn list(&self) -> Result<Vec<(UploadId, i64)>, StorageError> {
        let dir = self.dir.clone();
        Ok(blocking(move || {
            let mut staged = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                // Anything not named like an upload is not ours to judge; leave it.
                let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                let modified = entry.metadata()?.modified()?;
                let millis = modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0);
                staged.push((id, millis));
            }
            Ok::<_, std::io::Error>(staged)
        })
        .await?)
    }
}

/// Writes blocks to a file and hashes them on blocking threads while the next block is received.
/// Hashing and writing are two lanes that run at the same time (each has one block in progress):
/// hashing is the costlier of the two, and the copy into the page cache need not wait for it.
struct BlockWriter {
    file: Lane<std::fs::File>,
    hasher: Lane<ContentHasher>,
}

/// A value that one blocking task at a time works with: idle between tasks, or with its task.
enum Lane<T> {
    Idle(T),
    Busy(JoinHandle<std::io::Result<T>>),
    Failed,
}

impl<T: Send + 'static> Lane<T> {
    async fn take(&mut self) -> std::io::Result<T> {
        match std::mem::replace(self, Lane::Failed) {
            Lane::Idle(value) => Ok(value),
            Lane::Busy(task) => task.await.map_err(std::io::Error::other)?,
            Lane::Failed => Err(std::io::Error::other("a previous block write failed")),
        }
    }

    /// Waits for the task in progress, then starts `work` on the value.
    async fn run(
        &mut self,
        work: impl FnOnce(&mut T) -> std::io::Result<()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut value = self.take().await?;
        *self = Lane::Busy(tokio::task::spawn_blocking(move || {
            work(&mut value)?;
            Ok(value)
        }));
        Ok(())
    }
}

impl BlockWriter {
    fn new(file: std::fs::File, hasher: ContentHasher) -> Self {
        BlockWriter {
            file: Lane::Idle(file),
            hasher: Lane::Idle(hasher),
        }
    }

    /// Queues one block, made of the chunks the request body arrived in (`Bytes` are shared,
    /// not copied, between the two lanes).
    async fn submit(&mut self, block: Vec<Bytes>) -> std::io::Result<()> {
        let to_hash = block.clone();
        self.hasher
            .run(move |hasher| {
                to_hash.iter().for_each(|chunk| hasher.update(chunk));
                Ok(())
            })
            .await?;
        self.file
            .run(move |file| block.iter().try_for_each(|chunk| file.write_all(chunk)))
            .await
    }

    /// Waits for both lanes to finish; the hasher has then seen every block submitted.
    async fn finish(mut self) -> std::io::Result<ContentHasher> {
        let written = self.file.take().await;
        let hasher = self.hasher.take().await?;
        written?;
        Ok(hasher)
    }
}

async fn blocking<T: Send + 'static, E: From<std::io::Error> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(std::io::Error::other(e)))?
}
