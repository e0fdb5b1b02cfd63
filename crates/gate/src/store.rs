//! What the gate needs from the database its state lives in: the holds, the audit trail, and
//! what a drain waits for. The metadata store implements it (its trait extends this one), so the
//! gate — and the permits it issues — sit below the stores that require those permits.

use async_trait::async_trait;

use crate::ControlWrite;
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

/// What a drain still waits for, as the database knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainPending {
    /// Open upload sessions opened before the hold and active since shortly before it.
    pub open_uploads: u64,
    /// Open upload sessions opened before the hold but idle since before that: abandoned.
    pub idle_uploads: u64,
    /// When the last upload of a push in progress finished (its manifest may follow).
    pub last_completion: Option<Millis>,
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

    /// Whether `client` has a push in progress in `repository`: an upload session opened before
    /// `hold_at` that was active (received bytes, or finished) at `grace_start` or later.
    async fn push_in_progress(
        &self,
        repository: &RepositoryName,
        client: &str,
        hold_at: Millis,
        grace_start: Millis,
    ) -> Result<bool>;

    /// What a drain that started with a hold at `hold_at` still waits for; uploads idle since
    /// before `grace_start` are abandoned, not waited for.
    async fn drain_pending(&self, hold_at: Millis, grace_start: Millis) -> Result<DrainPending>;
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
