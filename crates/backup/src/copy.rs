//! Step 4 of a backup: copying the snapshot and its blobs to the destination.

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::manifest::{BackupManifest, FORMAT_VERSION, MetadataFile, ReadOnlyWindow};
use super::{BackupSource, Destination};
use wharf_core::digest::{ContentHasher, Digest};
use wharf_core::time::format_time;
use wharf_core::time::now_millis;
use wharf_registry::backups::{BackupError, BackupSnapshot};

/// How many blobs are listed at a time.
const PAGE: u32 = 500;
/// How many blobs are copied at once (a remote source is faster with several streams).
const CONCURRENT_BLOBS: usize = 4;

/// What copying a backup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyReport {
    /// Blobs the backup holds.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs copied this time.
    pub copied: u64,
    /// Bytes copied this time.
    pub copied_bytes: u64,
    /// Blobs already in the destination (from an earlier backup), not copied again.
    pub reused: u64,
}

/// Follows a copy's progress (a progress bar, log lines).
pub trait Progress: Send + Sync {
    /// The copy of `blobs` blobs of `bytes` bytes in all begins.
    fn start(&self, blobs: u64, bytes: u64);
    /// `bytes` more bytes were copied (or checked).
    fn advance(&self, bytes: u64);
    /// A blob of `bytes` bytes was already there: done without copying.
    fn skipped(&self, bytes: u64);
    /// One more blob is done.
    fn blob_done(&self, copied: bool);
}

/// Copies the snapshot and every blob it references from `source` to `destination`, verifying
/// each, and completes the destination. `label` says where the backup comes from.
pub async fn copy_backup(
    snapshot: &BackupSnapshot,
    source: &dyn BackupSource,
    destination: Destination,
    progress: &dyn Progress,
    label: &str,
) -> Result<BackupManifest, BackupError> {
    // The lease is renewed as the copy goes, however long it takes; a copy that dies lets it
    // lapse within its TTL.
    let ttl = std::time::Duration::from_millis(snapshot.lease_ttl_ms.max(3));
    let renewing = async {
        loop {
            tokio::time::sleep(ttl / 3).await;
            source.renew(ttl).await?;
        }
    };
    tokio::select! {
        copied = copy(snapshot, source, destination, progress, label) => copied,
        failed = renewing => failed,
    }
}

async fn copy(
    snapshot: &BackupSnapshot,
    source: &dyn BackupSource,
    destination: Destination,
    progress: &dyn Progress,
    label: &str,
) -> Result<BackupManifest, BackupError> {
    let metadata = source.metadata().await?;
    destination
        .write_metadata(&snapshot.metadata_digest, snapshot.metadata_size, metadata)
        .await?;
    wharf_core::failpoint::hit("backup-metadata-copied");
    progress.start(snapshot.counts.blobs, snapshot.counts.bytes);

    let mut report = CopyReport::default();
    let mut list = ContentHasher::new(wharf_core::digest::Algorithm::Sha256);
    let mut last: Option<Digest> = None;
    loop {
        let page = source.blobs(last.as_ref(), PAGE).await?;
        let Some((final_digest, _)) = page.last() else {
            break;
        };
        last = Some(final_digest.clone());
        for (digest, size) in &page {
            list.update(format!("{digest} {size}\n").as_bytes());
            report.blobs += 1;
            report.bytes += size;
        }
        let destination = &destination;
        let copied: Vec<(bool, u64)> = futures_util::stream::iter(page)
            .map(|(digest, size)| async move {
                if destination.has_blob(&digest, size).await? {
                    progress.skipped(size);
                    progress.blob_done(false);
                    return Ok::<_, BackupError>((false, size));
                }
                let content = source
                    .blob(&digest)
                    .await?
                    .inspect_ok(|chunk| progress.advance(chunk.len() as u64));
                destination.write_blob(&digest, size, content).await?;
                wharf_core::failpoint::hit("backup-blob-copied");
                progress.blob_done(true);
                Ok((true, size))
            })
            .buffer_unordered(CONCURRENT_BLOBS)
            .try_collect()
            .await?;
        for (was_copied, size) in copied {
            if was_copied {
                report.copied += 1;
                report.copied_bytes += size;
            } else {
                report.reused += 1;
            }
        }
    }
    if report.blobs != snapshot.counts.blobs || report.bytes != snapshot.counts.bytes {
        return Err(BackupError::Corrupt(format!(
            "the snapshot lists {} blobs ({} bytes) but {} ({} bytes) were read",
            snapshot.counts.blobs, snapshot.counts.bytes, report.blobs, report.bytes
        )));
    }

    let manifest = BackupManifest {
        format: FORMAT_VERSION,
        wharf_version: env!("CARGO_PKG_VERSION").to_owned(),
        id: snapshot.id.to_string(),
        source: label.to_owned(),
        snapshot_at: format_time(snapshot.snapshot_at),
        completed_at: format_time(now_millis()),
        read_only: ReadOnlyWindow {
            from: format_time(snapshot.read_only_from),
            until: format_time(snapshot.read_only_until),
            read_only_ms: snapshot.read_only_ms(),
            drain_ms: snapshot.drain_ms(),
        },
        metadata: MetadataFile {
            file: super::destination::metadata_file_name(&snapshot.metadata_digest),
            size: snapshot.metadata_size,
            digest: snapshot.metadata_digest.to_string(),
        },
        counts: snapshot.counts,
        blobs_list_sha256: list.finish().to_string(),
        copy: report,
    };
    wharf_core::failpoint::hit("backup-finishing");
    destination.finish(&manifest).await?;
    Ok(manifest)
}
