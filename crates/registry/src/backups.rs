//! Consistent online backups: the registry's side of one (steps 1–3 below, and the lease).
//!
//! The registry is read-only only for as long as its metadata snapshot takes: blobs are
//! content-addressed and immutable, so once the metadata is frozen and garbage collection is told
//! to keep what the snapshot references, the blobs can be copied while the registry is writable
//! again. A backup:
//!
//! 1. takes a hold `backup-<id>` with a TTL (a backup that dies never leaves the registry
//!    read-only for longer) and waits until read-only is in effect — the drain lets pushes in
//!    progress finish first;
//! 2. snapshots the metadata consistently: SQLite with `VACUUM INTO`; PostgreSQL by beginning
//!    one `REPEATABLE READ` read of its rows, which are written into a SQLite file of the same
//!    schema (every backup's format) once the hold is released;
//! 3. takes a [lease](wharf_metadata::BackupLease) so garbage collection keeps every blob the
//!    snapshot can reference, and releases the hold ([`Registry::take_backup_snapshot`]);
//! 4. copies the snapshot and the blobs it references to a destination (`wharf-backup`), verifying
//!    each, and ends the lease ([`Registry::end_backup`]).
//!
//! Steps 1–3 run where the registry runs (the server's admin API, or the command line on a
//! stopped registry's data); step 4 reads through a `BackupSource` (`wharf-backup`): the registry's own
//! storage, or the admin API from another machine.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::{Registry, RegistryError};
use wharf_core::digest::{Algorithm, ContentHasher, Digest};
use wharf_core::time::{Millis, now_millis};
use wharf_gate::holds::HoldNameError;
use wharf_gate::{HoldError, HoldName, HoldRequest, HoldSource};
use wharf_metadata::{BackupLease, MetadataError, Snapshot};
use wharf_metadata_sqlite::{SnapshotCounts, SnapshotFile, SqliteSnapshot};

/// A backup's identifier: its start time and a random suffix, such as `20261122-020000-3fa1c2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    /// A new identifier.
    pub fn generate() -> Self {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let stamp: String = now.chars().filter(char::is_ascii_digit).collect();
        let (date, time) = stamp.split_at(8.min(stamp.len()));
        let random = uuid::Uuid::new_v4().simple().to_string();
        BackupId(format!("{date}-{time}-{}", &random[..6]))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hold a backup takes while it snapshots.
    pub fn hold_name(&self) -> HoldName {
        // Always valid: digits, dashes and hex.
        format!("backup-{}", self.0)
            .parse()
            .unwrap_or_else(|_: HoldNameError| unreachable!("backup ids make valid hold names"))
    }
}

impl FromStr for BackupId {
    type Err = BackupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-');
        if valid {
            Ok(BackupId(s.to_owned()))
        } else {
            Err(BackupError::UnknownBackup(s.chars().take(50).collect()))
        }
    }
}

impl TryFrom<String> for BackupId {
    type Error = BackupError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a backup snapshot is taken.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// The hold's TTL: if the backup dies, the registry is read-write again after this at worst.
    pub hold_ttl: Duration,
    /// The lease's TTL: how long garbage collection keeps the snapshot's blobs after the last
    /// renewal (a copy renews it as it goes; a dead one lets it lapse).
    pub lease_ttl: Duration,
    /// How long to wait for read-only to be in effect (the drain) before giving up.
    pub wait: Duration,
    /// Who takes the backup, for the audit trail.
    pub actor: String,
    /// Where it was asked from.
    pub source: HoldSource,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            hold_ttl: Duration::from_secs(15 * 60),
            lease_ttl: Duration::from_secs(10 * 60),
            wait: Duration::from_secs(5 * 60),
            actor: "backup".to_owned(),
            source: HoldSource::Api,
        }
    }
}

/// A taken snapshot: what a backup copies, and how long the registry was read-only for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupSnapshot {
    /// The backup's identifier.
    pub id: BackupId,
    /// When the hold was taken.
    pub hold_taken_at: Millis,
    /// When read-only was in effect.
    pub read_only_from: Millis,
    /// When the hold was released (read-write again, unless other holds remain).
    pub read_only_until: Millis,
    /// When the snapshot was taken.
    pub snapshot_at: Millis,
    /// When the lease ends by itself (unless renewed).
    pub lease_expires_at: Millis,
    /// How long the lease lasts from a renewal; a copy renews it every third of that.
    pub lease_ttl_ms: u64,
    /// The snapshot file's size.
    pub metadata_size: u64,
    /// The snapshot file's digest.
    pub metadata_digest: Digest,
    /// What the snapshot holds.
    pub counts: SnapshotCounts,
}

impl BackupSnapshot {
    /// How long the registry was read-only for this backup, in milliseconds.
    pub fn read_only_ms(&self) -> u64 {
        u64::try_from(self.read_only_until - self.read_only_from).unwrap_or(0)
    }

    /// How long the drain before it took, in milliseconds.
    pub fn drain_ms(&self) -> u64 {
        u64::try_from(self.read_only_from - self.hold_taken_at).unwrap_or(0)
    }
}

/// A backup that went wrong.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Read-only did not take effect in time: the drain still runs.
    #[error(
        "read-only was not in effect after {0:?}: writes under way did not finish; the hold was released, try again"
    )]
    DrainTimeout(Duration),
    /// No such backup (or its lease expired).
    #[error("no backup {0} is in progress (or its lease expired)")]
    UnknownBackup(String),
    /// The hold could not be taken or released.
    #[error(transparent)]
    Hold(#[from] HoldError),
    /// The destination holds something else, or is incomplete.
    #[error("{0}")]
    Destination(String),
    /// A blob's content does not match its digest or size.
    #[error("{0}")]
    Corrupt(String),
    /// The restore target is not empty.
    #[error("{0}")]
    NotEmpty(String),
    /// The metadata database failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A file could not be read or written.
    #[error("{what}: {error}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        error: std::io::Error,
    },
    /// The source (the admin API) failed.
    #[error("{0}")]
    Source(String),
    /// The options do not work together.
    #[error("{0}")]
    Options(String),
}

impl BackupError {
    /// An I/O error, said with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let what = what.into();
        move |error| BackupError::Io { what, error }
    }
}

fn duration_millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

impl Registry {
    /// Steps 1–3 of a backup: hold, lease, wait for read-only, snapshot, release. The hold is
    /// released, and on failure the lease ended, whatever happens. A standalone registry (no
    /// server) must have its gate running ([`wharf_gate::WriteGate::run`]) for the drain to be
    /// followed.
    pub async fn take_backup_snapshot(
        &self,
        options: &SnapshotOptions,
    ) -> Result<BackupSnapshot, BackupError> {
        if options.hold_ttl <= options.wait {
            return Err(BackupError::Options(
                "the hold's TTL must be longer than the wait for read-only".to_owned(),
            ));
        }
        let id = BackupId::generate();
        let hold = id.hold_name();
        let gate = self.gate();
        let hold_taken_at = now_millis();
        gate.set_hold(HoldRequest {
            name: hold.clone(),
            reason: format!("consistent backup {id}: snapshotting the metadata"),
            ttl: Some(options.hold_ttl),
            actor: options.actor.clone(),
            source: options.source,
        })
        .await?;
        wharf_core::failpoint::hit("backup-hold-taken");
        let taken = self.snapshot_while_held(&id, options, hold_taken_at).await;
        let read_only_until = now_millis();
        let released = gate
            .release_hold(&hold, &options.actor, options.source)
            .await;
        let described = match (taken, released) {
            (Ok((times, snapshot)), Ok(_)) => match self.write_snapshot(&id, snapshot).await {
                Ok(()) => {
                    self.describe_snapshot(&id, hold_taken_at, read_only_until, times)
                        .await
                }
                Err(error) => Err(error),
            },
            (Err(error), released) => {
                if let Err(release) = released {
                    tracing::error!(backup = %id, error = %release, "cannot release the backup's hold; its TTL will");
                }
                Err(error)
            }
            (Ok(_), Err(release)) => Err(release.into()),
        };
        if described.is_err() {
            self.end_backup(&id).await.ok();
        }
        let snapshot = described?;
        tracing::info!(
            backup = %snapshot.id, read_only_ms = snapshot.read_only_ms(), drain_ms = snapshot.drain_ms(),
            blobs = snapshot.counts.blobs, bytes = snapshot.counts.bytes,
            "backup snapshot taken; the registry is writable again"
        );
        Ok(snapshot)
    }

    /// Takes the lease, waits for read-only, snapshots, narrows the lease to the snapshot;
    /// returns when read-only was in effect and when the snapshot was taken, and the snapshot.
    async fn snapshot_while_held(
        &self,
        id: &BackupId,
        options: &SnapshotOptions,
        hold_taken_at: Millis,
    ) -> Result<((Millis, Millis), Snapshot), BackupError> {
        // The lease comes first and keeps every blob until the snapshot is taken: should the
        // hold end early (its TTL, an administrator), nothing the snapshot lists is collected.
        let mut lease = BackupLease {
            id: id.to_string(),
            snapshot_at: Millis::MAX,
            created_at: now_millis(),
            expires_at: now_millis().saturating_add(duration_millis(options.lease_ttl)),
        };
        self.metadata
            .put_backup_lease(&self.gate().control_write(), &lease)
            .await?;
        let gate = self.gate();
        if !gate.wait_for_read_only_everywhere(options.wait).await {
            return Err(BackupError::DrainTimeout(options.wait));
        }
        // Read-only may have been in effect before (another hold): this backup's window starts
        // no earlier than its own hold.
        let read_only_from = gate.snapshot().since.max(hold_taken_at);
        let path = self.snapshot_path(id);
        let folder = path.parent().unwrap_or(&self.backups_dir);
        std::fs::create_dir_all(folder)
            .map_err(BackupError::io(format!("creating {}", folder.display())))?;
        let snapshot = self.metadata.snapshot(&path).await?;
        // The copy starts now: the lease's TTL counts from here, not from before the drain.
        lease.snapshot_at = now_millis();
        lease.expires_at = lease
            .snapshot_at
            .saturating_add(duration_millis(options.lease_ttl));
        self.metadata
            .put_backup_lease(&self.gate().control_write(), &lease)
            .await?;
        wharf_core::failpoint::hit("backup-lease-taken");
        Ok(((read_only_from, lease.snapshot_at), snapshot))
    }

    /// Writes a snapshot that was only begun (PostgreSQL's: a consistent read of its rows) into
    /// the backup's SQLite file. It runs with the registry writable again: what it copies is
    /// what the database held when the snapshot was begun, under the hold.
    async fn write_snapshot(&self, id: &BackupId, snapshot: Snapshot) -> Result<(), BackupError> {
        let Snapshot::Begun(rows) = snapshot else {
            return Ok(());
        };
        let mut file = SnapshotFile::create(&self.snapshot_path(id)).await?;
        rows.copy_into(&mut file).await?;
        file.finish().await?;
        wharf_core::failpoint::hit("backup-snapshot-written");
        Ok(())
    }

    /// What a taken snapshot holds.
    async fn describe_snapshot(
        &self,
        id: &BackupId,
        hold_taken_at: Millis,
        read_only_until: Millis,
        (read_only_from, snapshot_at): (Millis, Millis),
    ) -> Result<BackupSnapshot, BackupError> {
        let path = self.snapshot_path(id);
        let (metadata_size, metadata_digest) = digest_file(&path).await?;
        let snapshot = SqliteSnapshot::open(&path).await?;
        let counts = snapshot.counts().await;
        snapshot.close().await;
        let lease = self
            .metadata
            .backup_leases()
            .await?
            .into_iter()
            .find(|lease| lease.id == id.as_str())
            .ok_or_else(|| BackupError::UnknownBackup(id.to_string()))?;
        Ok(BackupSnapshot {
            id: id.clone(),
            hold_taken_at,
            read_only_from,
            read_only_until,
            snapshot_at,
            lease_expires_at: lease.expires_at,
            lease_ttl_ms: u64::try_from(lease.expires_at - lease.snapshot_at).unwrap_or(0),
            metadata_size,
            metadata_digest,
            counts: counts?,
        })
    }

    /// Extends a backup's lease by `ttl` from now (a long copy keeps its blobs).
    pub async fn renew_backup(&self, id: &BackupId, ttl: Duration) -> Result<(), BackupError> {
        let now = now_millis();
        let renewed = self
            .metadata
            .renew_backup_lease(
                &self.gate().control_write(),
                id.as_str(),
                now,
                now.saturating_add(duration_millis(ttl)),
            )
            .await?;
        if renewed {
            Ok(())
        } else {
            Err(BackupError::UnknownBackup(id.to_string()))
        }
    }

    /// Step 4's end: releases the lease and deletes the snapshot file. Returns whether the
    /// backup was in progress.
    pub async fn end_backup(&self, id: &BackupId) -> Result<bool, BackupError> {
        let ended = self
            .metadata
            .delete_backup_lease(&self.gate().control_write(), id.as_str())
            .await?;
        remove_snapshot(&self.snapshot_path(id));
        Ok(ended)
    }

    /// The snapshot of a backup in progress (its lease is active).
    pub async fn backup_in_progress(&self, id: &BackupId) -> Result<PathBuf, BackupError> {
        let now = now_millis();
        let active = self
            .metadata
            .backup_leases()
            .await?
            .into_iter()
            .any(|lease| lease.id == id.as_str() && lease.expires_at > now);
        let path = self.snapshot_path(id);
        if active && path.exists() {
            Ok(path)
        } else {
            Err(BackupError::UnknownBackup(id.to_string()))
        }
    }

    /// A garbage collection step: forgets expired leases and their snapshots, and snapshots no
    /// lease owns (a backup that died) once older than `grace`. Returns how many leases expired.
    pub(crate) async fn expire_backups(
        &self,
        now: Millis,
        grace: Duration,
    ) -> Result<u64, BackupError> {
        let leases = self.metadata.backup_leases().await?;
        let mut expired = 0;
        for lease in leases.iter().filter(|lease| lease.expires_at <= now) {
            if self
                .metadata
                .delete_backup_lease(&self.gate().control_write(), &lease.id)
                .await?
            {
                tracing::warn!(backup = %lease.id, "a backup lease expired; its snapshot is deleted");
                expired += 1;
            }
            if let Ok(id) = lease.id.parse::<BackupId>() {
                remove_snapshot(&self.snapshot_path(&id));
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.backups_dir) else {
            return Ok(expired);
        };
        let cutoff = now - duration_millis(grace);
        for entry in entries.flatten() {
            let Ok(id) = entry.file_name().to_string_lossy().parse::<BackupId>() else {
                continue;
            };
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, duration_millis);
            if modified >= cutoff {
                continue;
            }
            // Asked again now: a backup takes its lease before it creates its folder, so a
            // folder seen here whose lease exists now is a live backup's.
            let owned = self
                .metadata
                .backup_leases()
                .await?
                .iter()
                .any(|lease| lease.id == id.as_str() && lease.expires_at > now);
            if !owned {
                remove_snapshot(&self.snapshot_path(&id));
            }
        }
        Ok(expired)
    }

    fn snapshot_path(&self, id: &BackupId) -> PathBuf {
        self.backups_dir.join(id.as_str()).join("metadata.db")
    }
}

fn remove_snapshot(path: &Path) {
    if let Some(folder) = path.parent()
        && let Err(error) = std::fs::remove_dir_all(folder)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(folder = %folder.display(), %error, "cannot delete a backup snapshot");
    }
}

/// The size and SHA-256 digest of a file.
pub async fn digest_file(path: &Path) -> Result<(u64, Digest), BackupError> {
    let (size, digest) = hash_file(path, Algorithm::Sha256).await?;
    Ok((size, digest))
}

/// The size and digest (under `algorithm`) of a file.
pub async fn hash_file(path: &Path, algorithm: Algorithm) -> Result<(u64, Digest), BackupError> {
    let path = path.to_owned();
    let what = format!("reading {}", path.display());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = ContentHasher::new(algorithm);
        let mut buffer = vec![0; 1024 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buffer[..n]);
        }
        Ok::<_, std::io::Error>((size, hasher.finish()))
    })
    .await
    .map_err(|e| BackupError::io(what.clone())(std::io::Error::other(e)))?
    .map_err(BackupError::io(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_make_hold_names_and_refuse_paths() {
        let id = BackupId::generate();
        assert!(id.hold_name().as_str().starts_with("backup-"));
        assert_eq!(id.as_str().parse::<BackupId>().unwrap(), id);
        for bad in ["", "../x", "a/b", "A", "x".repeat(41).as_str()] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad:?}");
        }
    }
}
