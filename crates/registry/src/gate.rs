//! The write gate: the one choke point every write passes through.
//!
//! Every mutation — an HTTP handler, a background job, a CLI maintenance command — first asks the
//! gate for a [`WritePermit`], and every mutating method of the metadata and blob stores takes
//! `&WritePermit`, so a write that skipped the gate does not compile. The permit is held for as
//! long as the write runs: the gate therefore knows how many writes are in flight, can wait for
//! them to finish, and can cancel them cleanly (a cancelled write stops before its commit point,
//! which calls [`WritePermit::check`], so nothing half-written becomes visible).
//!
//! Admission takes a [`WriteIntent`] describing what the write is about to do. Today every intent
//! is admitted; the read-only mode decides from the intent (and the holds) whether a write that
//! belongs to a push already under way may finish, and this module is the only place that
//! decision is made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metadata::UploadSession;
use crate::reference::RepositoryName;

/// What a write is about to do, as the gate needs to know it to admit or refuse it.
#[derive(Debug, Clone, Copy)]
pub enum WriteIntent<'a> {
    /// Opening a new blob upload (a `POST`, including monolithic uploads and mounts).
    OpenUpload {
        /// The repository the blob is uploaded to.
        repository: &'a RepositoryName,
    },
    /// Appending to, completing or cancelling an upload session that already exists.
    ContinueUpload {
        /// The session, as stored in the metadata database.
        session: &'a UploadSession,
    },
    /// Putting a manifest, which may complete a push whose blobs were just uploaded.
    PutManifest {
        /// The repository the manifest is put in.
        repository: &'a RepositoryName,
        /// Who is pushing (the client address, or the user once authentication exists).
        client: &'a str,
    },
    /// Deleting a manifest, a tag or a blob from a repository.
    Delete {
        /// The repository something is deleted from.
        repository: &'a RepositoryName,
    },
    /// A background or maintenance job (garbage collection, upload expiry).
    Housekeeping {
        /// The job's name, for logs and metrics.
        job: &'static str,
    },
}

/// Why a write was refused or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRefused {
    /// The write was admitted but cancelled before its commit point (the server is shutting
    /// down past its grace period); nothing of it became visible.
    #[error("the write was cancelled before it completed; nothing was stored, retry it")]
    Cancelled,
}

/// The registry's write gate. Cheap to clone; all clones share one state.
#[derive(Clone, Default)]
pub struct WriteGate {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    in_flight: AtomicU64,
    /// Woken whenever the number of writes in flight drops to zero.
    idle: Notify,
    /// Cancelled to stop every write in flight at its next check.
    cancel: CancellationToken,
}

impl WriteGate {
    /// A gate that admits writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks to perform a write. The returned permit must be held for the whole write.
    pub async fn admit(&self, intent: WriteIntent<'_>) -> Result<WritePermit, WriteRefused> {
        tracing::trace!(?intent, "write admitted");
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(WritePermit {
            shared: Arc::clone(&self.shared),
        })
    }

    /// How many writes hold a permit right now.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves once no write holds a permit.
    pub async fn idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            // Register interest before checking, so a drop to zero in between is not missed.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Cancels every write in flight and every write admitted from now on: each stops at its
    /// next check, before its commit point. Used when shutdown outlasts its grace period.
    pub fn cancel_all(&self) {
        self.shared.cancel.cancel();
    }
}

/// Proof that the gate admitted a write. Stores' mutating methods require one; dropping it ends
/// the write as far as the gate is concerned.
#[must_use = "a permit admits a write only while it is held"]
pub struct WritePermit {
    shared: Arc<Shared>,
}

impl WritePermit {
    /// Re-checks the gate at a commit point: fails if the write was cancelled meanwhile, so the
    /// caller stops before making anything visible.
    pub fn check(&self) -> Result<(), WriteRefused> {
        if self.shared.cancel.is_cancelled() {
            Err(WriteRefused::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when this write is cancelled; long writes (streaming a body) select on it.
    pub async fn cancelled(&self) {
        self.shared.cancel.cancelled().await;
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        if self.shared.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

impl std::fmt::Debug for WritePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WritePermit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: WriteIntent<'static> = WriteIntent::Housekeeping { job: "test" };

    #[tokio::test]
    async fn counts_permits_and_reports_idle() {
        let gate = WriteGate::new();
        let a = gate.admit(JOB).await.unwrap();
        let b = gate.admit(JOB).await.unwrap();
        assert_eq!(gate.in_flight(), 2);

        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.idle().await }
        });
        drop(a);
        assert_eq!(gate.in_flight(), 1);
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test]
    async fn cancellation_reaches_permits_at_their_next_check() {
        let gate = WriteGate::new();
        let permit = gate.admit(JOB).await.unwrap();
        assert_eq!(permit.check(), Ok(()));
        gate.cancel_all();
        assert_eq!(permit.check(), Err(WriteRefused::Cancelled));
        // The future resolves at once for a cancelled permit.
        permit.cancelled().await;
    }
}
