//! Garbage collection, safe while pushes are in progress.
//!
//! A push uploads its blobs before the manifest that refers to them, so a blob nothing refers to
//! yet may be about to be used: blobs and repository links younger than the grace period are
//! kept. Deleting a blob is two steps, each its own transaction: the blob is first marked as being
//! deleted (from then on invisible, so no new manifest can refer to it), then its object is
//! deleted and the record forgotten. A new upload of the same content meanwhile writes a new
//! placement (see [`wharf_storage`]), so it is never lost to the deletion of the old one.
//!
//! Each step asks the write gate for its own permit, so a registry that stops admitting writes
//! stops the collection at the next step.

use std::time::Duration;

use futures_util::StreamExt;

use super::{Registry, RegistryError};
use wharf_core::time::{Millis, now_millis};
use wharf_gate::{WriteIntent, WritePermit};
use wharf_metadata::BlobRecord;

/// The name of garbage collection's lease (with upload expiry, which it runs).
const GC_JOB: &str = "gc";

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// How many records one step handles at a time.
const BATCH: u32 = 500;

/// When garbage becomes collectable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSettings {
    /// How long an unreferenced blob, repository link or leftover object is kept.
    pub grace: Duration,
    /// How long an upload session may receive nothing before it expires.
    pub upload_expiry: Duration,
}

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    /// Upload sessions expired for being idle, with their staged bytes.
    pub expired_uploads: u64,
    /// Records of completed upload sessions forgotten.
    pub forgotten_sessions: u64,
    /// Repository links to blobs no manifest there refers to, removed.
    pub pruned_links: u64,
    /// Blobs deleted.
    pub deleted_blobs: u64,
    /// Bytes those blobs held.
    pub deleted_bytes: u64,
    /// Stored objects no record used (left by a crash), deleted.
    pub orphan_objects: u64,
    /// Staged upload files no session used (left by a crash), deleted.
    pub orphan_staging: u64,
    /// Multipart uploads left open in the bucket by a killed process (S3), aborted.
    #[serde(default)]
    pub aborted_multipart_uploads: u64,
    /// Backup leases that expired (their backups died), forgotten with their snapshots.
    #[serde(default)]
    pub expired_backups: u64,
}

fn before(now: Millis, age: Duration) -> Millis {
    now.saturating_sub(Millis::try_from(age.as_millis()).unwrap_or(Millis::MAX))
}

/// The last garbage collection, whichever replica or command ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRun {
    /// The replica (or command) that ran it.
    pub replica: String,
    /// When it finished.
    pub finished_at: Millis,
    /// What it did, or why it failed.
    pub outcome: Result<GcReport, String>,
}

/// A run's outcome as the metadata database keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredOutcome {
    Report(GcReport),
    Error(String),
}

impl Registry {
    /// Collects garbage as of `now` (milliseconds since the Unix epoch; tests pass a later time
    /// to age things without waiting), and records the run's outcome for [`Registry::last_gc`].
    /// A collection the write gate refused (read-only) did nothing, and is not recorded.
    pub async fn collect_garbage(
        &self,
        settings: GcSettings,
        now: Millis,
    ) -> Result<GcReport, RegistryError> {
        let outcome = self.collect_garbage_once(settings, now).await;
        let stored = match &outcome {
            Ok(report) => StoredOutcome::Report(report.clone()),
            Err(RegistryError::Refused(_)) => return outcome,
            Err(error) => StoredOutcome::Error(error.to_string()),
        };
        let run = wharf_metadata::JobRun {
            name: GC_JOB.to_owned(),
            replica: self.gate.replica().to_owned(),
            finished_at: now_millis(),
            outcome: serde_json::to_string(&stored).unwrap_or_default(),
        };
        if let Err(error) = self
            .metadata
            .record_job_run(&self.gate.control_write(), &run)
            .await
        {
            tracing::warn!(%error, "cannot record garbage collection's run");
        }
        outcome
    }

    /// The last garbage collection recorded, if any.
    pub async fn last_gc(&self) -> Result<Option<GcRun>, RegistryError> {
        let Some(run) = self.metadata.last_job_run(GC_JOB).await? else {
            return Ok(None);
        };
        let outcome = match serde_json::from_str(&run.outcome) {
            Ok(StoredOutcome::Report(report)) => Ok(report),
            Ok(StoredOutcome::Error(error)) => Err(error),
            Err(error) => Err(format!("its record cannot be read ({error})")),
        };
        Ok(Some(GcRun {
            replica: run.replica,
            finished_at: run.finished_at,
            outcome,
        }))
    }

    async fn collect_garbage_once(
        &self,
        settings: GcSettings,
        now: Millis,
    ) -> Result<GcReport, RegistryError> {
        let mut report = GcReport::default();
        let grace_cutoff = before(now, settings.grace);

        self.finish_blob_deletions(&mut report).await?;
        self.expire_uploads(before(now, settings.upload_expiry), &mut report)
            .await?;

        let permit = self.housekeeping().await?;
        report.forgotten_sessions = self
            .metadata
            .forget_completed_uploads(&permit, grace_cutoff)
            .await?;
        report.pruned_links = self
            .metadata
            .prune_blob_links(&permit, grace_cutoff)
            .await?;
        drop(permit);

        loop {
            let permit = self.housekeeping().await?;
            let claimed = self
                .metadata
                .claim_unreferenced_blobs(&permit, grace_cutoff, now, BATCH)
                .await?;
            if claimed.is_empty() {
                break;
            }
            self.delete_claimed(&permit, claimed, &mut report).await?;
        }

        self.delete_orphans(grace_cutoff, &mut report).await?;
        let permit = self.housekeeping().await?;
        report.expired_backups = self
            .expire_backups(now, settings.grace)
            .await
            .map_err(RegistryError::internal)?;
        drop(permit);
        if report != GcReport::default() {
            tracing::info!(?report, "garbage collected");
        }
        Ok(report)
    }

    async fn housekeeping(&self) -> Result<WritePermit, RegistryError> {
        self.admit(WriteIntent::Housekeeping { job: "gc" }).await
    }

    /// Completes deletions that an earlier collection started but did not finish (it crashed).
    async fn finish_blob_deletions(&self, report: &mut GcReport) -> Result<(), RegistryError> {
        loop {
            let permit = self.housekeeping().await?;
            let pending = self.metadata.blobs_being_deleted(BATCH).await?;
            if pending.is_empty() {
                return Ok(());
            }
            self.delete_claimed(&permit, pending, report).await?;
        }
    }

    /// Deletes the objects of blobs marked as being deleted, then forgets their records.
    async fn delete_claimed(
        &self,
        permit: &WritePermit,
        claimed: Vec<BlobRecord>,
        report: &mut GcReport,
    ) -> Result<(), RegistryError> {
        for blob in claimed {
            self.blobs.delete(permit, &blob.storage_key).await?;
            self.metadata
                .forget_deleted_blob(permit, &blob.digest, &blob.storage_key)
                .await?;
            report.deleted_blobs += 1;
            report.deleted_bytes += blob.size;
        }
        Ok(())
    }

    async fn expire_uploads(
        &self,
        idle_since: Millis,
        report: &mut GcReport,
    ) -> Result<(), RegistryError> {
        loop {
            let permit = self.housekeeping().await?;
            let idle = self.metadata.idle_uploads(idle_since, BATCH).await?;
            let full_batch = idle.len() == BATCH as usize;
            let mut expired = 0;
            for session in idle {
                // A request is writing to it right now: it is not idle after all.
                let Some(_lock) = self.blobs.lock_upload(&session.id) else {
                    continue;
                };
                self.sessions.forget(&session.id);
                if self.metadata.delete_upload(&permit, &session.id).await? {
                    self.blobs
                        .discard_upload(&permit, &session.id, &session.storage_state)
                        .await?;
                    expired += 1;
                }
            }
            report.expired_uploads += expired;
            if !full_batch || expired == 0 {
                return Ok(());
            }
        }
    }

    async fn delete_orphans(
        &self,
        cutoff: Millis,
        report: &mut GcReport,
    ) -> Result<(), RegistryError> {
        // Listing only reads; each deletion is its own write, so a drain never waits for a
        // sweep through a large store.
        let mut objects = self.blobs.list_objects();
        while let Some(object) = objects.next().await {
            let object = object?;
            if object.modified_millis < cutoff
                && !self.metadata.storage_key_in_use(&object.key).await?
            {
                tracing::debug!(
                    key = object.key.as_str(),
                    "deleting an object no blob record uses"
                );
                let permit = self.housekeeping().await?;
                self.blobs.delete(&permit, &object.key).await?;
                report.orphan_objects += 1;
            }
        }
        for (id, modified) in self.blobs.staged_uploads().await? {
            if modified >= cutoff {
                continue;
            }
            let Some(_lock) = self.blobs.lock_upload(&id) else {
                continue;
            };
            if self.metadata.upload(&id).await?.is_none() {
                let permit = self.housekeeping().await?;
                // No session, so no multipart upload known: those are swept below.
                self.blobs.discard_upload(&permit, &id, "").await?;
                report.orphan_staging += 1;
            }
        }
        // Multipart uploads a killed process left open (S3), matched with their session by
        // the upload id their key ends in: one whose session is gone is aborted.
        let open_uploads = match self.blobs.open_multipart_uploads().await {
            Ok(open) => open,
            // Some S3 servers (s3s-fs) cannot list them; the rest of the collection goes on.
            Err(error) => {
                tracing::warn!(%error, "multipart uploads left open by killed processes cannot be \
                    listed here; a bucket lifecycle rule (AbortIncompleteMultipartUpload) must remove them");
                Vec::new()
            }
        };
        for open in open_uploads {
            if open.initiated_millis >= cutoff {
                continue;
            }
            let session = match open.key.upload_id() {
                Some(id) => self.metadata.upload(&id).await?,
                None => None,
            };
            if session.is_none() {
                let permit = self.housekeeping().await?;
                self.blobs.abort_multipart_upload(&permit, &open).await?;
                report.aborted_multipart_uploads += 1;
            }
        }
        Ok(())
    }

    /// Runs [`Registry::collect_garbage`] every `interval` until `stop` resolves, on one
    /// replica at a time: the one holding the job's lease in the database, which it renews
    /// every heartbeat and which lapses `lost_after` after its holder died, when another
    /// replica takes it over. (The lease spares the work twice over; what makes two
    /// collections at once safe is the database's locks.) A collection the write gate stops
    /// (read-only) is simply retried at the next interval.
    pub async fn collect_garbage_periodically(
        &self,
        settings: GcSettings,
        interval: Duration,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let holder = self.gate.replica().to_owned();
        let mut leading = false;
        let mut next_pass = None;
        loop {
            let cluster = self.gate.cluster_settings();
            let now = now_millis();
            let claimed = self
                .metadata
                .claim_job_lease(
                    &self.gate.control_write(),
                    GC_JOB,
                    &holder,
                    now + millis(cluster.lost_after),
                    now,
                )
                .await;
            match (claimed, leading) {
                (Ok(true), false) => {
                    leading = true;
                    // The first pass one interval after taking the job, as after a start.
                    next_pass = Some(now + millis(interval));
                    tracing::info!("this replica runs garbage collection and upload expiry");
                }
                (Ok(false), true) => {
                    leading = false;
                    tracing::info!("garbage collection runs on another replica now");
                }
                (Err(error), _) => {
                    tracing::warn!(%error, "cannot claim garbage collection's lease");
                }
                _ => {}
            }
            if leading && next_pass.is_some_and(|at| now >= at) {
                next_pass = Some(now + millis(interval));
                let pass = self.collect_garbage(settings, now);
                let renewing = self.keep_job_lease(&holder, cluster);
                let outcome = tokio::select! {
                    () = &mut stop => break,
                    outcome = pass => outcome,
                    never = renewing => match never {},
                };
                match outcome {
                    Ok(_) => {}
                    Err(RegistryError::Refused(refused)) => {
                        tracing::debug!(%refused, "garbage collection paused by the write gate");
                    }
                    Err(error) => tracing::error!(%error, "garbage collection failed"),
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(cluster.heartbeat) => {}
            }
        }
        if leading
            && let Err(error) = self
                .metadata
                .release_job_lease(&self.gate.control_write(), GC_JOB, &holder)
                .await
        {
            tracing::warn!(%error, "cannot give up garbage collection's lease; it lapses by itself");
        }
    }

    /// Renews the job's lease every heartbeat, for as long as it is polled (while a pass runs).
    async fn keep_job_lease(
        &self,
        holder: &str,
        cluster: wharf_gate::ClusterSettings,
    ) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(cluster.heartbeat).await;
            let now = now_millis();
            if let Err(error) = self
                .metadata
                .claim_job_lease(
                    &self.gate.control_write(),
                    GC_JOB,
                    holder,
                    now + millis(cluster.lost_after),
                    now,
                )
                .await
            {
                tracing::warn!(%error, "cannot renew garbage collection's lease");
            }
        }
    }
}
