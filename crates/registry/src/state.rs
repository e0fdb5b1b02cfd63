//! The registry's state as the admin API, the CLI and the web UI report it: the mode in effect
//! over every replica, the holds, the writes in flight and the drain's progress. One report,
//! built here, so that every place that shows the state tells the same thing.

use std::time::Duration;

use serde::Serialize;

use crate::{Registry, WritesFailing};
use wharf_core::time::{Millis, serialize_duration, serialize_optional_time, serialize_time};
use wharf_gate::{Hold, Mode, ReplicaReport, Transition};

/// The registry's state (`GET /api/v1/state`).
#[derive(Debug, Clone, Serialize)]
pub struct StateReport {
    /// `read-only` while a hold exists, else `read-write`.
    pub desired: &'static str,
    /// The registry's effective mode: `read-only` only once it is in effect on every replica,
    /// `draining` while a replica drains or has yet to apply the holds.
    pub effective: Mode,
    /// Whether read-only is in effect on every live replica: each is read-only and has applied
    /// the latest change of the holds.
    pub read_only_in_effect: bool,
    /// Live replicas read-only (with the latest holds) over all live replicas, such as `3/3`.
    pub replicas_read_only: String,
    /// Since when the effective mode holds (on the replica answering).
    #[serde(serialize_with = "serialize_time")]
    pub since: Millis,
    /// The holds in place.
    pub holds: Vec<Hold>,
    /// The latest change of the holds, which each replica says it has applied.
    pub holds_version: Option<u64>,
    /// Writes holding a permit, over every live replica.
    pub writes_in_flight: u64,
    /// Upload sessions open (absent when the database did not answer).
    pub uploads_open: Option<u64>,
    /// While draining: the drain's progress in words, such as "2 writes in flight (pushes to
    /// team/app), 1 upload open; read-only on 1/3 replicas (still draining: web-2, web-3)".
    pub progress: Option<String>,
    /// While draining: when it started, and the settings.
    pub drain: Option<DrainReport>,
    /// The last change of the effective mode on the replica answering.
    pub last_transition: Option<Transition>,
    /// Every replica with a row in the database, live or lost.
    pub replicas: Vec<ReplicaReport>,
    /// Set when the other replicas' state could not be read: the report covers this replica
    /// only, and says nothing is in effect everywhere.
    pub replicas_unknown: Option<String>,
    /// Set while writes fail inside the registry (its storage full, say): since when and why.
    pub writes_failing: Option<WritesFailing>,
}

/// A drain under way on the replica answering.
#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    /// When this replica began to drain.
    #[serde(serialize_with = "serialize_time")]
    pub started_at: Millis,
    /// When the hold that started it was taken.
    #[serde(serialize_with = "serialize_optional_time")]
    pub hold_at: Option<Millis>,
    /// How long the drain may last before what is left is cancelled.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// How long a push may pause between its requests and still count as under way.
    #[serde(serialize_with = "serialize_duration")]
    pub push_grace: Duration,
    /// When what is left is cancelled.
    #[serde(serialize_with = "serialize_time")]
    pub deadline: Millis,
}

impl Registry {
    /// The registry's state over every replica. When the other replicas' rows cannot be read,
    /// the report covers this replica and says so (`replicas_unknown`), never that read-only
    /// is in effect.
    pub async fn state_report(&self) -> StateReport {
        let gate = self.gate();
        // The rest of the report is in memory: a database that does not answer only loses this.
        let uploads_open = match self.open_uploads().await {
            Ok(open) => Some(open),
            Err(error) => {
                tracing::warn!(%error, "cannot count the open uploads for the state report");
                None
            }
        };
        let (status, replicas, in_effect, replicas_read_only, holds_version, replicas_unknown) =
            match gate.cluster_status().await {
                Ok(cluster) => (
                    cluster.this.clone(),
                    cluster.replicas.clone(),
                    cluster.read_only_in_effect(),
                    format!("{}/{}", cluster.read_only, cluster.live),
                    Some(cluster.holds_version),
                    None,
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the replicas' state for the state report");
                    let own = ReplicaReport {
                        state: gate.replica_state(),
                        live: true,
                        this: true,
                    };
                    (
                        gate.status(),
                        vec![own],
                        false,
                        "?".to_owned(),
                        None,
                        Some(format!("cannot read the replicas' state: {error}")),
                    )
                }
            };
        let snapshot = &status.snapshot;
        let live = || replicas.iter().filter(|r| r.live);
        let effective = if in_effect {
            Mode::ReadOnly
        } else if snapshot.desired_read_only() || live().any(|r| r.state.mode == Mode::Draining) {
            Mode::Draining
        } else {
            Mode::ReadWrite
        };
        let writes_in_flight = live().map(|r| r.state.writes_in_flight).sum();
        let progress = (effective == Mode::Draining).then(|| {
            drain_progress(
                writes_in_flight,
                uploads_open,
                &replicas_read_only,
                &replicas,
            )
        });
        let millis = |d: Duration| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX);
        StateReport {
            desired: if snapshot.desired_read_only() {
                "read-only"
            } else {
                "read-write"
            },
            effective,
            read_only_in_effect: in_effect,
            replicas_read_only,
            since: snapshot.since,
            holds: snapshot.holds.clone(),
            holds_version,
            writes_in_flight,
            uploads_open,
            progress,
            drain: status.drain_started.map(|started| DrainReport {
                started_at: started,
                hold_at: snapshot.hold_at,
                timeout: status.settings.timeout,
                push_grace: status.settings.push_grace,
                deadline: started + millis(status.settings.timeout),
            }),
            last_transition: snapshot.last_transition.clone(),
            replicas,
            replicas_unknown,
            writes_failing: self.write_health().failing(),
        }
    }
}

/// A drain's progress in words: what is in flight, and which live replicas are not read-only
/// yet.
fn drain_progress(
    writes_in_flight: u64,
    uploads_open: Option<u64>,
    replicas_read_only: &str,
    replicas: &[ReplicaReport],
) -> String {
    let mut progress = count(writes_in_flight, "write", "writes") + " in flight";
    let mut pushes: Vec<&str> = replicas
        .iter()
        .filter(|r| r.live)
        .flat_map(|r| r.state.pushes_running.iter().map(|p| p.repository.as_str()))
        .collect();
    pushes.sort_unstable();
    pushes.dedup();
    if !pushes.is_empty() {
        progress += &format!(" (pushes to {})", pushes.join(", "));
    }
    if let Some(uploads) = uploads_open {
        progress += &format!(", {} open", count(uploads, "upload", "uploads"));
    }
    progress += &format!("; read-only on {replicas_read_only} replicas");
    let draining: Vec<&str> = replicas
        .iter()
        .filter(|r| r.live && r.state.mode != Mode::ReadOnly)
        .map(|r| r.state.name.as_str())
        .collect();
    if replicas.len() > 1 && !draining.is_empty() {
        progress += &format!(" (still draining: {})", draining.join(", "));
    }
    progress
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_gate::{ReplicaState, RunningPush};

    fn replica(name: &str, mode: Mode, pushes: &[&str], live: bool) -> ReplicaReport {
        ReplicaReport {
            state: ReplicaState {
                name: name.to_owned(),
                address: "127.0.0.1:5000".to_owned(),
                mode,
                since: 0,
                drain_cutoff: None,
                writes_in_flight: pushes.len() as u64,
                pushes_running: pushes
                    .iter()
                    .map(|r| RunningPush {
                        repository: (*r).to_owned(),
                        client: "10.0.0.1".to_owned(),
                    })
                    .collect(),
                holds_applied: 1,
                started_at: 0,
                last_seen: 0,
            },
            live,
            this: false,
        }
    }

    #[test]
    fn the_progress_names_what_is_in_flight_and_who_still_drains() {
        let replicas = [
            replica("web-1", Mode::ReadOnly, &[], true),
            replica("web-2", Mode::Draining, &["team/app", "team/app"], true),
            replica("web-3", Mode::Draining, &["base"], true),
            replica("gone", Mode::Draining, &["lost"], false),
        ];
        assert_eq!(
            drain_progress(3, Some(1), "1/3", &replicas),
            "3 writes in flight (pushes to base, team/app), 1 upload open; \
             read-only on 1/3 replicas (still draining: web-2, web-3)"
        );
        let one = [replica("web-1", Mode::Draining, &[], true)];
        assert_eq!(
            drain_progress(1, None, "0/1", &one),
            "1 write in flight; read-only on 0/1 replicas"
        );
    }
}
