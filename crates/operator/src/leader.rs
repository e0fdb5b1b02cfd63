//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles (two would both take and release holds, and fight over status).
//!
//! The leader renews the Lease every third of its duration; another replica takes it over only
//! once a whole duration has passed without a renewal. Every write carries the Lease's
//! resourceVersion, so of two replicas racing for an expired Lease one wins and the other gets
//! a conflict. A leader that cannot renew in time stops leading (the process exits and
//! restarts as a follower), as client-go's leader election does: it may no longer be the leader.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

use crate::error::Error;

/// One replica's side of the election.
pub struct LeaderElection {
    leases: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// What the replica found the Lease to be.
enum Found {
    /// It is this replica's to take (absent, released, expired, or its own).
    Free(Option<Box<Lease>>),
    /// Another replica holds it.
    Held(String),
}

impl LeaderElection {
    /// The election for the Lease `name` of `leases`, as `identity` (unique per replica: the
    /// pod's name), with Leases lasting `duration`.
    pub fn new(leases: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElection {
            leases,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) -> Result<(), Error> {
        let mut waiting_for = None;
        loop {
            match self.find().await? {
                Found::Free(lease) => {
                    if self.take(lease).await? {
                        tracing::info!(lease = %self.name, identity = %self.identity, "leading");
                        return Ok(());
                    }
                }
                Found::Held(holder) => {
                    if waiting_for.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.name, %holder, "another replica leads; waiting");
                        waiting_for = Some(holder);
                    }
                }
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the Lease while this replica leads; answers when it no longer does (another took
    /// it, or it could not be renewed within its duration).
    pub async fn keep(&self) -> Error {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.renew().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    return Error::Leadership(format!(
                        "another replica took the Lease {}",
                        self.name
                    ));
                }
                Err(error) => {
                    // Stop before the Lease can have expired in anyone else's eyes.
                    if renewed.elapsed() >= self.duration * 2 / 3 {
                        return Error::Leadership(format!(
                            "could not renew the Lease {} in time: {error}",
                            self.name
                        ));
                    }
                    tracing::warn!(%error, "cannot renew the Lease; retrying");
                }
            }
        }
    }

    /// Gives the Lease up (at shutdown), so another replica leads at once rather than after a
    /// duration.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        if let Err(error) = self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, "cannot release the Lease; another replica leads once it expires");
        }
    }

    async fn find(&self) -> Result<Found, Error> {
        let Some(lease) = self.leases.get_opt(&self.name).await? else {
            return Ok(Found::Free(None));
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let Some(holder) = holder else {
            return Ok(Found::Free(Some(Box::new(lease))));
        };
        if holder == self.identity {
            return Ok(Found::Free(Some(Box::new(lease))));
        }
        let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
        let expired = spec
            .renew_time
            .is_none_or(|renewed| renewed.0 + duration < Timestamp::now());
        Ok(if expired {
            Found::Free(Some(Box::new(lease)))
        } else {
            Found::Held(holder)
        })
    }

    /// Writes this replica into the Lease; `false` if another replica won the race.
    async fn take(&self, existing: Option<Box<Lease>>) -> Result<bool, Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let result = match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.leases.create(&PostParams::default(), &lease).await
            }
            Some(lease) => {
                let mut lease = *lease;
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if spec.holder_identity.as_deref() != Some(&self.identity) {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    spec.acquire_time = Some(now.clone());
                }
                spec.holder_identity = Some(self.identity.clone());
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(now);
                // The resourceVersion read is sent back: a replica that changed it first wins.
                self.leases
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// `true` if renewed, `false` if another replica holds the Lease now.
    async fn renew(&self) -> Result<bool, Error> {
        match self.find().await? {
            Found::Held(_) => Ok(false),
            Found::Free(Some(lease))
                if lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    == Some(&self.identity) =>
            {
                self.take(Some(lease)).await
            }
            // Released or gone under us: someone else may be taking it; stop leading.
            Found::Free(_) => Ok(false),
        }
    }
}
