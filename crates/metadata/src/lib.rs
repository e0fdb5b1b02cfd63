//! The metadata store: repositories, blobs and their repository links, manifests, tags and upload
//! sessions, behind one trait so that the SQLite store of a single machine and a PostgreSQL store
//! for several replicas are interchangeable.
//!
//! Reads take no permit. Every mutating method takes `&WritePermit`, so a write that did not pass
//! the [write gate](wharf_gate) does not compile. Each mutating method is one transaction: what it
//! makes visible becomes visible all at once, or not at all.

pub mod accounts;
pub mod browse;
pub mod connections;
mod names;
pub mod rows;
pub mod sql;
#[cfg(feature = "suite")]
pub mod suite;
pub mod transfer;

use async_trait::async_trait;

pub use accounts::AccountStore;
pub use names::Names;

use wharf_core::digest::{Algorithm, Digest};
pub use wharf_core::manifest::Descriptor;
use wharf_core::placement::StorageKey;
use wharf_core::reference::{Reference, RepositoryName, Tag};
use wharf_core::storage_full::StorageFull;
use wharf_core::time::Millis;
use wharf_core::unavailable::Unavailable;
use wharf_core::upload_id::UploadId;
use wharf_gate::store::GateStore;
use wharf_gate::{ControlWrite, WritePermit};

/// A backup's snapshot of the metadata, as [`MetadataStore::snapshot`] took it.
pub enum Snapshot {
    /// Written to the file it was given.
    Written,
    /// Begun: a consistent read of the rows, to be copied into the file.
    Begun(Box<dyn transfer::RowSource>),
}

/// A failure of the metadata store itself (not a "not found", which methods return as `None`).
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The database failed.
    #[error("metadata database error: {0}")]
    Database(sqlx::Error),
    /// The database cannot be reached: it is down or restarting, refuses connections, or did
    /// not answer within the store's timeouts. Nothing was written; the request may be retried.
    #[error("the metadata database is unreachable: {0}")]
    Unavailable(#[source] Unavailable),
    /// The database cannot write because its storage is full (the transaction was rolled back).
    #[error("the metadata database cannot write: {0}")]
    StorageFull(#[source] StorageFull),
    /// Applying the schema migrations failed.
    #[error("metadata database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The write gate stopped the write before it committed.
    #[error(transparent)]
    Refused(#[from] wharf_gate::WriteRefused),
    /// A stored value could not be decoded (the database was edited by hand, or is damaged).
    #[error("metadata database holds an invalid value: {0}")]
    Corrupt(String),
    /// The settings to reach the database are unusable (a malformed URL, say).
    #[error("invalid metadata database settings: {0}")]
    Settings(String),
}

/// SQLite's `SQLITE_FULL` and PostgreSQL's `disk_full`: the codes a database answers a write
/// with when its storage is full.
const STORAGE_FULL_CODES: [&str; 2] = ["13", "53100"];

/// PostgreSQL's answers of a server that cannot serve now, though it may in a moment: the
/// server shutting down, crashed or starting (`57P01`–`57P03`), a statement cancelled by the
/// store's `statement_timeout` (`57014`), too many connections (`53300`); and the whole class
/// `08` (connection exceptions).
const UNAVAILABLE_CODES: [&str; 5] = ["57P01", "57P02", "57P03", "57014", "53300"];

/// Whether `error` says the database cannot be reached (rather than that it refused what was
/// asked): the connection failed or broke, or no connection could be had within the pool's
/// acquire timeout.
fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || UNAVAILABLE_CODES.contains(&code.as_ref())
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for MetadataError {
    fn from(error: sqlx::Error) -> Self {
        let full = match &error {
            sqlx::Error::Database(database) => database
                .code()
                .is_some_and(|code| STORAGE_FULL_CODES.contains(&code.as_ref())),
            other => wharf_core::storage_full::is_storage_full(other),
        };
        if full {
            MetadataError::StorageFull(StorageFull(error.to_string()))
        } else if is_unreachable(&error) {
            MetadataError::Unavailable(Unavailable(error.to_string()))
        } else {
            MetadataError::Database(error)
        }
    }
}

/// Shorthand for results of the metadata store.
pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// A blob as a repository (or the garbage collector) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// The blob's content digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The object in blob storage holding its content.
    pub storage_key: StorageKey,
}

/// An upload session as stored: enough to continue the upload on any replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// The session's identifier, part of its URL.
    pub id: UploadId,
    /// The repository the blob is being uploaded to.
    pub repository: RepositoryName,
    /// Who opened the session (the client address, or the user once authentication exists).
    pub client: String,
    /// How many bytes have been received and stored.
    pub received: u64,
    /// The algorithm of `hash_state`.
    pub hash_algorithm: Algorithm,
    /// The hasher's saved state after the first `hashed` bytes.
    pub hash_state: Vec<u8>,
    /// How many bytes `hash_state` covers, at most `received`: hashing a chunk may still be
    /// running when the chunk is answered, and the bytes it had not reached are hashed from the
    /// staged data when the upload continues without that hasher.
    pub hashed: u64,
    /// When the session was opened.
    pub created_at: Millis,
    /// When bytes were last received.
    pub updated_at: Millis,
    /// Blob storage's own record of where the received bytes are, opaque to the metadata
    /// store: empty on the file system (the staged file is named by the session), and on S3
    /// the multipart upload's id, its parts' ETags and the staged object holding the bytes
    /// that do not fill a part yet — so that any replica can continue the upload.
    pub storage_state: String,
}

/// How an upload session ended when its blob was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadCompletion {
    /// The blob is now visible in the repository. `reused_existing` tells that identical content
    /// was already stored, so the uploaded copy (if any) is redundant and may be deleted.
    Committed {
        /// The blob as now stored.
        blob: BlobRecord,
        /// True when the blob's content was already stored under another key.
        reused_existing: bool,
    },
    /// The content is not stored yet: place it in storage and call again with its key.
    ContentNeeded,
    /// The session no longer exists or moved on (cancelled, expired or completed by another
    /// request).
    SessionGone,
}

/// What removing a blob from a repository did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobUnlink {
    /// The blob is no longer in the repository.
    Unlinked,
    /// The blob was not in the repository.
    NotLinked,
    /// A manifest in the repository refers to the blob, so it stays.
    InUse,
}

/// A manifest as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The manifest's digest (of `content`).
    pub digest: Digest,
    /// Its media type, as given when it was pushed.
    pub media_type: String,
    /// The manifest exactly as pushed.
    pub content: Vec<u8>,
}

/// A manifest to store, with what it refers to.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Digest of `content`.
    pub digest: Digest,
    /// The media type the manifest declares.
    pub media_type: String,
    /// The manifest exactly as pushed.
    pub content: Vec<u8>,
    /// Blobs it refers to (config and layers), which must be in the repository with the sizes
    /// declared.
    pub blobs: Vec<Descriptor>,
    /// Manifests it refers to (an index's entries), which must be in the repository with the
    /// sizes declared.
    pub manifests: Vec<Descriptor>,
    /// For the referrers API: its `artifactType`, or its config's media type.
    pub artifact_type: Option<String>,
    /// The manifest it refers to as its subject, if any.
    pub subject: Option<Digest>,
    /// Its annotations as a JSON object, if any.
    pub annotations: Option<String>,
    /// Whether content it names may be absent from the repository (`limits.sparse_manifests`);
    /// content that is present must still have the size declared.
    pub sparse: bool,
    /// The tags to point at it, all in the same transaction: the reference's when pushed by tag,
    /// and those of the `?tag=` parameters.
    pub tags: Vec<Tag>,
    /// Who pushes it (the account, or the address without authentication): the push it
    /// belongs to, as a drain tells pushes apart.
    pub client: String,
}

/// Why a manifest could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRejection {
    /// A blob it refers to is not in the repository.
    MissingBlob(Digest),
    /// A manifest it refers to is not in the repository.
    MissingManifest(Digest),
    /// It declares a size for a blob or manifest that differs from that content's size.
    SizeMismatch {
        /// The content.
        digest: Digest,
        /// The size the manifest declares.
        declared: u64,
        /// The content's size.
        actual: u64,
    },
}

/// What deleting a manifest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestDeletion {
    /// The manifest and the tags pointing at it are gone.
    Deleted,
    /// The repository has no such manifest.
    NotFound,
    /// An index in the repository refers to it (this one, for the message), so it stays: deleting
    /// it would leave the index naming content that is not there.
    InUse(Digest),
}

/// A manifest that refers to another as its subject, as the referrers API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The referring manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its artifact type, if it has one.
    pub artifact_type: Option<String>,
    /// Its annotations as a JSON object, if any.
    pub annotations: Option<String>,
}

/// A reference from a manifest to something that is not (or no longer) there, found by fsck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanglingReference {
    /// The repository of the manifest.
    pub repository: RepositoryName,
    /// The manifest holding the reference.
    pub manifest: Digest,
    /// What it refers to.
    pub child: Digest,
    /// Whether the child is a blob (else a manifest).
    pub child_is_blob: bool,
}

/// A stored manifest, as fsck walks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// Its repository.
    pub repository: RepositoryName,
    /// The manifest itself.
    pub manifest: ManifestRecord,
}

/// The last run of a background job, as [`MetadataStore::record_job_run`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRun {
    /// The job (`gc`).
    pub name: String,
    /// The replica or command that ran it.
    pub replica: String,
    /// When it finished.
    pub finished_at: Millis,
    /// What it did or why it failed, as the job writes it (JSON).
    pub outcome: String,
}

/// A backup lease: while it is active, garbage collection keeps every blob created at or before
/// `snapshot_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupLease {
    /// The backup's id.
    pub id: String,
    /// When the backup's metadata snapshot was taken.
    pub snapshot_at: Millis,
    /// When the lease was taken.
    pub created_at: Millis,
    /// When it ends by itself.
    pub expires_at: Millis,
}

/// A page of a listing: at most `limit` entries after `last`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<'a> {
    /// Start after this entry (exclusive); `None` starts at the beginning.
    pub last: Option<&'a str>,
    /// The most entries to return.
    pub limit: u32,
}

/// Where a walk through the live blobs, page by page in digest order, has got to (fsck, backups
/// and restores read them all this way).
#[derive(Debug, Clone)]
pub struct BlobCursor {
    last: Option<String>,
    limit: u32,
}

impl BlobCursor {
    /// A walk from the first blob, `limit` blobs a page.
    pub fn new(limit: u32) -> Self {
        BlobCursor { last: None, limit }
    }

    /// The page to ask for next.
    pub fn page(&self) -> Page<'_> {
        Page {
            last: self.last.as_deref(),
            limit: self.limit,
        }
    }

    /// Moves past `blobs`, the page just read; returns false when it was empty: the walk is over.
    pub fn advance(&mut self, blobs: &[BlobRecord]) -> bool {
        match blobs.last() {
            Some(last) => {
                self.last = Some(last.digest.to_string());
                true
            }
            None => false,
        }
    }
}

/// The metadata store. See the [module documentation](self); its accounts part is
/// [`AccountStore`].
#[async_trait]
pub trait MetadataStore: AccountStore + GateStore + Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Closes the store, flushing what it buffers; called once at shutdown.
    async fn close(&self);

    // ---- Reads ----

    /// The blob, if it is stored and linked to `repository`.
    async fn blob_in_repository(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>>;

    /// The open upload session `id`.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>>;

    /// The manifest `reference` resolves to in `repository`.
    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>>;

    /// Whether `repository` exists (something was ever pushed to it).
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool>;

    /// A page of the repository's tags in lexical order; `None` if the repository does not exist
    /// (one answer, so that a listing is one query).
    async fn tags(&self, repository: &RepositoryName, page: Page<'_>) -> Result<Option<Names>>;

    /// A page of the names of repositories that hold a manifest, in lexical order (one whose
    /// last manifest was deleted, or that has only blobs so far, is not listed).
    async fn repositories(&self, page: Page<'_>) -> Result<Names>;

    /// A page of the repositories `digest` is a live blob of, in lexical order: where a mount
    /// that names no source may find it.
    async fn repositories_with_blob(
        &self,
        digest: &Digest,
        page: Page<'_>,
    ) -> Result<Vec<RepositoryName>>;

    /// The manifests in `repository` whose subject is `subject`, optionally only those of one
    /// artifact type, ordered by digest.
    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;

    // ---- Writes ----

    /// Records a new upload session.
    async fn open_upload(&self, permit: &WritePermit, session: &UploadSession) -> Result<()>;

    /// Records that the session now holds `received` bytes, the first `hashed` of them hashed
    /// to `hash_state`, provided it still holds `expected` bytes (so two writers cannot both
    /// advance it). Returns whether the session was advanced.
    async fn record_upload_progress(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        expected: u64,
        received: u64,
        hashed: u64,
        hash_state: &[u8],
    ) -> Result<bool>;

    /// As [`MetadataStore::record_upload_progress`], and records blob storage's new
    /// `storage_state` for the session in the same write (an upload whose bytes are in an
    /// object store: the parts and the staged object the received bytes are now in).
    #[allow(clippy::too_many_arguments)]
    async fn record_upload_progress_with_storage(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        expected: u64,
        received: u64,
        hashed: u64,
        hash_state: &[u8],
        storage_state: &str,
    ) -> Result<bool>;

    /// Commits the session's content as blob `digest` of `size` bytes and links it to the
    /// session's repository, in one transaction, if the session still holds `expected` bytes
    /// (`size` includes a final chunk sent with the completing request). When the blob is
    /// already stored the existing copy is used; otherwise `new_key` must name the object holding
    /// the uploaded content (else [`UploadCompletion::ContentNeeded`]).
    #[allow(clippy::too_many_arguments)]
    async fn complete_upload(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        expected: u64,
        digest: &Digest,
        size: u64,
        new_key: Option<&StorageKey>,
    ) -> Result<UploadCompletion>;

    /// Forgets an upload session (cancelled, or expired). Returns whether it existed.
    async fn delete_upload(&self, permit: &WritePermit, id: &UploadId) -> Result<bool>;

    /// Links a blob stored in repository `from` into `repository` as well, and records the mount
    /// as an upload by `client` that completed at once (it is part of a push). Returns the blob
    /// when it was linked, `None` when `from` does not have it.
    async fn mount_blob(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
        client: &str,
    ) -> Result<Option<BlobRecord>>;

    /// Removes a blob's link from `repository`, unless a manifest there still refers to it.
    async fn unlink_blob(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobUnlink>;

    /// Stores a manifest (and its tag) after checking, in the same transaction, that everything
    /// it refers to is in the repository.
    async fn put_manifest(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        manifest: &NewManifest,
    ) -> Result<Result<(), ManifestRejection>>;

    /// Deletes a manifest and the tags pointing at it, unless an index in the repository refers
    /// to it (checked in the same transaction, so an index pushed concurrently either sees the
    /// manifest or keeps it).
    async fn delete_manifest(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestDeletion>;

    /// Deletes a tag (not the manifest). Returns whether it existed.
    async fn delete_tag(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool>;

    // ---- Backups ----

    /// Takes a consistent snapshot of the whole database for a backup, as of now. SQLite
    /// writes it to the new file `path` at once ([`Snapshot::Written`]); PostgreSQL begins a
    /// read of its rows in one transaction and returns it ([`Snapshot::Begun`]) for the caller
    /// to copy into `path` (`wharf_metadata_sqlite::SnapshotFile`) once the registry is writable
    /// again, since what it copies stays that of this moment.
    async fn snapshot(&self, path: &std::path::Path) -> Result<Snapshot>;

    /// Claims upload session `id` for `writer` (a request) until `until`, if it is open and no
    /// other request's claim holds at `now`; returns whether it did. A store no other process
    /// shares ([`GateStore::shared_by_replicas`]) needs no claim (its process locks its uploads
    /// itself) and always grants it.
    async fn claim_upload(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        writer: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let _ = (permit, id, writer, until, now);
        Ok(true)
    }

    /// Extends `writer`'s claim of session `id` to `until`; returns whether it still held it.
    /// Not a write of content (it needs no permit): it only keeps what a permit claimed.
    async fn renew_upload_claim(&self, id: &UploadId, writer: &str, until: Millis) -> Result<bool> {
        let _ = (id, writer, until);
        Ok(true)
    }

    /// Ends `writer`'s claim of session `id`, if it still holds it (no permit: it only gives
    /// back what a permit claimed).
    async fn release_upload_claim(&self, id: &UploadId, writer: &str) -> Result<()> {
        let _ = (id, writer);
        Ok(())
    }

    /// Claims, or renews, the lease of background job `name` (garbage collection) for `holder`
    /// (a replica) until `until`, unless another holder's lease holds at `now`; returns whether
    /// `holder` holds it now. A control-plane write: it decides who works, and writes nothing
    /// of the registry's content.
    async fn claim_job_lease(
        &self,
        control: &ControlWrite,
        name: &str,
        holder: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool>;

    /// Ends `holder`'s lease of job `name`, if it holds it.
    async fn release_job_lease(
        &self,
        control: &ControlWrite,
        name: &str,
        holder: &str,
    ) -> Result<()>;

    /// Records the run of a background job in place of the one before (a control-plane write:
    /// it says what a job did, and writes nothing of the registry's content).
    async fn record_job_run(&self, control: &ControlWrite, run: &JobRun) -> Result<()>;

    /// The last run of job `name`, if one was recorded.
    async fn last_job_run(&self, name: &str) -> Result<Option<JobRun>>;

    /// Takes or updates a backup lease (a control-plane write: it is taken while the registry
    /// is read-only).
    async fn put_backup_lease(&self, control: &ControlWrite, lease: &BackupLease) -> Result<()>;

    /// Extends an active backup lease to `expires_at`. Returns whether it was active at `now`.
    async fn renew_backup_lease(
        &self,
        control: &ControlWrite,
        id: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<bool>;

    /// Releases a backup lease. Returns whether it existed.
    async fn delete_backup_lease(&self, control: &ControlWrite, id: &str) -> Result<bool>;

    /// Every backup lease, expired ones included.
    async fn backup_leases(&self) -> Result<Vec<BackupLease>>;

    /// The live blob `digest`, whatever repositories link it.
    async fn live_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>>;

    // ---- Housekeeping ----

    /// Open upload sessions that received nothing since `idle_since`.
    async fn idle_uploads(&self, idle_since: Millis, limit: u32) -> Result<Vec<UploadSession>>;

    /// Forgets completed upload sessions that completed before `before`. Returns how many.
    async fn forget_completed_uploads(&self, permit: &WritePermit, before: Millis) -> Result<u64>;

    /// Removes repository links made before `before` to blobs that no manifest of that
    /// repository refers to. Returns how many.
    async fn prune_blob_links(&self, permit: &WritePermit, before: Millis) -> Result<u64>;

    /// Marks up to `limit` blobs created before `before` that no repository links, no manifest
    /// refers to and no backup lease active at `now` keeps as being deleted (invisible from now
    /// on), and returns them.
    async fn claim_unreferenced_blobs(
        &self,
        permit: &WritePermit,
        before: Millis,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<BlobRecord>>;

    /// Blobs marked as being deleted whose deletion has not finished.
    async fn blobs_being_deleted(&self, limit: u32) -> Result<Vec<BlobRecord>>;

    /// Forgets a blob marked as being deleted, once its object is gone, provided it still is
    /// marked so and still uses `storage_key` (a new upload may have revived it meanwhile).
    async fn forget_deleted_blob(
        &self,
        permit: &WritePermit,
        digest: &Digest,
        storage_key: &StorageKey,
    ) -> Result<()>;

    /// Whether some blob record (in any state) uses `storage_key`.
    async fn storage_key_in_use(&self, storage_key: &StorageKey) -> Result<bool>;

    // ---- Consistency checks ----

    /// A page of live blobs ordered by digest, after the digest `page.last`.
    async fn live_blobs(&self, page: Page<'_>) -> Result<Vec<BlobRecord>>;

    /// A page of manifests ordered by (repository, digest), after `last`.
    async fn stored_manifests(
        &self,
        last: Option<(&RepositoryName, &Digest)>,
        limit: u32,
    ) -> Result<Vec<StoredManifest>>;

    /// References from manifests to blobs that are not live and linked in the manifest's
    /// repository, or to manifests that are not in it.
    async fn dangling_references(&self, limit: u32) -> Result<Vec<DanglingReference>>;

    /// Tags that point at no manifest (`repository`, `tag`), which the schema should prevent.
    async fn dangling_tags(&self, limit: u32) -> Result<Vec<(String, String)>>;

    // ---- Browsing (the web UI; see [`browse`]) ----

    /// A page of the repositories that hold a manifest, searched and sorted as `query` asks.
    async fn browse_repositories(
        &self,
        query: &browse::RepositoryQuery<'_>,
    ) -> Result<Vec<browse::RepositorySummary>>;

    /// A page of `repository`'s tags after `page.last`, with their manifests; `None` if the
    /// repository does not exist.
    async fn browse_tags(
        &self,
        repository: &RepositoryName,
        page: Page<'_>,
    ) -> Result<Option<Vec<browse::TagSummary>>>;
}
