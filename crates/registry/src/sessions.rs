//! The upload sessions this process is in the middle of, each as its last committed state, so
//! that the next chunk of a session need not read it back from the database: a chunked push
//! waits for every `PATCH`, and that read is a hand-off to the database's thread each time.
//!
//! A request takes its session out while it works on it and puts the new state back only once
//! that state is committed; a request that fails or is cancelled leaves nothing behind, and the
//! next one reads the database. So an entry is never older than the database, except where
//! something outside the registry's requests changed the session (another process, an
//! operator), and the database stays the judge even then: a chunk is committed only if the
//! session there is still at the length the chunk continues from, so such a chunk fails as
//! `BLOB_UPLOAD_UNKNOWN`, as it would have without this cache.
//!
//! With the session goes the hashing of its last chunk, which may still be running when the
//! chunk is answered; the next chunk's hasher continues from it. Without it (the entry was
//! never there, or was dropped) the next chunk hashes again, from the staged bytes, whatever
//! the committed hash state does not cover.
//!
//! With blob storage other processes share (S3) the cache is not used: any replica may take
//! the session's next request, so each request reads the database.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use wharf_core::upload_id::UploadId;
use wharf_metadata::UploadSession;
use wharf_storage::Hashing;

/// Sessions remembered at most; beyond that, new sessions are read from the database. Entries
/// leave when their upload completes, is cancelled or expires.
const CAPACITY: usize = 1024;

#[derive(Default)]
pub(super) struct SessionCache {
    sessions: Mutex<HashMap<UploadId, CachedSession>>,
}

/// A session as last committed, and the hashing of its last chunk if it was kept.
pub(super) struct CachedSession {
    pub(super) session: UploadSession,
    pub(super) hashing: Option<Hashing>,
}

impl SessionCache {
    /// Takes session `id` out, for a request that will write to it.
    pub(super) fn take(&self, id: &UploadId) -> Option<CachedSession> {
        self.lock().remove(id)
    }

    /// Forgets session `id` (it is being deleted).
    pub(super) fn forget(&self, id: &UploadId) {
        self.lock().remove(id);
    }

    /// Remembers `session`, whose state was just committed, and `hashing`, the hashing of the
    /// chunk that brought it there.
    pub(super) fn put(&self, session: UploadSession, hashing: Option<Hashing>) {
        let mut sessions = self.lock();
        if sessions.len() < CAPACITY || sessions.contains_key(&session.id) {
            sessions.insert(session.id.clone(), CachedSession { session, hashing });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, CachedSession>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::digest::{Algorithm, ContentHasher};

    fn session(received: u64) -> UploadSession {
        UploadSession {
            id: UploadId::generate(),
            repository: "a/b".parse().unwrap(),
            client: "test".to_owned(),
            received,
            hash_algorithm: Algorithm::Sha256,
            hash_state: ContentHasher::new(Algorithm::Sha256).save(),
            hashed: received,
            created_at: 1,
            updated_at: 1,
            storage_state: String::new(),
        }
    }

    /// A request that takes a session and never puts it back (it failed, or was cancelled
    /// after its commit may have run) leaves the next request to read the database.
    #[test]
    fn a_taken_session_is_gone_until_put_back() {
        let cache = SessionCache::default();
        let first = session(0);
        cache.put(first.clone(), None);
        assert_eq!(cache.take(&first.id).map(|c| c.session.received), Some(0));
        assert!(cache.take(&first.id).is_none());
        cache.put(
            UploadSession {
                received: 10,
                ..first.clone()
            },
            None,
        );
        assert_eq!(cache.take(&first.id).map(|c| c.session.received), Some(10));
    }

    #[test]
    fn it_remembers_at_most_its_capacity() {
        let cache = SessionCache::default();
        let sessions: Vec<_> = (0..=CAPACITY).map(|_| session(0)).collect();
        for s in &sessions {
            cache.put(s.clone(), None);
        }
        assert!(cache.take(&sessions[CAPACITY].id).is_none());
        // Full, it still takes the new state of a session it has.
        cache.put(
            UploadSession {
                received: 5,
                ..sessions[1].clone()
            },
            None,
        );
        assert_eq!(
            cache.take(&sessions[1].id).map(|c| c.session.received),
            Some(5)
        );
    }
}
