//! The registry's domain logic: blobs, uploads, manifests, tags, referrers, garbage collection and
//! consistency checks, on top of the metadata store, blob storage and the write gate.
//!
//! Every method that writes first asks the [write gate](wharf_gate) for a permit and hands it to
//! the stores; the HTTP layer only parses requests, calls these methods and maps their results.

pub mod backups;
mod blobs;
mod browse;
mod error;
mod fsck;
mod gc;
mod listing;
mod manifests;
mod sessions;
mod state;
mod upload_claims;
mod uploads;
mod write_health;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::RegistryError;
pub use fsck::{FsckProblem, FsckReport};
pub use gc::{GcReport, GcRun, GcSettings};
pub use listing::ListPage;
pub use manifests::StoredManifestInfo;
pub use state::{DrainReport, StateReport};
pub use uploads::{ChunkRange, MountOutcome};
pub use write_health::{WriteFailure, WriteHealth, WritesFailing};

use wharf_gate::metrics::Metrics;
use wharf_gate::{DrainSettings, WriteGate, WriteIntent, WritePermit};
use wharf_metadata::MetadataStore;
pub use wharf_metadata_postgres::PostgresOptions;
use wharf_metadata_postgres::PostgresStore;
use wharf_metadata_sqlite::SqliteStore;
use wharf_storage::BlobStore;

/// Size limits on what clients may push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest manifest accepted, in bytes.
    pub max_manifest_size: u64,
    /// The largest blob accepted, in bytes, if limited.
    pub max_blob_size: Option<u64>,
    /// Accept manifests that name content absent from the repository ("sparse" manifests, as
    /// mirrors of a few platforms of an index need). Off by default: a registry that checks
    /// references never serves a manifest whose pull then fails.
    pub sparse_manifests: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_size: 4 * 1024 * 1024,
            max_blob_size: None,
            sparse_manifests: false,
        }
    }
}

/// The registry. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Registry {
    metadata: Arc<dyn MetadataStore>,
    blobs: BlobStore,
    gate: WriteGate,
    limits: Limits,
    /// Where backup snapshots are kept while their backups run.
    backups_dir: PathBuf,
    sessions: Arc<sessions::SessionCache>,
    write_health: Arc<WriteHealth>,
}

/// Which database holds the registry's metadata.
#[derive(Debug, Clone)]
pub enum MetadataDatabase {
    /// SQLite, in the data folder ([`DataPaths::metadata`]): one machine, no set-up.
    Sqlite,
    /// PostgreSQL, which several replicas can share.
    Postgres(PostgresOptions),
}

impl MetadataDatabase {
    /// Whether one process at a time may use the data folder: with SQLite, uploads in
    /// progress are coordinated in that process's memory.
    pub fn needs_data_folder_lock(&self) -> bool {
        matches!(self, MetadataDatabase::Sqlite)
    }
}

/// Where the registry keeps its data on one machine.
#[derive(Debug, Clone)]
pub struct DataPaths {
    /// The SQLite database file.
    pub metadata: PathBuf,
    /// The blob storage folder.
    pub storage: PathBuf,
    /// Where backup snapshots are kept while their backups run.
    pub backups: PathBuf,
}

impl DataPaths {
    /// The standard layout inside a data folder: `metadata.db` and `storage/`.
    pub fn in_folder(data_dir: &Path) -> Self {
        DataPaths {
            metadata: data_dir.join("metadata.db"),
            storage: data_dir.join("storage"),
            backups: data_dir.join("backups"),
        }
    }
}

impl Registry {
    /// A registry over the given stores, keeping backup snapshots in `backups_dir`.
    pub fn new(
        metadata: Arc<dyn MetadataStore>,
        blobs: BlobStore,
        gate: WriteGate,
        limits: Limits,
        backups_dir: PathBuf,
    ) -> Self {
        let write_health = Arc::new(WriteHealth::new(Arc::clone(gate.metrics())));
        Registry {
            metadata,
            blobs,
            gate,
            limits,
            backups_dir,
            sessions: Arc::default(),
            write_health,
        }
    }

    /// Opens (creating if needed) a registry whose metadata is in SQLite and whose blobs are on
    /// the local file system, with its write gate (read-only from the start if holds exist).
    pub async fn open_local(
        paths: &DataPaths,
        fsync: bool,
        limits: Limits,
        drain: DrainSettings,
    ) -> Result<Self, RegistryError> {
        let blobs = BlobStore::filesystem(&paths.storage, fsync)?;
        Self::open(&MetadataDatabase::Sqlite, paths, blobs, limits, drain).await
    }

    /// As [`Registry::open_local`], with SQLite metadata and blobs in `blobs` (an S3 bucket,
    /// say) instead of the data folder's `storage/`.
    pub async fn open_with_blobs(
        paths: &DataPaths,
        blobs: BlobStore,
        limits: Limits,
        drain: DrainSettings,
    ) -> Result<Self, RegistryError> {
        Self::open(&MetadataDatabase::Sqlite, paths, blobs, limits, drain).await
    }

    /// Opens (creating if needed) a registry whose metadata is in `database` and whose blobs
    /// are in `blobs`, with its write gate (read-only from the start if holds exist).
    /// PostgreSQL's schema is brought up to date as it is connected to.
    pub async fn open(
        database: &MetadataDatabase,
        paths: &DataPaths,
        blobs: BlobStore,
        limits: Limits,
        drain: DrainSettings,
    ) -> Result<Self, RegistryError> {
        let metadata: Arc<dyn MetadataStore> = match database {
            MetadataDatabase::Sqlite => {
                if let Some(parent) = paths.metadata.parent() {
                    std::fs::create_dir_all(parent).map_err(RegistryError::internal)?;
                }
                Arc::new(SqliteStore::open(&paths.metadata).await?)
            }
            MetadataDatabase::Postgres(options) => Arc::new(PostgresStore::connect(options).await?),
        };
        let gate = WriteGate::open(metadata.clone(), drain, Arc::new(Metrics::new())).await?;
        Ok(Registry::new(
            metadata,
            blobs,
            gate,
            limits,
            paths.backups.clone(),
        ))
    }

    /// Whether writes are failing (the storage full, the database failing), as the HTTP layer
    /// records each write's outcome.
    pub fn write_health(&self) -> &WriteHealth {
        &self.write_health
    }

    /// The registry's write gate.
    pub fn gate(&self) -> &WriteGate {
        &self.gate
    }

    /// The metadata store, for the crates built on the registry (accounts, backups, the state
    /// report); its writes still need a permit from [`Registry::gate`].
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// The blob store, for the crates built on the registry (backups read blobs through it).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The size limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Checks that the metadata database answers.
    pub async fn check_health(&self) -> Result<(), RegistryError> {
        Ok(self.metadata.ping().await?)
    }

    /// How many upload sessions are open.
    pub async fn open_uploads(&self) -> Result<u64, RegistryError> {
        Ok(self.metadata.open_upload_count().await?)
    }

    /// Closes the stores; the registry must not be used afterwards.
    pub async fn close(&self) {
        self.metadata.close().await;
    }

    async fn admit(&self, intent: WriteIntent<'_>) -> Result<WritePermit, RegistryError> {
        Ok(self.gate.admit(intent).await?)
    }
}
