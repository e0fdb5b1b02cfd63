//! What the gate needs from the database its state lives in: the holds, the audit trail, and
//! what a drain waits for. The metadata store implements it (its trait extends this one), so the
//! gate — and the permits it issues — sit below the stores that require those permits.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::ControlWrite;
use crate::ReplicaState;
use crate::events::ModeEvent;
use crate::holds::{Hold, HoldName};
use wharf_core::reference::RepositoryName;
use wharf_core::time::Millis;

/// A failure of the database the gate's state lives in, as its backend reported it.
#[derive(Debug)]
pub struct StoreError(Box<dyn std::error::Error + Send + Sync>);

impl StoreError {
    /// Wraps a backend's error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError(error.into())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Shorthand for results of the gate's store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A push as the database knows it: one client's writes in one repository (the client is the
/// account with authentication, the address without). A drain lets the pushes that had begun
/// before the hold finish, and decides from this alone, so every replica decides alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushActivity {
    /// The repository pushed to.
    pub repository: String,
    /// Who pushes.
    pub client: String,
    /// Its upload sessions still open (not counting ones idle since before the hold's grace).
    pub open_uploads: u64,
    /// Its latest write: an upload's latest chunk or completion, a mount, a manifest put.
    pub last_write: Millis,
    /// When it last put a manifest by tag, if it did.
    pub tagged_at: Option<Millis>,
}

impl PushActivity {
    /// Whether the push is complete: a manifest was put by tag after its every other write, and
    /// nothing of it is open. (Clients put a multi-arch push's images by digest and its index by
    /// tag last, so a manifest put by digest keeps a push going.)
    pub fn is_complete(&self) -> bool {
        self.open_uploads == 0
            && self
                .tagged_at
                .is_some_and(|tagged| tagged >= self.last_write)
    }
}

/// The gate's state in the shared database (the control plane: the only writes allowed while
/// read-only, each proven by a [`ControlWrite`]).
#[async_trait]
pub trait GateStore: Send + Sync + 'static {
    /// Every hold, expired ones included (callers decide what is active).
    async fn holds(&self) -> Result<Vec<Hold>>;

    /// Stores a hold, keeping the creation time of one of the same name, and records `event` in
    /// the audit trail in the same transaction. Returns the hold as stored and whether it is new.
    async fn put_hold(
        &self,
        control: &ControlWrite,
        hold: &Hold,
        event: &ModeEvent,
    ) -> Result<(Hold, bool)>;

    /// Deletes a hold and, in the same transaction, records `event` with the hold's name and
    /// reason. Returns the hold, if it existed (nothing is recorded otherwise).
    async fn delete_hold(
        &self,
        control: &ControlWrite,
        name: &HoldName,
        event: &ModeEvent,
    ) -> Result<Option<Hold>>;

    /// Deletes the holds expired at `now` and, in the same transaction, records `event` for each,
    /// with its name and reason. Returns them.
    async fn delete_expired_holds(
        &self,
        control: &ControlWrite,
        now: Millis,
        event: &ModeEvent,
    ) -> Result<Vec<Hold>>;

    /// Appends an event to the audit trail.
    async fn record_mode_event(&self, control: &ControlWrite, event: &ModeEvent) -> Result<()>;

    /// The latest `limit` audit events, newest first.
    async fn mode_events(&self, limit: u32) -> Result<Vec<ModeEvent>>;

    /// The push of `client` in `repository`, if it had begun before a hold taken at `hold_at`:
    /// one of its upload sessions was opened before `hold_at` and received bytes or finished at
    /// `grace_start` or later (a session idle since before `grace_start` was abandoned).
    async fn push_activity(
        &self,
        repository: &RepositoryName,
        client: &str,
        hold_at: Millis,
        grace_start: Millis,
    ) -> Result<Option<PushActivity>>;

    /// Every push that had begun before a hold taken at `hold_at` (as [`push_activity`] decides),
    /// complete or not.
    ///
    /// [`push_activity`]: GateStore::push_activity
    async fn drain_pushes(&self, hold_at: Millis, grace_start: Millis)
    -> Result<Vec<PushActivity>>;

    /// How many upload sessions are open.
    async fn open_upload_count(&self) -> Result<u64>;

    /// Whether other processes (replicas) share this store. Then each publishes its state
    /// (its heartbeat row) and reads the others'; what a process keeps in memory between
    /// requests may be out of date; and one request writes to an upload session at a time only
    /// by claiming it in the database. A store only one process opens (SQLite, whose data
    /// folder is locked) has one replica: its gate looks at no other.
    fn shared_by_replicas(&self) -> bool {
        false
    }

    /// How many times the holds have changed: every change of a hold (taken, renewed, released,
    /// expired) adds one, in the change's transaction. A replica reports the number it has
    /// applied, so "every replica has applied the latest holds" is a fact, not a guess.
    async fn holds_version(&self) -> Result<u64>;

    /// Publishes a replica's state (its heartbeat), replacing the one of the same name. Only
    /// called on a store [shared by replicas](GateStore::shared_by_replicas); a store only one
    /// process opens keeps nothing.
    async fn put_replica(&self, control: &ControlWrite, state: &ReplicaState) -> Result<()> {
        let _ = (control, state);
        Ok(())
    }

    /// Removes a replica's state (it stopped cleanly), and the states last seen before
    /// `forget_before` (replicas lost long ago). Returns whether the first existed.
    async fn delete_replica(
        &self,
        control: &ControlWrite,
        name: &str,
        forget_before: Millis,
    ) -> Result<bool> {
        let _ = (control, name, forget_before);
        Ok(false)
    }

    /// Every replica's last published state, by name (none on a store only one process opens).
    async fn replicas(&self) -> Result<Vec<ReplicaState>> {
        Ok(Vec::new())
    }

    /// Calls `changed` whenever another process may have changed the holds, until `stop` is
    /// cancelled: at once for a notification, and whenever notifications may have been missed
    /// (a reconnection). Stores shared by several processes implement it (PostgreSQL's
    /// LISTEN/NOTIFY); the default never calls it, and the gate's periodic re-read of the holds
    /// remains the guarantee either way.
    async fn follow_hold_changes(
        &self,
        replica: &str,
        changed: &(dyn Fn() + Send + Sync),
        stop: CancellationToken,
    ) {
        let _ = (replica, changed);
        stop.cancelled().await;
    }
}

/// The holds in `store` that still hold at `now`.
pub async fn active_holds(store: &dyn GateStore, now: Millis) -> Result<Vec<Hold>> {
    Ok(store
        .holds()
        .await?
        .into_iter()
        .filter(|h| h.is_active(now))
        .collect())
}
