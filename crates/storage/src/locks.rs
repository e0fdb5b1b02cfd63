//! Which uploads a request of this process is writing to right now: one request per upload at
//! a time, whatever the backend. Across processes the metadata store is the judge (a chunk is
//! recorded only from the length it continued), and on the file system one process serves a
//! data folder.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use wharf_core::upload_id::UploadId;

/// The exclusive right to write to one upload's staged data; released when it is dropped and
/// every write started under it has ended (see [`UploadLock::keep`]).
#[derive(Debug)]
pub struct UploadLock {
    entry: Arc<HeldEntry>,
}

/// An upload's entry in the set of locked uploads, removed when the last holder lets go.
#[derive(Debug)]
pub(crate) struct HeldEntry {
    id: UploadId,
    held: Arc<Mutex<HashSet<UploadId>>>,
}

impl UploadLock {
    /// The upload this lock is for.
    pub fn id(&self) -> &UploadId {
        &self.entry.id
    }

    /// Keeps the upload locked for as long as the returned value lives, even once this lock is
    /// dropped: a write still running on a blocking thread after its request was cancelled must
    /// end before another request may touch the file.
    pub(crate) fn keep(&self) -> Arc<HeldEntry> {
        Arc::clone(&self.entry)
    }
}

impl Drop for HeldEntry {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// The set of uploads locked in this process.
#[derive(Clone, Default)]
pub(crate) struct UploadLocks {
    held: Arc<Mutex<HashSet<UploadId>>>,
}

impl UploadLocks {
    /// Locks upload `id`, or `None` if it is locked already.
    pub(crate) fn lock(&self, id: &UploadId) -> Option<UploadLock> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(id.clone()).then(|| UploadLock {
            entry: Arc::new(HeldEntry {
                id: id.clone(),
                held: Arc::clone(&self.held),
            }),
        })
    }
}
