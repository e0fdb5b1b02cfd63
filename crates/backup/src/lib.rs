//! Copying, verifying and restoring backups: step 4 of a consistent online backup and its way
//! back. The registry's side — the hold, the metadata snapshot and the lease that keeps blobs —
//! is [`wharf_registry::backups`]; this crate copies what a snapshot references from a
//! [`BackupSource`] (the registry's own storage, or its admin API from another machine) to a
//! [`Destination`], verifies a backup folder, and restores one into an empty data folder.

mod copy;
mod destination;
mod files;
mod manifest;
mod restore;
mod source;
mod verify;

pub use copy::{CopyReport, Progress, copy_backup};
pub use destination::Destination;
pub use manifest::{BackupManifest, FORMAT_VERSION, MetadataFile, ReadOnlyWindow};
pub use restore::{RestoreReport, RestoreTarget, restore, restore_from_bucket};
pub use source::{BackupSource, LocalSource};
pub use verify::{VerifyReport, verify, verify_bucket};
