//! The write gate: the one choke point every write passes through, and the read-only mode it
//! enforces.
//!
//! Every mutation — an HTTP handler, a background job, a CLI maintenance command — first asks the
//! gate for a [`WritePermit`], and every mutating method of the metadata and blob stores takes
//! `&WritePermit`, so a write that skipped the gate does not compile. The permit is held for as
//! long as the write runs, so the gate knows how many writes are in flight, and can cancel them:
//! a cancelled write stops at its next check, before its commit point ([`WritePermit::check`],
//! which every metadata transaction calls), so nothing half-written becomes visible.
//!
//! # Read-only mode
//!
//! The registry is desired read-only while at least one [hold](holds) exists (they live in the
//! metadata database). Each replica's effective [`Mode`] then goes:
//!
//! - `read-write` → `draining` the moment a first hold appears: new pushes are refused at once;
//!   a *push* that had begun before the hold may finish. A push is one client's writes in one
//!   repository (the account with authentication, the address without); it had begun if one of
//!   its uploads was open at the hold or finished within `push_grace` before it, and it may keep
//!   opening uploads and mounts and putting manifests as long as each write comes within
//!   `push_grace` of its previous one. It is complete when a manifest is put by tag and nothing
//!   of it is open. Admission is decided from the database ([`store::PushActivity`]), where
//!   sessions and manifest puts are recorded, so every replica decides alike; writes this
//!   replica is running count too (a layer streaming in one long request records nothing until
//!   it ends).
//! - `draining` → `read-only` the moment every push is complete or has paused past the grace and
//!   no admitted write is running (see [`controller`]), or at the drain timeout, when the writes
//!   still running are cancelled cleanly.
//! - back to `read-write` the moment the last hold is released or expires.
//!
//! Admission takes a [`WriteIntent`] saying what the write is for; this module is the only
//! place the decision is made.

mod controller;
pub mod events;
pub mod holds;
pub mod metrics;
pub mod mode;
pub mod replicas;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub use controller::{HoldError, HoldRequest};
pub use events::{EventKind, ModeEvent};
pub use holds::{Hold, HoldName, HoldSource};
pub use mode::{DrainSettings, Mode, ModeSnapshot, Transition};
pub use replicas::{ClusterSettings, ClusterStatus, ReplicaReport, ReplicaState, RunningPush};

use crate::metrics::Metrics;
use crate::store::{GateStore, StoreError};
use wharf_core::reference::RepositoryName;
use wharf_core::time::{Millis, now_millis};

/// The message a denied registry write carries, as Quay users already know it (clients print it
/// as `denied: System is currently read-only. ...`).
pub const READ_ONLY_MESSAGE: &str = "System is currently read-only. Pulls will succeed but all write operations are currently suspended.";

/// What a write is about to do, as the gate needs to know it to admit or refuse it.
#[derive(Debug, Clone, Copy)]
pub enum WriteIntent<'a> {
    /// Opening a new blob upload (a `POST`, including monolithic uploads and mounts).
    OpenUpload {
        /// The repository the blob is uploaded to.
        repository: &'a RepositoryName,
        /// Who is pushing (the account with authentication, the address without).
        client: &'a str,
    },
    /// Appending to, completing or cancelling an upload session that already exists.
    ContinueUpload {
        /// The session's repository.
        repository: &'a RepositoryName,
        /// The session's client, as recorded when it was opened.
        client: &'a str,
    },
    /// Putting a manifest, which may complete a push whose blobs were just uploaded.
    PutManifest {
        /// The repository the manifest is put in.
        repository: &'a RepositoryName,
        /// Who is pushing (the account with authentication, the address without).
        client: &'a str,
    },
    /// Deleting a manifest, a tag or a blob from a repository.
    Delete {
        /// The repository something is deleted from.
        repository: &'a RepositoryName,
    },
    /// Creating or changing accounts, teams, grants or visibility.
    AccountChange,
    /// A background or maintenance job (garbage collection, upload expiry).
    Housekeeping {
        /// The job's name, for logs and metrics.
        job: &'static str,
    },
}

impl<'a> WriteIntent<'a> {
    /// The push the write belongs to (repository and client), for the writes a push makes.
    fn push(&self) -> Option<(&'a RepositoryName, &'a str)> {
        match *self {
            WriteIntent::OpenUpload { repository, client }
            | WriteIntent::ContinueUpload { repository, client }
            | WriteIntent::PutManifest { repository, client } => Some((repository, client)),
            WriteIntent::Delete { .. }
            | WriteIntent::AccountChange
            | WriteIntent::Housekeeping { .. } => None,
        }
    }
}

/// A push, as the gate counts the writes it has running: the repository's name and the client.
type PushKey = (String, String);

/// Why a write was refused or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRefused {
    /// The registry is read-only, or draining and the write is not one it lets finish.
    #[error("{READ_ONLY_MESSAGE}")]
    ReadOnly {
        /// The mode that refused it.
        mode: Mode,
        /// The holds' reasons.
        reason: String,
        /// The holds' names.
        holds: Vec<String>,
    },
    /// The write was admitted but cancelled before its commit point (a drain timeout, or a
    /// shutdown past its grace period); nothing of it became visible.
    #[error("the write was cancelled before it completed; nothing was stored, retry it")]
    Cancelled,
}

/// Proof that a write is the control plane's own (holds and the audit trail, backup leases, the
/// first superuser): the only writes allowed while read-only. Only the gate makes one
/// ([`WriteGate::control_write`]).
#[derive(Debug)]
pub struct ControlWrite(());

/// The registry's write gate. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct WriteGate {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn GateStore>,
    /// This replica's name, in the audit trail and the state report.
    replica: String,
    inner: std::sync::Mutex<Inner>,
    /// The snapshot as last published, for waiters and reports.
    published: watch::Sender<ModeSnapshot>,
    /// When this process opened the gate.
    started_at: Millis,
    /// Woken when the controller should look again (a hold changed, a draining write ended).
    wake: Notify,
    /// Woken when this replica's published state should be written now (its mode changed).
    heartbeat: Notify,
    /// Woken whenever the number of writes in flight drops to zero.
    idle: Notify,
    /// Cancelled to stop every write, at shutdown past its grace period.
    shutdown: CancellationToken,
    /// One evaluation of the mode at a time.
    evaluating: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

struct Inner {
    snapshot: ModeSnapshot,
    in_flight: u64,
    /// The writes in flight of each push: a push with one running is going, whatever the
    /// database recorded last.
    pushes_in_flight: HashMap<PushKey, u64>,
    /// Bumped at every change of mode, so an admission decided on an old mode is retried.
    generation: u64,
    /// Cancelled at a drain timeout: the writes admitted so far stop.
    epoch: CancellationToken,
    settings: DrainSettings,
    /// When the drain started, while draining.
    drain_started: Option<Millis>,
    /// Set at a drain timeout, with what it cut off, until read-only: nothing more is
    /// admitted, and read-only follows once the cancelled writes have stopped.
    timed_out: Option<DrainCounts>,
    /// While draining: when the first push still going pauses past the grace, if it writes
    /// nothing more (the controller looks again then).
    next_pause: Option<Millis>,
    /// The change of the holds the mode was last brought up to date with.
    holds_applied: u64,
    /// How replicas publish their state.
    cluster: ClusterSettings,
    /// While draining: the other live replicas, as of the controller's last look.
    others: Vec<ReplicaState>,
    /// Where this replica serves, as it advertises itself.
    address: String,
    /// Whether this process serves the registry and so is one of its replicas (heartbeats are
    /// being published). A command acting on the database in process (`wharf backup`, `gc`)
    /// follows the holds but serves nobody: it never appears among the replicas.
    serving: bool,
}

impl Inner {
    /// Whether a write of the push of `client` in `repository` holds a permit here.
    fn push_running(&self, repository: &str, client: &str) -> bool {
        self.pushes_in_flight
            .keys()
            .any(|(r, c)| r == repository && c == client)
    }

    /// Whether a write of that push holds a permit on another live replica, as they last said.
    fn push_running_elsewhere(&self, repository: &str, client: &str) -> bool {
        self.others.iter().any(|o| o.runs_push(repository, client))
    }

    /// The cutoff of the drain over every replica (see [`replicas::cluster_cutoff`]), or `None`
    /// while another replica has not switched to draining yet.
    fn cluster_cutoff(&self) -> Option<Millis> {
        replicas::cluster_cutoff(self.snapshot.hold_at?, &self.others)
    }
}

/// What a drain let finish and what it cut off, recorded with its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DrainCounts {
    pushes_completed: u64,
    pushes_cut_off: u64,
    cancelled_writes: u64,
    abandoned_uploads: u64,
}

/// A gate's numbers, for reports.
#[derive(Debug, Clone)]
pub struct GateStatus {
    /// The mode and holds.
    pub snapshot: ModeSnapshot,
    /// Writes holding a permit.
    pub in_flight: u64,
    /// The drain settings in force.
    pub settings: DrainSettings,
    /// This replica's name.
    pub replica: String,
    /// When the current drain started, while draining.
    pub drain_started: Option<Millis>,
}

impl WriteGate {
    /// Opens the gate of a registry whose holds are in `store`. With holds in place, the gate
    /// starts read-only (a process that just started has nothing to drain).
    pub async fn open(
        store: Arc<dyn GateStore>,
        settings: DrainSettings,
        metrics: Arc<Metrics>,
    ) -> Result<WriteGate, StoreError> {
        let now = now_millis();
        let store_version = store.holds_version().await?;
        let holds = store::active_holds(store.as_ref(), now).await?;
        let mode = if holds.is_empty() {
            Mode::ReadWrite
        } else {
            Mode::ReadOnly
        };
        let snapshot = ModeSnapshot {
            mode,
            since: now,
            hold_at: holds.iter().map(|h| h.created_at).min(),
            holds,
            last_transition: None,
        };
        metrics.set_mode(&snapshot);
        let (published, _) = watch::channel(snapshot.clone());
        let gate = WriteGate {
            shared: Arc::new(Shared {
                store,
                replica: replica_name(),
                started_at: now,
                inner: std::sync::Mutex::new(Inner {
                    snapshot,
                    in_flight: 0,
                    pushes_in_flight: HashMap::new(),
                    generation: 0,
                    epoch: CancellationToken::new(),
                    settings,
                    drain_started: None,
                    timed_out: None,
                    next_pause: None,
                    holds_applied: store_version,
                    cluster: ClusterSettings::default(),
                    others: Vec::new(),
                    address: String::new(),
                    serving: false,
                }),
                published,
                wake: Notify::new(),
                heartbeat: Notify::new(),
                idle: Notify::new(),
                shutdown: CancellationToken::new(),
                evaluating: tokio::sync::Mutex::new(()),
                metrics,
            }),
        };
        Ok(gate)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to perform a write. The returned permit must be held for the whole write.
    pub async fn admit(&self, intent: WriteIntent<'_>) -> Result<WritePermit, WriteRefused> {
        loop {
            let (snapshot, generation, grace, closed, cutoff) = {
                let mut inner = self.lock();
                if inner.snapshot.mode == Mode::ReadWrite {
                    return Ok(self.issue(&mut inner, intent));
                }
                (
                    inner.snapshot.clone(),
                    inner.generation,
                    inner.settings.push_grace,
                    inner.timed_out.is_some(),
                    inner.cluster_cutoff(),
                )
            };
            let admitted = match (snapshot.mode, closed) {
                (Mode::Draining, false) => {
                    // Until every replica has switched, a push begun on one still writable
                    // counts as begun before the hold: the cutoff is now.
                    let cutoff = cutoff.unwrap_or_else(now_millis);
                    self.admits_while_draining(intent, cutoff, grace).await
                }
                _ => false,
            };
            let mut inner = self.lock();
            if inner.generation != generation {
                // The mode changed while deciding: decide again under the new one.
                continue;
            }
            if admitted {
                tracing::debug!(?intent, "write admitted while draining");
                return Ok(self.issue(&mut inner, intent));
            }
            self.shared.metrics.write_denied(snapshot.mode);
            tracing::debug!(?intent, mode = snapshot.mode.as_str(), "write refused");
            return Err(WriteRefused::ReadOnly {
                mode: snapshot.mode,
                reason: snapshot.reasons(),
                holds: snapshot.holds.iter().map(|h| h.name.to_string()).collect(),
            });
        }
    }

    /// Whether a write belongs to a push the drain lets finish: one that had begun before the
    /// hold, is not complete, and keeps going (a write of it is running here or on another
    /// replica, or its latest write is within the grace).
    async fn admits_while_draining(
        &self,
        intent: WriteIntent<'_>,
        hold_at: Millis,
        grace: std::time::Duration,
    ) -> bool {
        let Some((repository, client)) = intent.push() else {
            return false;
        };
        if self.push_running(repository, client) {
            return true;
        }
        let grace = duration_millis(grace);
        match self
            .shared
            .store
            .push_activity(repository, client, hold_at, hold_at - grace)
            .await
        {
            Ok(Some(push)) => !push.is_complete() && now_millis() - push.last_write <= grace,
            Ok(None) => false,
            Err(error) => {
                tracing::error!(%error, "cannot tell whether a push is in progress; refusing its write");
                false
            }
        }
    }

    /// Whether a write of this push is running on this replica or another.
    fn push_running(&self, repository: &RepositoryName, client: &str) -> bool {
        let inner = self.lock();
        inner.push_running(repository.as_str(), client)
            || inner.push_running_elsewhere(repository.as_str(), client)
    }

    fn issue(&self, inner: &mut Inner, intent: WriteIntent<'_>) -> WritePermit {
        inner.in_flight += 1;
        self.shared.metrics.set_writes_in_flight(inner.in_flight);
        let push = intent
            .push()
            .map(|(repository, client)| (repository.as_str().to_owned(), client.to_owned()));
        if let Some(key) = &push {
            *inner.pushes_in_flight.entry(key.clone()).or_default() += 1;
        }
        WritePermit {
            shared: Arc::clone(&self.shared),
            epoch: inner.epoch.clone(),
            push,
        }
    }

    /// How many writes hold a permit right now.
    pub fn in_flight(&self) -> u64 {
        self.lock().in_flight
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
        self.shared.shutdown.cancel();
    }

    /// The mode and holds as last published.
    pub fn snapshot(&self) -> ModeSnapshot {
        self.shared.published.borrow().clone()
    }

    /// Everything a report needs.
    pub fn status(&self) -> GateStatus {
        self.status_of(&self.lock())
    }

    fn status_of(&self, inner: &Inner) -> GateStatus {
        GateStatus {
            snapshot: inner.snapshot.clone(),
            in_flight: inner.in_flight,
            settings: inner.settings,
            replica: self.shared.replica.clone(),
            drain_started: inner.drain_started,
        }
    }

    /// Follows the published snapshot (for waiting until read-only is in effect).
    pub fn subscribe(&self) -> watch::Receiver<ModeSnapshot> {
        self.shared.published.subscribe()
    }

    /// Changes the drain settings (the configuration was reloaded).
    pub fn set_drain_settings(&self, settings: DrainSettings) {
        self.lock().settings = settings;
        self.shared.wake.notify_one();
    }

    /// The metrics the gate keeps.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Proof for a control-plane write (a backup lease, the first superuser): whoever holds the
    /// registry's gate may make them, in any mode.
    pub fn control_write(&self) -> ControlWrite {
        ControlWrite(())
    }
}

/// Proof that the gate admitted a write. Stores' mutating methods require one; dropping it ends
/// the write as far as the gate is concerned.
#[must_use = "a permit admits a write only while it is held"]
pub struct WritePermit {
    shared: Arc<Shared>,
    epoch: CancellationToken,
    /// The push the write belongs to, if it is one of a push's.
    push: Option<PushKey>,
}

impl WritePermit {
    /// Re-checks the gate at a commit point: fails if the write was cancelled meanwhile, so the
    /// caller stops before making anything visible.
    pub fn check(&self) -> Result<(), WriteRefused> {
        if self.shared.shutdown.is_cancelled() || self.epoch.is_cancelled() {
            Err(WriteRefused::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when this write is cancelled; long writes (streaming a body) select on it.
    pub async fn cancelled(&self) {
        tokio::select! {
            () = self.shared.shutdown.cancelled() => {}
            () = self.epoch.cancelled() => {}
        }
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        let mut inner = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.in_flight -= 1;
        self.shared.metrics.set_writes_in_flight(inner.in_flight);
        if let Some(key) = self.push.take()
            && let Some(running) = inner.pushes_in_flight.get_mut(&key)
        {
            *running -= 1;
            if *running == 0 {
                inner.pushes_in_flight.remove(&key);
            }
        }
        if inner.in_flight == 0 {
            self.shared.idle.notify_waiters();
        }
        if inner.snapshot.mode == Mode::Draining {
            // A draining write ended: the drain may be over.
            self.shared.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for WritePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WritePermit")
    }
}

fn duration_millis(duration: std::time::Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// This gate's name among replicas: the host name and the process id, and a number from the
/// second gate of a process on (the tests run several replicas in one process).
fn replica_name() -> String {
    static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let host = host_name();
    let name = format!("{host}:{}", std::process::id());
    match OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => name,
        n => format!("{name}#{}", n + 1),
    }
}

/// The machine's host name (a pod's name, in Kubernetes).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
