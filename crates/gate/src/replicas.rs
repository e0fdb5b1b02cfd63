//! Replicas: every `wharf serve` of a registry publishes its effective state in the shared
//! database — a heartbeat row — and reads the others', so that "read-only is in effect on every
//! replica" is a fact an operator or a backup job can wait on, and a drain ends only when no
//! replica can still admit a write of a push it lets finish.
//!
//! A replica's row says its mode and since when, the moment it switched to draining (its cutoff
//! for "begun before the hold"), its writes in flight and the pushes they belong to, and which
//! change of the holds it has applied ([`GateStore::holds_version`]). It is written at every
//! change of mode, at every look while draining, and every `heartbeat` otherwise. A row not
//! written for `lost_after` is a lost replica: reported, not waited for.
//!
//! [`GateStore::holds_version`]: crate::store::GateStore::holds_version

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::mode::Mode;
use crate::store::StoreError;
use crate::{ControlWrite, GateStatus, Inner, WriteGate, duration_millis};
use wharf_core::time::{Millis, now_millis};

/// How long the rows of replicas lost long ago are kept (and reported as lost) before the next
/// replica to stop cleanly forgets them.
const FORGET_LOST_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How often a wait for read-only on every replica looks at the replicas' rows.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// How replicas publish their state and when one counts as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSettings {
    /// How often a replica writes its row when nothing changes.
    pub heartbeat: Duration,
    /// A replica whose row is older than this is lost: reported, and not waited for.
    pub lost_after: Duration,
    /// How often the holds are re-read even without a notification: the guarantee when
    /// notifications are lost (another process's holds, LISTEN behind PgBouncer).
    pub reread_holds: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            heartbeat: Duration::from_secs(2),
            lost_after: Duration::from_secs(10),
            reread_holds: Duration::from_secs(2),
        }
    }
}

/// A push one of a replica's writes in flight belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RunningPush {
    /// The repository pushed to.
    pub repository: String,
    /// Who pushes.
    pub client: String,
}

/// A replica's state as it published it (its heartbeat row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaState {
    /// The replica's name (host name and process id).
    pub name: String,
    /// Where it serves, as it advertises itself.
    pub address: String,
    /// Its effective mode.
    pub mode: Mode,
    /// Since when.
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub since: Millis,
    /// While draining or read-only: when it switched to draining (what it admitted before
    /// then had begun before the hold).
    #[serde(serialize_with = "wharf_core::time::serialize_optional_time")]
    pub drain_cutoff: Option<Millis>,
    /// Its writes holding a permit.
    pub writes_in_flight: u64,
    /// The pushes of those writes.
    pub pushes_running: Vec<RunningPush>,
    /// The change of the holds it has applied.
    pub holds_applied: u64,
    /// When it started.
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub started_at: Millis,
    /// When it last wrote its row.
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub last_seen: Millis,
}

impl ReplicaState {
    /// Whether the replica wrote its row within `lost_after` of `now`.
    pub fn is_live(&self, now: Millis, lost_after: Duration) -> bool {
        now - self.last_seen <= duration_millis(lost_after)
    }

    /// Whether a write of the push of `client` in `repository` runs on this replica.
    pub fn runs_push(&self, repository: &str, client: &str) -> bool {
        self.pushes_running
            .iter()
            .any(|p| p.repository == repository && p.client == client)
    }
}

/// One replica in a report of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaReport {
    /// What it published (for the replica answering, what it knows right now).
    #[serde(flatten)]
    pub state: ReplicaState,
    /// Whether it is live (its row is recent) or lost.
    pub live: bool,
    /// Whether it is the replica answering.
    pub this: bool,
}

/// Every replica's state and what follows from it.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The replica answering, at the moment its entry in `replicas` was taken.
    pub this: GateStatus,
    /// Every replica with a row, live or lost, by name.
    pub replicas: Vec<ReplicaReport>,
    /// The latest change of the holds.
    pub holds_version: u64,
    /// Live replicas.
    pub live: usize,
    /// Live replicas read-only with the latest holds applied.
    pub read_only: usize,
}

impl ClusterStatus {
    /// Whether read-only is in effect on every live replica: each is read-only and has applied
    /// the latest change of the holds.
    pub fn read_only_in_effect(&self) -> bool {
        self.live > 0 && self.read_only == self.live
    }
}

/// The cutoff of a drain over the cluster: the latest moment any live replica switched to
/// draining, or `None` while one has not (it may still admit new pushes, which count as begun
/// before the hold). `own` is this replica's.
pub(crate) fn cluster_cutoff(own: Millis, others: &[ReplicaState]) -> Option<Millis> {
    others.iter().try_fold(own, |cutoff, other| {
        match (other.mode, other.drain_cutoff) {
            (Mode::Draining | Mode::ReadOnly, Some(theirs)) => Some(cutoff.max(theirs)),
            _ => None,
        }
    })
}

impl WriteGate {
    /// This replica's name among replicas.
    pub fn replica(&self) -> &str {
        &self.shared.replica
    }

    /// Changes how replicas publish their state and when one counts as lost.
    pub fn set_cluster_settings(&self, settings: ClusterSettings) {
        self.lock().cluster = settings;
        self.shared.heartbeat.notify_one();
    }

    /// How replicas publish their state and when one counts as lost.
    pub fn cluster_settings(&self) -> ClusterSettings {
        self.lock().cluster
    }

    /// This replica's state, as it would publish it now.
    pub fn replica_state(&self) -> ReplicaState {
        self.replica_state_of(&self.lock())
    }

    fn replica_state_of(&self, inner: &Inner) -> ReplicaState {
        let mut pushes_running: Vec<RunningPush> = inner
            .pushes_in_flight
            .keys()
            .map(|(repository, client)| RunningPush {
                repository: repository.clone(),
                client: client.clone(),
            })
            .collect();
        pushes_running.sort();
        ReplicaState {
            name: self.shared.replica.clone(),
            address: inner.address.clone(),
            mode: inner.snapshot.mode,
            since: inner.snapshot.since,
            drain_cutoff: match inner.snapshot.mode {
                Mode::ReadWrite => None,
                Mode::Draining | Mode::ReadOnly => inner.snapshot.hold_at,
            },
            writes_in_flight: inner.in_flight,
            pushes_running,
            holds_applied: inner.holds_applied,
            started_at: self.shared.started_at,
            last_seen: now_millis(),
        }
    }

    /// Writes this replica's row now, if other replicas share the store (else nobody reads it)
    /// and this process serves ([`WriteGate::publish_heartbeats`] runs).
    pub(crate) async fn publish_state(&self) -> Result<(), StoreError> {
        if !self.shared.store.shared_by_replicas() || !self.lock().serving {
            return Ok(());
        }
        let state = self.replica_state();
        self.shared
            .store
            .put_replica(&ControlWrite(()), &state)
            .await
    }

    /// The other replicas that are live, as the database has them now.
    pub(crate) async fn live_others(&self) -> Result<Vec<ReplicaState>, StoreError> {
        if !self.shared.store.shared_by_replicas() {
            return Ok(Vec::new());
        }
        let lost_after = self.lock().cluster.lost_after;
        let now = now_millis();
        Ok(self
            .shared
            .store
            .replicas()
            .await?
            .into_iter()
            .filter(|r| r.name != self.shared.replica && r.is_live(now, lost_after))
            .collect())
    }

    /// Every replica's state: the others' rows, and this replica's own state as it is now.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, StoreError> {
        let store = &self.shared.store;
        let holds_version = store.holds_version().await?;
        let rows = if store.shared_by_replicas() {
            store.replicas().await?
        } else {
            Vec::new()
        };
        let lost_after = self.lock().cluster.lost_after;
        let now = now_millis();
        let mut replicas: Vec<ReplicaReport> = rows
            .into_iter()
            .filter(|r| r.name != self.shared.replica)
            .map(|state| ReplicaReport {
                live: state.is_live(now, lost_after),
                this: false,
                state,
            })
            .collect();
        // This replica's entry and status from one look, so a report never mixes two modes.
        let (this, state, serving) = {
            let inner = self.lock();
            (
                self.status_of(&inner),
                self.replica_state_of(&inner),
                inner.serving,
            )
        };
        // A process that serves nobody (a command acting on the database in process) is not a
        // replica; it stands for the registry only when no replica is live.
        if serving || !store.shared_by_replicas() || !replicas.iter().any(|r| r.live) {
            replicas.push(ReplicaReport {
                state,
                live: true,
                this: true,
            });
        }
        replicas.sort_by(|a, b| a.state.name.cmp(&b.state.name));
        let live = replicas.iter().filter(|r| r.live).count();
        let read_only = replicas
            .iter()
            .filter(|r| {
                r.live && r.state.mode == Mode::ReadOnly && r.state.holds_applied >= holds_version
            })
            .count();
        Ok(ClusterStatus {
            this,
            replicas,
            holds_version,
            live,
            read_only,
        })
    }

    /// Waits until read-only is in effect on every live replica, at most `timeout`; returns
    /// whether it is.
    pub async fn wait_for_read_only_everywhere(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let everywhere = async {
            loop {
                // This replica first: it says so itself, at once.
                let mut updates = self.subscribe();
                if updates
                    .wait_for(|snapshot| snapshot.mode == Mode::ReadOnly)
                    .await
                    .is_err()
                {
                    return;
                }
                match self.cluster_status().await {
                    Ok(status) if status.read_only_in_effect() => return,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the replicas' state while waiting for read-only");
                    }
                }
                tokio::time::sleep(WAIT_POLL).await;
            }
        };
        tokio::time::timeout_at(deadline, everywhere).await.is_ok()
    }

    /// Publishes this replica's state until `stop` is cancelled, then removes its row. `address`
    /// is where it serves. A store no other process shares has no other replica to tell: then
    /// this only waits for `stop`.
    pub async fn publish_heartbeats(&self, address: String, stop: CancellationToken) {
        {
            let mut inner = self.lock();
            inner.address = address;
            inner.serving = true;
        }
        if !self.shared.store.shared_by_replicas() {
            stop.cancelled().await;
            return;
        }
        let mut failing = false;
        loop {
            match self.publish_state().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("publishing this replica's state again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot publish this replica's state; other replicas will report it lost if this lasts");
                }
                Err(_) => {}
            }
            let every = self.lock().cluster.heartbeat;
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.shared.heartbeat.notified() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
        // No draining look may write the row again once it is removed.
        self.lock().serving = false;
        let forget_before = now_millis() - duration_millis(FORGET_LOST_AFTER);
        if let Err(error) = self
            .shared
            .store
            .delete_replica(&ControlWrite(()), &self.shared.replica, forget_before)
            .await
        {
            tracing::warn!(%error, "cannot remove this replica's state; it will be reported lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(mode: Mode, drain_cutoff: Option<Millis>) -> ReplicaState {
        ReplicaState {
            name: "r".to_owned(),
            address: String::new(),
            mode,
            since: 0,
            drain_cutoff,
            writes_in_flight: 0,
            pushes_running: Vec::new(),
            holds_applied: 0,
            started_at: 0,
            last_seen: 0,
        }
    }

    #[test]
    fn the_cluster_cutoff_is_the_latest_switch_once_every_replica_switched() {
        assert_eq!(cluster_cutoff(10, &[]), Some(10));
        let switched = [
            replica(Mode::Draining, Some(12)),
            replica(Mode::ReadOnly, Some(8)),
        ];
        assert_eq!(cluster_cutoff(10, &switched), Some(12));
        let one_writable = [
            replica(Mode::Draining, Some(12)),
            replica(Mode::ReadWrite, None),
        ];
        assert_eq!(cluster_cutoff(10, &one_writable), None);
    }

    #[test]
    fn a_replica_is_lost_once_its_row_is_older_than_lost_after() {
        let mut state = replica(Mode::ReadWrite, None);
        state.last_seen = 1_000;
        assert!(state.is_live(11_000, Duration::from_secs(10)));
        assert!(!state.is_live(11_001, Duration::from_secs(10)));
    }
}
