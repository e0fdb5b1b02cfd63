//! Which uploads a request of this process is writing to right now: one request per upload at
//! a time, whatever the backend. Across processes (replicas over PostgreSQL) the registry
//! claims the session in the database as well and attaches the claim to this lock
//! ([`UploadLock::attach`]), so it lasts exactly as long; and the metadata store stays the
//! judge of what is committed (a chunk is recorded only from the length it continued).

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
pub(crate) struct HeldEntry {
    id: UploadId,
    held: Arc<Mutex<HashSet<UploadId>>>,
    /// What else is held as long as the lock (the upload's claim in a database replicas
    /// share), let go with it.
    attached: Mutex<Vec<Box<dyn Send>>>,
}

impl std::fmt::Debug for HeldEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldEntry").field("id", &self.id).finish()
    }
}

impl UploadLock {
    /// The upload this lock is for.
    pub fn id(&self) -> &UploadId {
        &self.entry.id
    }

    /// Keeps `guard` for as long as the upload stays locked (including past this lock, while a
    /// write that outlived its request ends), and drops it when the lock is let go.
    pub fn attach(&self, guard: impl Send + 'static) {
        self.entry
            .attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(guard));
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
        // What is attached goes first: another request may take the upload once it is out of
        // the set.
        self.attached
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
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
                attached: Mutex::new(Vec::new()),
            }),
        })
    }
}
