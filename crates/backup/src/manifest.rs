//! `backup.json`: what a complete backup holds, written last.

use serde::{Deserialize, Serialize};

use super::CopyReport;
use wharf_metadata_sqlite::SnapshotCounts;

/// The format of backups this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The description of a complete backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// The backup format's version.
    pub format: u32,
    /// The Wharf version that wrote it.
    pub wharf_version: String,
    /// The backup's identifier.
    pub id: String,
    /// Where it was taken from (a URL, or a data folder).
    pub source: String,
    /// When the snapshot was taken (RFC 3339).
    pub snapshot_at: String,
    /// When the backup was complete (RFC 3339).
    pub completed_at: String,
    /// How long the registry was read-only for it.
    pub read_only: ReadOnlyWindow,
    /// The metadata snapshot.
    pub metadata: MetadataFile,
    /// What the snapshot holds.
    pub counts: SnapshotCounts,
    /// SHA-256 of the list of blobs (`<digest> <size>\n` for each, by digest): the blobs
    /// themselves are named by their digests.
    pub blobs_list_sha256: String,
    /// What copying did.
    pub copy: CopyReport,
}

/// How long the registry was read-only for a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadOnlyWindow {
    /// When read-only was in effect (RFC 3339).
    pub from: String,
    /// When the backup's hold was released (RFC 3339).
    pub until: String,
    /// The window's length.
    pub read_only_ms: u64,
    /// How long the drain before it took.
    pub drain_ms: u64,
}

/// The metadata snapshot's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataFile {
    /// Its name in the backup folder.
    pub file: String,
    /// Its size.
    pub size: u64,
    /// Its digest.
    pub digest: String,
}
