//! The staging area of uploads on the local file system: one file per upload session, appended to
//! by each request of the session, whose committed length lives in the metadata store.
//!
//! Bytes past the committed length are garbage left by a request that failed or was cancelled;
//! the next append truncates them. Only one request may write to a session at a time (an
//! in-process lock: the file system store serves one process per data folder).
//!
//! An append ends once its bytes are written; hashing them may go on for a moment after (see
//! [`Hashing`]), while the request is answered and the client sends its next chunk, and the
//! next append's hasher continues from it. The upload's committed hash state may therefore
//! cover fewer bytes than were received; an append that starts without the previous hasher
//! (after a restart, say) first hashes those bytes again from the staged file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::StorageError;
use super::batch_policy::BatchPolicy;
use super::locks::{HeldEntry, UploadLock, UploadLocks};
use wharf_core::digest::{Algorithm, ContentHasher, Digest};
use wharf_core::upload_id::UploadId;
use wharf_gate::WritePermit;

/// Bytes gathered from the request before one write to disk (and one hashing step). Small
/// blocks keep a push's memory low (see [`QUEUED_BLOCKS`]); much smaller ones cost more in
/// handing blocks between threads than they save.
const WRITE_BLOCK: usize = 256 * 1024;

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
    /// The committed hash state says it covers more bytes than were committed.
    #[error(
        "the upload's saved hash state covers {hashed} bytes, but only {received} were received"
    )]
    HashAhead {
        /// The bytes the state covers.
        hashed: u64,
        /// The bytes committed.
        received: u64,
    },
    /// The file system failed.
    #[error("upload staging I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The object store failed.
    #[error("blob storage error: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The content is not what the client said (blob storage that verifies a blob before it
    /// stores it under its key).
    #[error("the uploaded content has digest {actual}, not {expected}")]
    DigestMismatch {
        /// The content's digest.
        actual: Digest,
        /// The digest the client named.
        expected: Digest,
    },
}

/// Where an append's hashing starts: the upload's committed hash state and, if the upload's
/// previous append may still be hashing, that hashing.
pub struct HashResume {
    /// The committed state: a hasher after the upload's first `hashed` bytes.
    hasher: ContentHasher,
    hashed: u64,
    /// The previous append's hashing; used if it ends at the new append's offset.
    running: Option<Hashing>,
}

impl HashResume {
    /// Hashing from `hasher`, which has seen the upload's first `hashed` bytes; `running` is
    /// the previous append's hashing if it was kept.
    pub fn new(hasher: ContentHasher, hashed: u64, running: Option<Hashing>) -> Self {
        HashResume {
            hasher,
            hashed,
            running,
        }
    }

    /// The hasher after the upload's first `offset` bytes without reading staged bytes: the
    /// previous append's, if it got there, else the committed state if it covers them all
    /// (blob storage whose staged bytes cannot be read back, such as a multipart upload's
    /// parts, always commits such a state).
    pub(crate) async fn resume_without_rereading(
        self,
        offset: u64,
    ) -> Result<ContentHasher, AppendError> {
        if self.hashed > offset {
            return Err(AppendError::HashAhead {
                hashed: self.hashed,
                received: offset,
            });
        }
        if let Some(running) = self.running
            && let Ok(Ok((previous, reached))) = running.done.await
            && reached == offset
        {
            return Ok(previous);
        }
        if self.hashed == offset {
            Ok(self.hasher)
        } else {
            Err(AppendError::Lost)
        }
    }

    /// The hasher after the upload's first `offset` bytes: the previous append's, if it got
    /// there, else the committed state and the staged bytes it does not cover. Blocks.
    fn run(self, path: &Path, offset: u64) -> Result<ContentHasher, AppendError> {
        let HashResume {
            mut hasher,
            hashed,
            running,
        } = self;
        if let Some(running) = running
            && let Ok(Ok((previous, reached))) = running.done.blocking_recv()
            && reached == offset
        {
            return Ok(previous);
        }
        // The previous hashing failed or was not kept: this is the committed state's way.
        if hashed < offset {
            hash_staged(&mut hasher, path, hashed, offset - hashed).map_err(|e| {
                match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof => {
                        AppendError::Lost
                    }
                    _ => e.into(),
                }
            })?;
        }
        Ok(hasher)
    }
}

/// An append's hashing, which goes on through the blocks queued for it after the append has
/// ended: [`Hashing::wait`]ed for by the request that needs the digest, or handed to the
/// upload's next append in a [`HashResume`].
pub struct Hashing {
    done: oneshot::Receiver<HashOutcome>,
    progress: Arc<Mutex<HashProgress>>,
}

/// How a hashing ended: the hasher, and how many of the upload's bytes it has seen.
type HashOutcome = Result<(ContentHasher, u64), AppendError>;

/// A hasher's saved state after the upload's first `hashed` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashProgress {
    /// The bytes hashed.
    pub hashed: u64,
    /// The hasher's saved state (see [`ContentHasher::save`]).
    pub state: Vec<u8>,
}

impl HashProgress {
    fn of(hasher: &ContentHasher, hashed: u64) -> Self {
        HashProgress {
            hashed,
            state: hasher.save(),
        }
    }
}

impl Hashing {
    /// A hashing that is over: `hasher` has seen the upload's first `hashed` bytes (blob
    /// storage that hashes a request's bytes before answering it).
    pub(crate) fn finished(hasher: ContentHasher, hashed: u64) -> Self {
        let progress = Arc::new(Mutex::new(HashProgress::of(&hasher, hashed)));
        let (end, done) = oneshot::channel();
        // The receiver is right here: the send cannot fail.
        let _ = end.send(Ok((hasher, hashed)));
        Hashing { done, progress }
    }

    /// The latest state saved: at most a queue of blocks behind the bytes appended while the
    /// hasher works through them, and safe to commit at any time.
    pub fn progress(&self) -> HashProgress {
        lock_progress(&self.progress).clone()
    }

    /// Waits until every byte appended is hashed, and takes the hasher.
    pub async fn wait(self) -> Result<ContentHasher, AppendError> {
        Ok(ended(self.done.await)?.0)
    }
}

fn lock_progress(progress: &Mutex<HashProgress>) -> std::sync::MutexGuard<'_, HashProgress> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A worker's outcome as its receiver saw it: a worker that went away without one panicked.
fn ended<T>(
    outcome: Result<Result<T, AppendError>, oneshot::error::RecvError>,
) -> Result<T, AppendError> {
    outcome.unwrap_or_else(|_| Err(std::io::Error::other("a staging worker stopped").into()))
}

/// Feeds `len` staged bytes of the file at `path`, from `from`, to `hasher`; fails with
/// `UnexpectedEof` if the file ends before.
fn hash_staged(
    hasher: &mut ContentHasher,
    path: &Path,
    from: u64,
    len: u64,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = file.take(len);
    let mut buf = vec![0; WRITE_BLOCK];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[derive(Clone)]
pub(super) struct Staging {
    dir: PathBuf,
    fsync: bool,
    locks: UploadLocks,
}

impl Staging {
    pub(super) fn new(dir: PathBuf, fsync: bool) -> Self {
        Staging {
            dir,
            fsync,
            locks: UploadLocks::default(),
        }
    }

    pub(super) fn lock(&self, id: &UploadId) -> Option<UploadLock> {
        self.locks.lock(id)
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
        hash: HashResume,
        max_size: Option<u64>,
    ) -> Result<(u64, Hashing), AppendError> {
        if hash.hashed > offset {
            return Err(AppendError::HashAhead {
                hashed: hash.hashed,
                received: offset,
            });
        }
        // The file is opened by the thread that writes to it, so that receiving and hashing
        // need not wait for it (each hand-off to a blocking thread is a wake-up, which on a
        // virtual machine costs as much as receiving tens of KiB).
        let path = self.path(lock.id());
        let mut writer = BlockWriter::start(path, offset, hash, lock);
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
                let Some(chunk) = chunk else { break };
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
            if !block.is_empty() {
                writer.submit(block).await?;
            }
            Ok(())
        }
        .await;
        // Always wait for the blocks queued to be written: the file is complete (or the
        // failure known) only then. The hashing may go on.
        let hashing = writer.finish().await?;
        if let Err(error) = outcome {
            // A submit fails when a worker stopped, and the worker's own error says why (the
            // writer's was returned above). The hasher's queue is closed: it ends soon.
            if matches!(error, AppendError::Io(_))
                && let Err(hasher_error) = hashing.wait().await
            {
                return Err(hasher_error);
            }
            return Err(error);
        }
        permit.check().map_err(|_| AppendError::Cancelled)?;
        Ok((appended, hashing))
    }

    pub(super) async fn digest(
        &self,
        lock: &UploadLock,
        algorithm: Algorithm,
        size: u64,
    ) -> Result<Digest, StorageError> {
        let path = self.path(lock.id());
        Ok(blocking(move || {
            let mut hasher = ContentHasher::new(algorithm);
            hash_staged(&mut hasher, &path, 0, size)?;
            Ok::<_, std::io::Error>(hasher.finish())
        })
        .await?)
    }

    /// Cuts the staged file to its committed `size` and flushes it, ready to be moved into place.
    pub(super) async fn seal(&self, lock: &UploadLock, size: u64) -> Result<PathBuf, StorageError> {
        let path = self.path(lock.id());
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

/// Writes blocks to a file and hashes them on two blocking threads while the request body is
/// still being received. Each has a short queue, so that neither waits for the next block to
/// arrive while there is received data to work on: hashing is the costlier of the two, and on a
/// push it is what bounds the speed, so it must never idle while a block is ready.
struct BlockWriter {
    file: Worker<std::fs::File>,
    /// The hasher, and how many of the upload's bytes it has seen.
    hasher: Worker<(ContentHasher, u64)>,
    progress: Arc<Mutex<HashProgress>>,
}

/// Blocks queued for each worker beyond the one it is working on (each at least
/// [`WRITE_BLOCK`]; the two queues share the blocks' memory). Enough that the hasher has work
/// while the next bytes arrive, and the request has work when the hasher falls behind. Measured
/// on 256 MiB and 1 GiB pushes (`docs/benchmarks.md`): eight 256 KiB blocks were 2–5% faster
/// than four monolithic and 0–8% chunked, and with the allocator's single arena (`wharf`'s
/// `allocator.rs`) a push's peak memory stays below CNCF Distribution's; three 1 MiB blocks
/// were a little faster than four 256 KiB blocks but went above it.
const QUEUED_BLOCKS: usize = 8;

/// Free places a full queue must have before the request is woken to fill it again. Woken for
/// every block taken, the request would wait for the next after each one it queues: a
/// wake-up and a sleep of an async worker per block (tens of thousands of context switches per
/// GiB on a monolithic push, a tenth of the server's CPU time on two cores). Waiting for half
/// the queue halves those, and the worker still has the other half to work on meanwhile.
const REFILL_AT: usize = QUEUED_BLOCKS / 2;

/// How a worker's thread is scheduled while it works.
#[derive(Clone, Copy)]
enum Scheduling {
    /// As any thread: for the hasher, which bounds the upload's speed.
    Normal,
    /// As a batch thread, whose wake-ups do not preempt the hasher: for the writer, which
    /// keeps up with time to spare (see [`BatchPolicy`]).
    Batch,
}

/// A blocking thread working through queued blocks in order, with the value it owns (the
/// file, or the hasher), which it hands back at the end.
struct Worker<T> {
    queue: tokio::sync::mpsc::Sender<Arc<[Bytes]>>,
    done: oneshot::Receiver<Result<T, AppendError>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts the thread, which makes its value with `init` before taking the first block.
    /// With `keep`, the upload stays locked until the thread has ended.
    fn start(
        init: impl FnOnce() -> Result<T, AppendError> + Send + 'static,
        keep: Option<Arc<HeldEntry>>,
        scheduling: Scheduling,
        mut work: impl FnMut(&mut T, &[Bytes]) -> std::io::Result<()> + Send + 'static,
    ) -> Self {
        let (queue, mut blocks) = tokio::sync::mpsc::channel::<Arc<[Bytes]>>(QUEUED_BLOCKS);
        let (result, done) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let outcome = {
                // Blocking threads are pooled: the policy must end with this work (the
                // guard's drop).
                let _policy = matches!(scheduling, Scheduling::Batch).then(BatchPolicy::enter);
                init().and_then(|mut value| {
                    while let Some(block) = blocks.blocking_recv() {
                        work(&mut value, &block)?;
                    }
                    Ok(value)
                })
            };
            // The queue goes first, so that a request still queueing fails rather than waits;
            // the lock before the outcome, so that whoever hears of it may lock the upload.
            drop(blocks);
            drop(keep);
            // Nobody waiting (the request went away) is fine: the outcome is not needed.
            let _ = result.send(outcome);
        });
        Worker { queue, done }
    }

    /// Queues a block; when the queue is full, waits until [`REFILL_AT`] places are free. Fails
    /// when the worker has stopped on an error, which [`Worker::finish`] returns.
    async fn submit(&self, block: Arc<[Bytes]>) -> std::io::Result<()> {
        let stopped = || std::io::Error::other("a staging worker stopped");
        if self.queue.capacity() == 0 {
            // Only this request sends on the queue, so the places stay free once released.
            drop(
                self.queue
                    .reserve_many(REFILL_AT)
                    .await
                    .map_err(|_| stopped())?,
            );
        }
        self.queue.send(block).await.map_err(|_| stopped())
    }

    /// Tells the worker that no more blocks come: it ends once it has done those queued, and
    /// then sends its value (or its error) on the returned channel.
    fn close(self) -> oneshot::Receiver<Result<T, AppendError>> {
        let Worker { queue, done } = self;
        drop(queue);
        done
    }

    /// Waits until the worker has done every block queued, and takes its value back.
    async fn finish(self) -> Result<T, AppendError> {
        ended(self.close().await)
    }
}

/// Opens an upload's staged file for appending at `offset`, its committed length.
fn open_at(path: &Path, offset: u64) -> Result<std::fs::File, AppendError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
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
}

impl BlockWriter {
    /// Starts the two workers. The writer keeps the upload locked until it has ended, even if
    /// the request is dropped first. The hasher keeps nothing locked: it reads no more of the
    /// file than the committed bytes before `offset` (see [`HashResume::run`]), which no
    /// append changes, and it goes on after the append has ended.
    fn start(path: PathBuf, offset: u64, hash: HashResume, lock: &UploadLock) -> Self {
        let progress = Arc::new(Mutex::new(HashProgress::of(&hash.hasher, hash.hashed)));
        let (resumed, saved) = (Arc::clone(&progress), Arc::clone(&progress));
        let hash_path = path.clone();
        BlockWriter {
            file: Worker::start(
                move || open_at(&path, offset),
                Some(lock.keep()),
                Scheduling::Batch,
                |file, block| block.iter().try_for_each(|chunk| file.write_all(chunk)),
            ),
            hasher: Worker::start(
                move || {
                    let hasher = hash.run(&hash_path, offset)?;
                    *lock_progress(&resumed) = HashProgress::of(&hasher, offset);
                    Ok((hasher, offset))
                },
                None,
                Scheduling::Normal,
                move |(hasher, hashed), block| {
                    for chunk in block.iter() {
                        hasher.update(chunk);
                        *hashed += chunk.len() as u64;
                    }
                    // After every block, so that an append that ends before its hashing
                    // commits a state at most a queue behind the bytes it wrote.
                    *lock_progress(&saved) = HashProgress::of(hasher, *hashed);
                    Ok(())
                },
            ),
            progress,
        }
    }

    /// Queues one block, made of the chunks the request body arrived in (`Bytes` are shared,
    /// not copied, between the two workers).
    async fn submit(&mut self, block: Vec<Bytes>) -> std::io::Result<()> {
        let block: Arc<[Bytes]> = block.into();
        self.hasher.submit(Arc::clone(&block)).await?;
        self.file.submit(block).await
    }

    /// Waits until every block submitted is written; the hasher goes on with those it has not
    /// reached.
    async fn finish(self) -> Result<Hashing, AppendError> {
        let hashing = Hashing {
            done: self.hasher.close(),
            progress: self.progress,
        };
        self.file.finish().await?;
        Ok(hashing)
    }
}

async fn blocking<T: Send + 'static, E: From<std::io::Error> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_gate::metrics::Metrics;
    use wharf_gate::{DrainSettings, WriteGate, WriteIntent};
    use wharf_metadata_sqlite::SqliteStore;

    /// A staging area in a temporary folder, and the write gate its appends are admitted by.
    struct Fixture {
        _dir: tempfile::TempDir,
        gate: WriteGate,
        staging: Staging,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        let gate = WriteGate::open(
            Arc::new(store),
            DrainSettings::default(),
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap();
        let staging = Staging::new(dir.path().join("uploads"), false);
        std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
        Fixture {
            _dir: dir,
            gate,
            staging,
        }
    }

    impl Fixture {
        async fn permit(&self) -> WritePermit {
            self.gate
                .admit(WriteIntent::Housekeeping { job: "test" })
                .await
                .unwrap()
        }

        /// Appends `data` to upload `id` at `offset`, in chunks of 64 KiB, under a lock and a
        /// permit of its own.
        async fn append(
            &self,
            id: &UploadId,
            offset: u64,
            data: &[u8],
            hash: HashResume,
        ) -> Result<(u64, Hashing), AppendError> {
            let lock = self.staging.lock(id).unwrap();
            let permit = self.permit().await;
            let chunks: Vec<_> = data
                .chunks(64 * 1024)
                .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect();
            let body = futures_util::stream::iter(chunks);
            self.staging
                .append(&permit, &lock, offset, body, hash, None)
                .await
        }
    }

    fn fresh_hash() -> HashResume {
        HashResume::new(ContentHasher::new(Algorithm::Sha256), 0, None)
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Many blocks, more than the queues hold, in chunks of uneven sizes: the file holds them
    /// in order and the hash is of exactly those bytes.
    #[tokio::test]
    async fn every_block_is_written_and_hashed_in_order() {
        let data = content(3 * (QUEUED_BLOCKS + 1) * WRITE_BLOCK + 12_345);
        let chunks: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(300_001)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let fixture = fixture().await;
        let id = UploadId::generate();
        let lock = fixture.staging.lock(&id).unwrap();
        let permit = fixture.permit().await;
        let (appended, hashing) = fixture
            .staging
            .append(
                &permit,
                &lock,
                0,
                futures_util::stream::iter(chunks),
                fresh_hash(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(appended, data.len() as u64);
        assert_eq!(
            hashing.wait().await.unwrap().finish(),
            Digest::sha256_of(&data)
        );
        assert_eq!(std::fs::read(fixture.staging.path(&id)).unwrap(), data);
    }

    fn hasher_of(data: &[u8]) -> ContentHasher {
        let mut hasher = ContentHasher::new(Algorithm::Sha256);
        hasher.update(data);
        hasher
    }

    /// A previous append's hashing whose end the test decides.
    fn held_hashing() -> (oneshot::Sender<HashOutcome>, Hashing) {
        let (end, done) = oneshot::channel();
        let progress = HashProgress::of(&ContentHasher::new(Algorithm::Sha256), 0);
        let hashing = Hashing {
            done,
            progress: Arc::new(Mutex::new(progress)),
        };
        (end, hashing)
    }

    /// An append ends once its bytes are written, not when they are hashed: here its hasher
    /// waits for the previous append's hashing, which the test holds back. The upload is free
    /// for its next request at once, the state saved so far is the committed one, and once the
    /// previous hashing ends the hash covers both appends' bytes.
    #[tokio::test]
    async fn an_append_ends_before_its_hashing_which_continues_the_previous_one() {
        let fixture = fixture().await;
        let staging = &fixture.staging;
        let id = UploadId::generate();
        let first = content(3 * WRITE_BLOCK + 7);
        let second: Vec<u8> = content(3 * WRITE_BLOCK + 5).into_iter().rev().collect();
        std::fs::write(staging.path(&id), &first).unwrap();
        let (previous_ends, previous) = held_hashing();
        let committed = ContentHasher::new(Algorithm::Sha256);

        let hash = HashResume::new(committed.clone(), 0, Some(previous));
        // Fewer blocks than the hasher's queue holds: the append need not wait for it.
        let (appended, hashing) = within(fixture.append(&id, first.len() as u64, &second, hash))
            .await
            .unwrap();
        assert_eq!(appended, second.len() as u64);
        assert_eq!(hashing.progress(), HashProgress::of(&committed, 0));
        // The append's own lock is gone with it.
        assert!(
            staging.lock(&id).is_some(),
            "the running hashing keeps the upload locked"
        );

        previous_ends
            .send(Ok((hasher_of(&first), first.len() as u64)))
            .unwrap_or_else(|_| panic!("the hasher stopped waiting for the previous one"));
        let both = [first, second].concat();
        let hasher = within(hashing.wait()).await.unwrap();
        assert_eq!(hasher.finish(), Digest::sha256_of(&both));
        assert_eq!(std::fs::read(staging.path(&id)).unwrap(), both);
    }

    /// Without the previous append's hashing (there was none kept, as after a restart; it
    /// failed; it went away; it ended elsewhere than at the append's offset) the staged bytes
    /// the committed state does not cover are hashed again from the file.
    #[tokio::test]
    async fn without_the_previous_hashing_the_staged_bytes_are_hashed_again() {
        let fixture = fixture().await;
        let first = content(2 * WRITE_BLOCK + 3);
        let second: Vec<u8> = content(WRITE_BLOCK + 11).into_iter().rev().collect();
        let both = [first.clone(), second.clone()].concat();
        // The committed state covers the first 1000 bytes only.
        let committed = 1000;

        #[derive(Debug, Clone, Copy)]
        enum Previous {
            NotKept,
            Failed,
            WentAway,
            EndedElsewhere,
        }
        let ended_with = |outcome| {
            let (end, previous) = held_hashing();
            end.send(outcome).unwrap_or_else(|_| panic!("nobody waits"));
            Some(previous)
        };
        for case in [
            Previous::NotKept,
            Previous::Failed,
            Previous::WentAway,
            Previous::EndedElsewhere,
        ] {
            let id = UploadId::generate();
            std::fs::write(fixture.staging.path(&id), &first).unwrap();
            let running = match case {
                Previous::NotKept => None,
                Previous::Failed => ended_with(Err(std::io::Error::other("failed").into())),
                Previous::WentAway => Some(held_hashing().1),
                Previous::EndedElsewhere => ended_with(Ok((hasher_of(&first[..2000]), 2000))),
            };
            let hash = HashResume::new(hasher_of(&first[..committed]), committed as u64, running);
            let (_, hashing) = within(fixture.append(&id, first.len() as u64, &second, hash))
                .await
                .unwrap();
            let hasher = within(hashing.wait()).await.unwrap();
            assert_eq!(hasher.finish(), Digest::sha256_of(&both), "{case:?}");
        }
    }

    /// A committed hash state that claims more bytes than were committed (a damaged record)
    /// is refused before anything is written.
    #[tokio::test]
    async fn a_hash_state_ahead_of_the_committed_bytes_is_refused() {
        let fixture = fixture().await;
        let id = UploadId::generate();
        std::fs::write(fixture.staging.path(&id), b"0123456789").unwrap();
        let hash = HashResume::new(hasher_of(b"0123456789x"), 11, None);
        let refused = fixture.append(&id, 10, b"abc", hash).await;
        assert!(
            matches!(
                refused,
                Err(AppendError::HashAhead {
                    hashed: 11,
                    received: 10
                })
            ),
            "{:?}",
            refused.map(|(appended, _)| appended)
        );
        assert_eq!(
            std::fs::read(fixture.staging.path(&id)).unwrap(),
            b"0123456789"
        );
    }

    /// The staged file is shorter than the committed bytes the hash state does not cover: the
    /// upload's data is lost, and resuming the hash says so.
    #[tokio::test]
    async fn staged_bytes_missing_behind_the_hash_state_are_lost() {
        let fixture = fixture().await;
        let path = fixture.staging.path(&UploadId::generate());
        std::fs::write(&path, b"01234").unwrap();
        let hash = fresh_hash();
        let resumed = tokio::task::spawn_blocking(move || hash.run(&path, 10))
            .await
            .unwrap();
        assert!(
            matches!(resumed, Err(AppendError::Lost)),
            "{:?}",
            resumed.err()
        );
    }

    /// The writer works as a batch thread, and the pooled thread it borrowed is normal again
    /// for whatever runs on it next.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_batch_worker_runs_as_batch_and_gives_its_thread_back_normal() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let staging = Staging::new(dir.path().to_owned(), false);
            let lock = staging.lock(&UploadId::generate()).unwrap();
            let worker = Worker::start(
                || Ok(Vec::new()),
                Some(lock.keep()),
                Scheduling::Batch,
                |seen: &mut Vec<bool>, _block| {
                    seen.push(crate::batch_policy::current_is_batch());
                    Ok(())
                },
            );
            let block = || -> Arc<[Bytes]> { vec![Bytes::from_static(b"block")].into() };
            worker.submit(block()).await.unwrap();
            worker.submit(block()).await.unwrap();
            assert_eq!(worker.finish().await.unwrap(), [true, true]);
            // One blocking thread: this runs on the thread the worker had.
            let after = tokio::task::spawn_blocking(crate::batch_policy::current_is_batch);
            assert!(!after.await.unwrap());
        });
    }

    /// A request whose queue is full is woken once half of it is free, not for every block
    /// the worker takes.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_takes_blocks_again_once_half_of_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path().to_owned(), false);
        let lock = staging.lock(&UploadId::generate()).unwrap();
        // The worker takes a block, counts it and then waits for the test to let it go on.
        let (go_on, gate) = std::sync::mpsc::channel::<()>();
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&taken);
        let worker = Arc::new(Worker::start(
            || Ok(()),
            Some(lock.keep()),
            Scheduling::Normal,
            move |(), _block| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                gate.recv().map_err(std::io::Error::other)
            },
        ));
        let block = || -> Arc<[Bytes]> { vec![Bytes::from_static(b"block")].into() };
        // A broken queue would make the test wait forever: fail it instead.
        let taken_reaches = |n: usize| {
            let taken = Arc::clone(&taken);
            within(async move {
                while taken.load(std::sync::atomic::Ordering::SeqCst) < n {
                    tokio::task::yield_now().await;
                }
            })
        };

        // One block in the worker's hands, QUEUED_BLOCKS waiting: the queue is full.
        worker.submit(block()).await.unwrap();
        taken_reaches(1).await;
        for _ in 0..QUEUED_BLOCKS {
            within(worker.submit(block())).await.unwrap();
        }
        let sender = Arc::clone(&worker);
        let waiting = tokio::spawn(async move { sender.submit(block()).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the queue was full");

        // Free places one at a time: the request goes on only at REFILL_AT.
        for free in 1..=REFILL_AT {
            go_on.send(()).unwrap();
            taken_reaches(1 + free).await;
            // Anything woken runs before this task continues (one thread, run queue in order).
            tokio::task::yield_now().await;
            assert_eq!(
                waiting.is_finished(),
                free == REFILL_AT,
                "{free} place(s) free"
            );
        }
        within(waiting).await.unwrap().unwrap();

        for _ in 0..QUEUED_BLOCKS + 1 {
            go_on.send(()).unwrap();
        }
        drop(go_on);
        within(
            Arc::try_unwrap(worker)
                .unwrap_or_else(|_| panic!("the request still holds the worker"))
                .finish(),
        )
        .await
        .unwrap();
        assert_eq!(
            taken.load(std::sync::atomic::Ordering::SeqCst),
            QUEUED_BLOCKS + 2
        );
    }

    async fn within<T>(work: impl Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(30), work)
            .await
            .expect("stuck for 30 s")
    }

    /// Bytes past the committed length (left by a request that failed) are cut before the
    /// next append; staged bytes shorter than the committed length are reported lost, and
    /// nothing is written.
    #[tokio::test]
    async fn appends_start_at_the_committed_length_and_find_lost_bytes() {
        let fixture = &fixture().await;
        let id = &UploadId::generate();
        let staged = || std::fs::read(fixture.staging.path(id)).unwrap();
        let appended = |offset, data: &'static [u8]| async move {
            let appended = fixture.append(id, offset, data, fresh_hash()).await;
            appended.map(|(appended, _)| appended)
        };

        assert_eq!(appended(0, b"0123456789garbage").await.unwrap(), 17);
        assert_eq!(appended(10, b"abc").await.unwrap(), 3);
        assert_eq!(staged(), b"0123456789abc");

        let lost = appended(20, b"xyz").await;
        assert!(matches!(lost, Err(AppendError::Lost)), "{lost:?}");
        assert_eq!(staged(), b"0123456789abc");
    }

    /// A request dropped while its blocks are still being written (the client went away) keeps
    /// the upload locked until the last queued block is on disk, so that a retry cannot write
    /// to the file at the same time as the writer of the abandoned request.
    #[tokio::test]
    async fn the_upload_stays_locked_until_abandoned_writes_end() {
        let fixture = fixture().await;
        let staging = &fixture.staging;
        let id = UploadId::generate();
        let lock = staging.lock(&id).unwrap();
        let permit = fixture.permit().await;

        // The body sends as many blocks as the queues take without waiting, then stalls; the
        // request is dropped there. Large blocks, so that writing them takes a while.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let writer = staging.append(&permit, &lock, 0, tokio_stream_from(rx), fresh_hash(), None);
        let block = Bytes::from(vec![b'w'; 16 * 1024 * 1024]);
        let feed = async {
            for _ in 0..QUEUED_BLOCKS {
                tx.send(Ok(block.clone())).await.unwrap();
            }
            // The channel holds one message: once this one is taken, the last block has been
            // queued for the workers (queueing it did not wait: the queues had room).
            tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        };
        tokio::select! {
            _ = writer => panic!("the body never ends, so neither does the request"),
            () = feed => {}
        }
        drop(lock);
        // The workers may still hold the lock; once they are done it is free, and the file
        // has every block.
        let relocked = loop {
            if let Some(lock) = staging.lock(&id) {
                break lock;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(
            std::fs::metadata(staging.path(relocked.id()))
                .unwrap()
                .len(),
            (QUEUED_BLOCKS * block.len()) as u64,
            "the lock was free before the abandoned writes ended"
        );
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
