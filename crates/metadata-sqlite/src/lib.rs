//! The metadata store on SQLite: a single file, in WAL mode, with one writer connection (writes
//! are serialised in process, and `BEGIN IMMEDIATE` serialises them with other processes such as
//! `wharf gc`) and a pool of readers that never wait for the writer.
//!
//! The SQL is kept portable (`$n` placeholders, `ON CONFLICT`, `RETURNING`, row values) so the
//! PostgreSQL store can share it.

mod accounts;
mod browse;
mod stable_plans;
mod transfer;

pub use transfer::SnapshotFile;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use wharf_core::digest::Digest;
use wharf_core::placement::StorageKey;
use wharf_core::reference::{Reference, RepositoryName, Tag};
use wharf_core::time::{Millis, now_millis};
use wharf_core::upload_id::UploadId;
use wharf_gate::store::{GateStore, PushActivity, Result as GateResult, StoreError};
use wharf_gate::{ControlWrite, Hold, HoldName, Mode, ModeEvent, WritePermit};
use wharf_metadata::connections::{commit, leaves_no_transaction};
use wharf_metadata::rows::{
    BlobRow, DanglingRow, EventRow, HoldRow, LeaseRow, ManifestRow, PushRow, ReferrerRow,
    StoredManifestRow, UploadRow, collect, corrupt, event_for, parse, size_mismatch, to_i64,
    to_u64,
};
use wharf_metadata::{
    BackupLease, BlobRecord, BlobUnlink, DanglingReference, JobRun, ManifestDeletion,
    ManifestRecord, ManifestRejection, MetadataStore, Names, NewManifest, Page, Referrer, Result,
    Snapshot, StoredManifest, UploadCompletion, UploadSession, sql,
};

/// A statement with its parameters bound.
type Statement<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// Readers kept open; SQLite readers in WAL mode run concurrently with each other and the writer.
const READERS: u32 = 8;

/// The SQLite metadata store.
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed transaction survives a power cut, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        // A connection to a local file does not go stale: pinging it before every query (the
        // pools' default) would only add a round trip to its thread.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_connect(|connection, _| Box::pin(stable_plans::enable(connection)))
            .after_release(|connection, _| Box::pin(leaves_no_transaction(connection)))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .after_connect(|connection, _| Box::pin(stable_plans::enable(connection)))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { reader, writer })
    }

    /// Starts a write transaction that holds SQLite's write lock from its first statement, so
    /// its reads and writes are one atomic step even across processes.
    ///
    /// This is a commit point: the permit is re-checked, so a write cancelled meanwhile stops here.
    async fn write(&self, permit: &WritePermit) -> Result<Transaction<'static, Sqlite>> {
        permit.check()?;
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Runs one statement as a write of its own; returns the rows affected.
    ///
    /// A statement on its own is a transaction already, and SQLite takes the write lock as it
    /// starts, as `BEGIN IMMEDIATE` does; wrapping it in `BEGIN`/`COMMIT` would only add two round
    /// trips to the connection's thread, on every chunk of a push. The statement is the commit
    /// point, so the permit is re-checked just before it.
    async fn execute(&self, permit: &WritePermit, statement: Statement<'_>) -> Result<u64> {
        permit.check()?;
        Ok(statement.execute(&self.writer).await?.rows_affected())
    }

    /// Runs one statement as a write that may wait for the disk: like [`Self::execute`], except
    /// that it is not flushed before returning. It survives the process crashing and reaches the
    /// disk with the next write that is flushed (or the next checkpoint), but a power cut may
    /// undo it, and the database then holds what it held before. Returns the rows written.
    ///
    /// Only for the records of uploads in progress: their staged bytes are not flushed before
    /// the upload completes either, so a record flushed ahead of its bytes would be no safer,
    /// and the flush is the costliest step of a `PATCH` after hashing (the client waits for
    /// it before sending the next chunk).
    ///
    /// `sql` is one `INSERT`, `UPDATE` or `DELETE` without `RETURNING`, whose parameters `bind`
    /// binds. It runs between two `PRAGMA synchronous` in one request to the connection's
    /// thread (each request is a thread hand-off, which costs more than the statement), and
    /// counts its rows with `RETURNING` because SQLite's change count would also count them
    /// for the second pragma.
    async fn execute_unflushed(
        &self,
        permit: &WritePermit,
        sql: &str,
        bind: impl for<'q> FnOnce(Statement<'q>) -> Statement<'q>,
    ) -> Result<u64> {
        permit.check()?;
        let statements = sqlx::AssertSqlSafe(format!(
            "PRAGMA synchronous = NORMAL; {sql} RETURNING 1; PRAGMA synchronous = FULL"
        ));
        let mut writer = Unflushed {
            connection: self.writer.acquire().await?,
            restored: false,
        };
        let rows = bind(sqlx::query(statements))
            .fetch_all(&mut *writer.connection)
            .await?;
        // Every statement ran, the last one included.
        writer.restored = true;
        Ok(rows.len() as u64)
    }

    /// Starts a write transaction of the control plane (holds, audit trail), which the write
    /// gate allows even while read-only.
    async fn control_write(&self, _control: &ControlWrite) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// The writer connection during [`SqliteStore::execute_unflushed`]. Dropped before its
/// statements all ran (one failed, or the request went away), it may still be at `synchronous =
/// NORMAL`, so it is closed rather than returned to the pool, where the next write would take it
/// for a flushed one.
struct Unflushed {
    connection: PoolConnection<Sqlite>,
    restored: bool,
}

impl Drop for Unflushed {
    fn drop(&mut self) {
        if !self.restored {
            self.connection.close_on_drop();
        }
    }
}

// LISTING: a page of a listing is one row, its names joined with newlines by the query. sqlx
// hands rows from SQLite's thread to ours one at a time through a channel, and for a page of a
// thousand names those hand-offs (a thread wake-up each) cost far more than the query. The
// aggregate has no ORDER BY of its own: the subquery's order is the index's, and sorting again
// in the aggregate costs a temporary table per query; `Names::from_joined` checks the order.

/// Counts a change of the holds inside `tx` (see [`GateStore::holds_version`]).
async fn count_hold_change(tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
    sqlx::query(sql::COUNT_HOLD_CHANGE)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Appends an event to the audit trail inside `tx`.
async fn insert_event(tx: &mut Transaction<'static, Sqlite>, event: &ModeEvent) -> Result<()> {
    sqlx::query(sql::INSERT_MODE_EVENT)
        .bind(event.at)
        .bind(event.kind.as_str())
        .bind(&event.hold)
        .bind(&event.actor)
        .bind(&event.source)
        .bind(&event.reason)
        .bind(&event.replica)
        .bind(event.from.map(Mode::as_str))
        .bind(event.to.map(Mode::as_str))
        .bind(event.drain_ms.map(to_i64))
        .bind(event.pushes_completed.map(to_i64))
        .bind(event.pushes_cut_off.map(to_i64))
        .bind(event.cancelled_writes.map(to_i64))
        .bind(event.abandoned_uploads.map(to_i64))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Returns the id of the repository `name`, creating it if needed, inside `tx`.
async fn repository_id(
    tx: &mut Transaction<'static, Sqlite>,
    name: &RepositoryName,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(sql::REPOSITORY_ID)
        .bind(name.as_str())
        .bind(now_millis())
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

async fn link_blob(
    tx: &mut Transaction<'static, Sqlite>,
    repository_id: i64,
    digest: &Digest,
) -> Result<()> {
    sqlx::query(sql::LINK_BLOB)
        .bind(repository_id)
        .bind(digest.to_string())
        .bind(now_millis())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query(sql::PING).execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.reader.close().await;
        // Closing the last connection checkpoints the WAL into the database file.
        self.writer.close().await;
    }

    async fn blob_in_repository(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        let row: Option<BlobRow> = sqlx::query_as(sql::BLOB_IN_REPOSITORY)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(BlobRecord::try_from).transpose()
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let row: Option<UploadRow> = sqlx::query_as(sql::UPLOAD)
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(UploadSession::try_from).transpose()
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let row: Option<ManifestRow> = match reference {
            Reference::Tag(tag) => {
                sqlx::query_as(sql::MANIFEST_BY_TAG)
                    .bind(repository.as_str())
                    .bind(tag.as_str())
                    .fetch_optional(&self.reader)
                    .await?
            }
            Reference::Digest(digest) => {
                sqlx::query_as(sql::MANIFEST_BY_DIGEST)
                    .bind(repository.as_str())
                    .bind(digest.to_string())
                    .fetch_optional(&self.reader)
                    .await?
            }
        };
        row.map(ManifestRecord::try_from).transpose()
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        let exists: bool = sqlx::query_scalar(sql::REPOSITORY_EXISTS)
            .bind(repository.as_str())
            .fetch_one(&self.reader)
            .await?;
        Ok(exists)
    }

    async fn tags(&self, repository: &RepositoryName, page: Page<'_>) -> Result<Option<Names>> {
        // One row: whether the repository exists, and its page of tags as one string (see
        // `LISTING`).
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT r.id, (SELECT group_concat(name, char(10)) FROM (
                     SELECT t.name FROM tags t WHERE t.repository_id = r.id AND t.name > $2
                     ORDER BY t.name LIMIT $3))
             FROM repositories r WHERE r.name = $1",
        )
        .bind(repository.as_str())
        .bind(page.last.unwrap_or(""))
        .bind(i64::from(page.limit))
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(_, names)| Names::from_joined(names)))
    }

    async fn repositories(&self, page: Page<'_>) -> Result<Names> {
        // One row (see `LISTING`).
        let names: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(name, char(10)) FROM (
                 SELECT name FROM repositories r
                 WHERE name > $1
                   AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
                 ORDER BY name LIMIT $2)",
        )
        .bind(page.last.unwrap_or(""))
        .bind(i64::from(page.limit))
        .fetch_one(&self.reader)
        .await?;
        Ok(Names::from_joined(names))
    }

    async fn repositories_with_blob(
        &self,
        digest: &Digest,
        page: Page<'_>,
    ) -> Result<Vec<RepositoryName>> {
        let names: Vec<String> = sqlx::query_scalar(sql::REPOSITORIES_WITH_BLOB)
            .bind(digest.to_string())
            .bind(page.last.unwrap_or(""))
            .bind(i64::from(page.limit))
            .fetch_all(&self.reader)
            .await?;
        names
            .iter()
            .map(|name| parse(name, "repository name"))
            .collect()
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows: Vec<ReferrerRow> = sqlx::query_as(sql::REFERRERS)
            .bind(repository.as_str())
            .bind(subject.to_string())
            .bind(artifact_type)
            .fetch_all(&self.reader)
            .await?;
        collect(rows)
    }

    async fn open_upload(&self, permit: &WritePermit, session: &UploadSession) -> Result<()> {
        self.execute_unflushed(permit, sql::OPEN_UPLOAD, |statement| {
            statement
                .bind(session.id.as_str())
                .bind(session.repository.as_str())
                .bind(&session.client)
                .bind(session.hash_algorithm.name())
                .bind(&session.hash_state)
                .bind(to_i64(session.hashed))
                .bind(to_i64(session.received))
                .bind(session.created_at)
                .bind(session.updated_at)
                .bind(&session.storage_state)
        })
        .await?;
        Ok(())
    }

    async fn record_upload_progress(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        expected: u64,
        received: u64,
        hashed: u64,
        hash_state: &[u8],
    ) -> Result<bool> {
        let updated = self
            .execute_unflushed(permit, sql::RECORD_UPLOAD_PROGRESS, |statement| {
                statement
                    .bind(id.as_str())
                    .bind(to_i64(expected))
                    .bind(to_i64(received))
                    .bind(to_i64(hashed))
                    .bind(hash_state)
                    .bind(now_millis())
            })
            .await?;
        Ok(updated == 1)
    }

    async fn record_upload_progress_with_storage(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        expected: u64,
        received: u64,
        hashed: u64,
        hash_state: &[u8],
        storage_state: &str,
    ) -> Result<bool> {
        // Flushed, unlike the progress of a staged file: blob storage deletes the staged
        // object this replaces once it is recorded, so a record lost to a power cut would
        // name an object that is gone.
        let updated = self
            .execute(
                permit,
                sqlx::query(sql::RECORD_UPLOAD_PROGRESS_WITH_STORAGE)
                    .bind(id.as_str())
                    .bind(to_i64(expected))
                    .bind(to_i64(received))
                    .bind(to_i64(hashed))
                    .bind(hash_state)
                    .bind(now_millis())
                    .bind(storage_state),
            )
            .await?;
        Ok(updated == 1)
    }

    async fn complete_upload(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        expected: u64,
        digest: &Digest,
        size: u64,
        new_key: Option<&StorageKey>,
    ) -> Result<UploadCompletion> {
        let mut tx = self.write(permit).await?;
        let repository: Option<String> = sqlx::query_scalar(
            "SELECT repository FROM upload_sessions
             WHERE id = $1 AND received = $2 AND completed_at IS NULL",
        )
        .bind(id.as_str())
        .bind(to_i64(expected))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(repository) = repository else {
            return Ok(UploadCompletion::SessionGone);
        };
        let repository: RepositoryName = parse(&repository, "repository name")?;

        let existing: Option<BlobRow> = sqlx::query_as(sql::LIVE_BLOB)
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let (blob, reused_existing) = match (existing, new_key) {
            (Some(row), _) => (BlobRecord::try_from(row)?, true),
            (None, None) => return Ok(UploadCompletion::ContentNeeded),
            (None, Some(key)) => {
                // Absent, or being deleted by the garbage collector: this placement takes over.
                sqlx::query(sql::PUT_BLOB)
                    .bind(digest.to_string())
                    .bind(to_i64(size))
                    .bind(key.as_str())
                    .bind(now_millis())
                    .execute(&mut *tx)
                    .await?;
                let blob = BlobRecord {
                    digest: digest.clone(),
                    size,
                    storage_key: key.clone(),
                };
                (blob, false)
            }
        };
        let repository_id = repository_id(&mut tx, &repository).await?;
        link_blob(&mut tx, repository_id, digest).await?;
        sqlx::query(sql::COMPLETE_UPLOAD)
            .bind(id.as_str())
            .bind(now_millis())
            .bind(to_i64(size))
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(UploadCompletion::Committed {
            blob,
            reused_existing,
        })
    }

    async fn delete_upload(&self, permit: &WritePermit, id: &UploadId) -> Result<bool> {
        let mut tx = self.write(permit).await?;
        let deleted = sqlx::query(sql::DELETE_UPLOAD)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit(tx, permit).await?;
        Ok(deleted == 1)
    }

    async fn mount_blob(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
        client: &str,
    ) -> Result<Option<BlobRecord>> {
        let mut tx = self.write(permit).await?;
        let row: Option<BlobRow> = sqlx::query_as(sql::MOUNT_SOURCE)
            .bind(digest.to_string())
            .bind(from.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let blob = BlobRecord::try_from(row)?;
        let repository_id = repository_id(&mut tx, repository).await?;
        link_blob(&mut tx, repository_id, digest).await?;
        let now = now_millis();
        sqlx::query(sql::RECORD_MOUNT)
            .bind(UploadId::generate().as_str())
            .bind(repository.as_str())
            .bind(client)
            .bind(Vec::<u8>::new())
            .bind(to_i64(blob.size))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(Some(blob))
    }

    async fn unlink_blob(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobUnlink> {
        let mut tx = self.write(permit).await?;
        let in_use: bool = sqlx::query_scalar(sql::BLOB_IN_USE)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if in_use {
            return Ok(BlobUnlink::InUse);
        }
        let deleted = sqlx::query(sql::UNLINK_BLOB)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit(tx, permit).await?;
        Ok(if deleted == 1 {
            BlobUnlink::Unlinked
        } else {
            BlobUnlink::NotLinked
        })
    }

    async fn put_manifest(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        manifest: &NewManifest,
    ) -> Result<Result<(), ManifestRejection>> {
        let mut tx = self.write(permit).await?;
        let repository_id = repository_id(&mut tx, repository).await?;
        for blob in &manifest.blobs {
            let size: Option<i64> = sqlx::query_scalar(sql::LINKED_BLOB_SIZE)
                .bind(repository_id)
                .bind(blob.digest.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(size) = size else {
                if manifest.sparse {
                    continue;
                }
                return Ok(Err(ManifestRejection::MissingBlob(blob.digest.clone())));
            };
            if let Some(rejection) = size_mismatch(blob, size)? {
                return Ok(Err(rejection));
            }
        }
        for child in &manifest.manifests {
            let size: Option<i64> = sqlx::query_scalar(sql::MANIFEST_SIZE)
                .bind(repository_id)
                .bind(child.digest.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(size) = size else {
                if manifest.sparse {
                    continue;
                }
                return Ok(Err(ManifestRejection::MissingManifest(
                    child.digest.clone(),
                )));
            };
            if let Some(rejection) = size_mismatch(child, size)? {
                return Ok(Err(rejection));
            }
        }
        // The same digest means the same bytes: an existing row is already this manifest.
        sqlx::query(sql::PUT_MANIFEST)
            .bind(repository_id)
            .bind(manifest.digest.to_string())
            .bind(&manifest.media_type)
            .bind(to_i64(manifest.content.len() as u64))
            .bind(&manifest.content)
            .bind(&manifest.artifact_type)
            .bind(manifest.subject.as_ref().map(Digest::to_string))
            .bind(&manifest.annotations)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        let children = manifest
            .blobs
            .iter()
            .map(|d| ("blob", d))
            .chain(manifest.manifests.iter().map(|d| ("manifest", d)));
        for (kind, child) in children {
            sqlx::query(sql::PUT_MANIFEST_REFERENCE)
                .bind(repository_id)
                .bind(manifest.digest.to_string())
                .bind(kind)
                .bind(child.digest.to_string())
                .execute(&mut *tx)
                .await?;
        }
        for tag in &manifest.tags {
            sqlx::query(sql::PUT_TAG)
                .bind(repository_id)
                .bind(tag.as_str())
                .bind(manifest.digest.to_string())
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
        }
        // The push this manifest belongs to: a drain reads it to tell when the push is complete.
        let now = now_millis();
        sqlx::query(sql::RECORD_PUSH_MANIFEST)
            .bind(repository.as_str())
            .bind(&manifest.client)
            .bind(now)
            .bind((!manifest.tags.is_empty()).then_some(now))
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(Ok(()))
    }

    async fn delete_manifest(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestDeletion> {
        let mut tx = self.write(permit).await?;
        // In the transaction that deletes: an index put meanwhile waits for the write lock, then
        // finds its child gone and is refused; or it committed first, and this finds it.
        let parent: Option<String> = sqlx::query_scalar(sql::MANIFEST_PARENT)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(parent) = parent {
            return Ok(ManifestDeletion::InUse(parse(&parent, "digest")?));
        }
        // Tags and references go with it (ON DELETE CASCADE).
        let deleted = sqlx::query(sql::DELETE_MANIFEST)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit(tx, permit).await?;
        Ok(if deleted == 1 {
            ManifestDeletion::Deleted
        } else {
            ManifestDeletion::NotFound
        })
    }

    async fn delete_tag(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool> {
        let deleted = self
            .execute(
                permit,
                sqlx::query(sql::DELETE_TAG)
                    .bind(repository.as_str())
                    .bind(tag.as_str()),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn snapshot(&self, path: &Path) -> Result<Snapshot> {
        let path = path
            .to_str()
            .ok_or_else(|| corrupt(format!("snapshot path {} is not UTF-8", path.display())))?;
        // VACUUM INTO reads in one transaction: a consistent copy, compacted, while others read.
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.reader)
            .await?;
        Ok(Snapshot::Written)
    }

    async fn claim_job_lease(
        &self,
        control: &ControlWrite,
        name: &str,
        holder: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.control_write(control).await?;
        let claimed = sqlx::query(sql::CLAIM_JOB_LEASE)
            .bind(name)
            .bind(holder)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(claimed == 1)
    }

    async fn release_job_lease(
        &self,
        control: &ControlWrite,
        name: &str,
        holder: &str,
    ) -> Result<()> {
        let mut tx = self.control_write(control).await?;
        sqlx::query(sql::RELEASE_JOB_LEASE)
            .bind(name)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_job_run(&self, control: &ControlWrite, run: &JobRun) -> Result<()> {
        let mut tx = self.control_write(control).await?;
        sqlx::query(sql::RECORD_JOB_RUN)
            .bind(&run.name)
            .bind(&run.replica)
            .bind(run.finished_at)
            .bind(&run.outcome)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn last_job_run(&self, name: &str) -> Result<Option<JobRun>> {
        Ok(sqlx::query_as(sql::LAST_JOB_RUN)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn put_backup_lease(&self, control: &ControlWrite, lease: &BackupLease) -> Result<()> {
        let mut tx = self.control_write(control).await?;
        sqlx::query(sql::PUT_BACKUP_LEASE)
            .bind(&lease.id)
            .bind(lease.snapshot_at)
            .bind(lease.created_at)
            .bind(lease.expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn renew_backup_lease(
        &self,
        control: &ControlWrite,
        id: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<bool> {
        let mut tx = self.control_write(control).await?;
        let renewed = sqlx::query(sql::RENEW_BACKUP_LEASE)
            .bind(id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(renewed == 1)
    }

    async fn delete_backup_lease(&self, control: &ControlWrite, id: &str) -> Result<bool> {
        let mut tx = self.control_write(control).await?;
        let deleted = sqlx::query(sql::DELETE_BACKUP_LEASE)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    async fn backup_leases(&self) -> Result<Vec<BackupLease>> {
        let rows: Vec<LeaseRow> = sqlx::query_as(sql::BACKUP_LEASES)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().map(BackupLease::from).collect())
    }

    async fn live_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row: Option<BlobRow> = sqlx::query_as(sql::LIVE_BLOB)
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(BlobRecord::try_from).transpose()
    }

    async fn idle_uploads(&self, idle_since: Millis, limit: u32) -> Result<Vec<UploadSession>> {
        let rows: Vec<UploadRow> = sqlx::query_as(sql::IDLE_UPLOADS)
            .bind(idle_since)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        collect(rows)
    }

    async fn forget_completed_uploads(&self, permit: &WritePermit, before: Millis) -> Result<u64> {
        let mut tx = self.write(permit).await?;
        let deleted = sqlx::query(sql::FORGET_COMPLETED_UPLOADS)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // The manifests' side of the same pushes: only a drain's pushes need them.
        sqlx::query(sql::FORGET_PUSH_MANIFESTS)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(deleted)
    }

    async fn prune_blob_links(&self, permit: &WritePermit, before: Millis) -> Result<u64> {
        let deleted = self
            .execute(permit, sqlx::query(sql::PRUNE_BLOB_LINKS).bind(before))
            .await?;
        Ok(deleted)
    }

    async fn claim_unreferenced_blobs(
        &self,
        permit: &WritePermit,
        before: Millis,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<BlobRecord>> {
        let mut tx = self.write(permit).await?;
        let rows: Vec<BlobRow> = sqlx::query_as(sql::CLAIM_UNREFERENCED_BLOBS)
            .bind(before)
            .bind(i64::from(limit))
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        collect(rows)
    }

    async fn blobs_being_deleted(&self, limit: u32) -> Result<Vec<BlobRecord>> {
        let rows: Vec<BlobRow> = sqlx::query_as(sql::BLOBS_BEING_DELETED)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        collect(rows)
    }

    async fn forget_deleted_blob(
        &self,
        permit: &WritePermit,
        digest: &Digest,
        storage_key: &StorageKey,
    ) -> Result<()> {
        self.execute(
            permit,
            sqlx::query(sql::FORGET_DELETED_BLOB)
                .bind(digest.to_string())
                .bind(storage_key.as_str()),
        )
        .await?;
        Ok(())
    }

    async fn storage_key_in_use(&self, storage_key: &StorageKey) -> Result<bool> {
        Ok(sqlx::query_scalar(sql::STORAGE_KEY_IN_USE)
            .bind(storage_key.as_str())
            .fetch_one(&self.reader)
            .await?)
    }

    async fn live_blobs(&self, page: Page<'_>) -> Result<Vec<BlobRecord>> {
        live_blobs_in(&self.reader, page).await
    }

    async fn stored_manifests(
        &self,
        last: Option<(&RepositoryName, &Digest)>,
        limit: u32,
    ) -> Result<Vec<StoredManifest>> {
        let (last_repository, last_digest) = match last {
            Some((r, d)) => (r.as_str().to_owned(), d.to_string()),
            None => (String::new(), String::new()),
        };
        let rows: Vec<StoredManifestRow> = sqlx::query_as(sql::STORED_MANIFESTS)
            .bind(last_repository)
            .bind(last_digest)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        collect(rows)
    }

    async fn dangling_references(&self, limit: u32) -> Result<Vec<DanglingReference>> {
        let rows: Vec<DanglingRow> = sqlx::query_as(sql::DANGLING_REFERENCES)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        collect(rows)
    }

    async fn dangling_tags(&self, limit: u32) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(sql::DANGLING_TAGS)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?)
    }

    async fn browse_repositories(
        &self,
        query: &wharf_metadata::browse::RepositoryQuery<'_>,
    ) -> Result<Vec<wharf_metadata::browse::RepositorySummary>> {
        browse::repositories(&self.reader, query).await
    }

    async fn browse_tags(
        &self,
        repository: &RepositoryName,
        page: Page<'_>,
    ) -> Result<Option<Vec<wharf_metadata::browse::TagSummary>>> {
        browse::tags(&self.reader, repository, page).await
    }
}

/// The gate's state (holds, the audit trail, what a drain waits for), as the gate asks for it.
#[async_trait]
impl GateStore for SqliteStore {
    async fn holds(&self) -> GateResult<Vec<Hold>> {
        self.holds_in_db().await.map_err(StoreError::new)
    }

    async fn put_hold(
        &self,
        control: &ControlWrite,
        hold: &Hold,
        event: &ModeEvent,
    ) -> GateResult<(Hold, bool)> {
        self.put_hold_in_db(control, hold, event)
            .await
            .map_err(StoreError::new)
    }

    async fn delete_hold(
        &self,
        control: &ControlWrite,
        name: &HoldName,
        event: &ModeEvent,
    ) -> GateResult<Option<Hold>> {
        self.delete_hold_in_db(control, name, event)
            .await
            .map_err(StoreError::new)
    }

    async fn delete_expired_holds(
        &self,
        control: &ControlWrite,
        now: Millis,
        event: &ModeEvent,
    ) -> GateResult<Vec<Hold>> {
        self.delete_expired_holds_in_db(control, now, event)
            .await
            .map_err(StoreError::new)
    }

    async fn record_mode_event(&self, control: &ControlWrite, event: &ModeEvent) -> GateResult<()> {
        self.record_mode_event_in_db(control, event)
            .await
            .map_err(StoreError::new)
    }

    async fn mode_events(&self, limit: u32) -> GateResult<Vec<ModeEvent>> {
        self.mode_events_in_db(limit).await.map_err(StoreError::new)
    }

    async fn push_activity(
        &self,
        repository: &RepositoryName,
        client: &str,
        hold_at: Millis,
        grace_start: Millis,
    ) -> GateResult<Option<PushActivity>> {
        self.pushes_in_db(Some((repository, client)), hold_at, grace_start)
            .await
            .map(|mut pushes| pushes.pop())
            .map_err(StoreError::new)
    }

    async fn drain_pushes(
        &self,
        hold_at: Millis,
        grace_start: Millis,
    ) -> GateResult<Vec<PushActivity>> {
        self.pushes_in_db(None, hold_at, grace_start)
            .await
            .map_err(StoreError::new)
    }

    async fn open_upload_count(&self) -> GateResult<u64> {
        self.open_upload_count_in_db()
            .await
            .map_err(StoreError::new)
    }

    async fn holds_version(&self) -> GateResult<u64> {
        self.holds_version_in_db().await.map_err(StoreError::new)
    }
}

impl SqliteStore {
    async fn holds_in_db(&self) -> Result<Vec<Hold>> {
        let rows: Vec<HoldRow> = sqlx::query_as(sql::HOLDS).fetch_all(&self.reader).await?;
        collect(rows)
    }

    async fn put_hold_in_db(
        &self,
        control: &ControlWrite,
        hold: &Hold,
        event: &ModeEvent,
    ) -> Result<(Hold, bool)> {
        let mut tx = self.control_write(control).await?;
        let existing: Option<i64> = sqlx::query_scalar(sql::HOLD_CREATED_AT)
            .bind(hold.name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(sql::PUT_HOLD)
            .bind(hold.name.as_str())
            .bind(&hold.reason)
            .bind(&hold.set_by)
            .bind(hold.source.as_str())
            .bind(hold.created_at)
            .bind(hold.updated_at)
            .bind(hold.expires_at)
            .execute(&mut *tx)
            .await?;
        insert_event(&mut tx, event).await?;
        count_hold_change(&mut tx).await?;
        tx.commit().await?;
        let stored = Hold {
            created_at: existing.unwrap_or(hold.created_at),
            ..hold.clone()
        };
        Ok((stored, existing.is_none()))
    }

    async fn delete_hold_in_db(
        &self,
        control: &ControlWrite,
        name: &HoldName,
        event: &ModeEvent,
    ) -> Result<Option<Hold>> {
        let mut tx = self.control_write(control).await?;
        let row: Option<HoldRow> = sqlx::query_as(sql::DELETE_HOLD)
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = &row {
            insert_event(&mut tx, &event_for(event, &row.name, &row.reason)).await?;
            count_hold_change(&mut tx).await?;
        }
        tx.commit().await?;
        row.map(Hold::try_from).transpose()
    }

    async fn delete_expired_holds_in_db(
        &self,
        control: &ControlWrite,
        now: Millis,
        event: &ModeEvent,
    ) -> Result<Vec<Hold>> {
        let expired: bool = sqlx::query_scalar(sql::ANY_HOLD_EXPIRED)
            .bind(now)
            .fetch_one(&self.reader)
            .await?;
        // Most evaluations find nothing expired: they need no write transaction.
        if !expired {
            return Ok(Vec::new());
        }
        let mut tx = self.control_write(control).await?;
        let rows: Vec<HoldRow> = sqlx::query_as(sql::DELETE_EXPIRED_HOLDS)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            insert_event(&mut tx, &event_for(event, &row.name, &row.reason)).await?;
        }
        if !rows.is_empty() {
            count_hold_change(&mut tx).await?;
        }
        tx.commit().await?;
        collect(rows)
    }

    async fn record_mode_event_in_db(
        &self,
        control: &ControlWrite,
        event: &ModeEvent,
    ) -> Result<()> {
        let mut tx = self.control_write(control).await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mode_events_in_db(&self, limit: u32) -> Result<Vec<ModeEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(sql::MODE_EVENTS)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        collect(rows)
    }

    async fn holds_version_in_db(&self) -> Result<u64> {
        let version: i64 = sqlx::query_scalar(sql::HOLDS_VERSION)
            .fetch_one(&self.reader)
            .await?;
        to_u64(version)
    }

    async fn open_upload_count_in_db(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(sql::OPEN_UPLOAD_COUNT)
            .fetch_one(&self.reader)
            .await?;
        to_u64(count)
    }

    /// The pushes that had begun before `hold_at` (only the one of `push`, if given).
    async fn pushes_in_db(
        &self,
        push: Option<(&RepositoryName, &str)>,
        hold_at: Millis,
        grace_start: Millis,
    ) -> Result<Vec<PushActivity>> {
        let rows: Vec<PushRow> = sqlx::query_as(sql::PUSHES)
            .bind(hold_at)
            .bind(grace_start)
            .bind(push.map(|(repository, _)| repository.as_str()))
            .bind(push.map(|(_, client)| client))
            .fetch_all(&self.reader)
            .await?;
        collect(rows)
    }
}

/// What a metadata snapshot holds, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotCounts {
    /// Repositories.
    pub repositories: u64,
    /// Manifests.
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// Live blobs.
    pub blobs: u64,
    /// Bytes those blobs hold.
    pub bytes: u64,
}

/// A metadata snapshot file (a backup's `metadata.db`), opened as it is: read-only, immutable,
/// without migrations.
pub struct SqliteSnapshot {
    pool: SqlitePool,
}

impl SqliteSnapshot {
    /// Opens the snapshot at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .read_only(true)
            .immutable(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .after_connect(|connection, _| Box::pin(stable_plans::enable(connection)))
            .connect_with(options)
            .await?;
        Ok(SqliteSnapshot { pool })
    }

    /// What the snapshot holds.
    pub async fn counts(&self) -> Result<SnapshotCounts> {
        let (repositories, manifests, tags, blobs, bytes): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT
                 (SELECT COUNT(*) FROM repositories),
                 (SELECT COUNT(*) FROM manifests),
                 (SELECT COUNT(*) FROM tags),
                 (SELECT COUNT(*) FROM blobs WHERE state = 'live'),
                 (SELECT COALESCE(SUM(size), 0) FROM blobs WHERE state = 'live')",
            )
            .fetch_one(&self.pool)
            .await?;
        Ok(SnapshotCounts {
            repositories: to_u64(repositories)?,
            manifests: to_u64(manifests)?,
            tags: to_u64(tags)?,
            blobs: to_u64(blobs)?,
            bytes: to_u64(bytes)?,
        })
    }

    /// A page of the snapshot's live blobs, ordered by digest, after the digest `page.last`.
    pub async fn live_blobs(&self, page: Page<'_>) -> Result<Vec<BlobRecord>> {
        live_blobs_in(&self.pool, page).await
    }

    /// The schema migrations applied to the database the snapshot was taken of.
    pub async fn schema_versions(&self) -> Result<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Closes the file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A page of the live blobs of the database behind `pool`: the store's and a snapshot's.
async fn live_blobs_in(pool: &SqlitePool, page: Page<'_>) -> Result<Vec<BlobRecord>> {
    let rows: Vec<BlobRow> = sqlx::query_as(sql::LIVE_BLOBS)
        .bind(page.last.unwrap_or(""))
        .bind(i64::from(page.limit))
        .fetch_all(pool)
        .await?;
    collect(rows)
}

impl SqliteStore {
    /// The schema migrations this version of Wharf knows.
    pub fn known_schema_versions() -> Vec<i64> {
        sqlx::migrate!("./migrations/sqlite")
            .iter()
            .map(|m| m.version)
            .collect()
    }

    /// Forgets what a restored copy must not bring back: holds (a restored registry starts
    /// read-write), upload sessions (their bytes are not backed up), backup leases, and blobs
    /// that were being deleted. Returns how many rows of each went, for the report.
    pub async fn forget_transient_state(&self) -> Result<[u64; 4]> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut counts = [0; 4];
        let statements = [
            "DELETE FROM read_only_holds",
            "DELETE FROM upload_sessions",
            "DELETE FROM backup_leases",
            "DELETE FROM blobs WHERE state = 'deleting'",
        ];
        for (count, statement) in counts.iter_mut().zip(statements) {
            *count = sqlx::query(statement)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use wharf_core::digest::Algorithm;
    use wharf_gate::metrics::Metrics;
    use wharf_gate::{DrainSettings, WriteGate, WriteIntent};
    use wharf_metadata::{Descriptor, MetadataError};

    /// `PRAGMA synchronous` of the connection the next write takes: 2 is FULL, 1 NORMAL.
    async fn writer_synchronous(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writer)
            .await
            .unwrap()
    }

    async fn store() -> (tempfile::TempDir, Arc<SqliteStore>, WriteGate) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("m.db")).await.unwrap());
        let gate = WriteGate::open(
            Arc::clone(&store) as Arc<dyn MetadataStore>,
            DrainSettings::default(),
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap();
        (dir, store, gate)
    }

    fn session() -> UploadSession {
        UploadSession {
            id: UploadId::generate(),
            repository: "a/b".parse().unwrap(),
            client: "test".to_owned(),
            received: 0,
            hash_algorithm: Algorithm::Sha256,
            hash_state: vec![1, 2, 3],
            hashed: 0,
            created_at: 1,
            updated_at: 1,
            storage_state: String::new(),
        }
    }

    /// A write that fails because the database is full reports that, and leaves the writer
    /// able to write once there is room again, without reopening the store. (SQLite's page limit
    /// stands in for a full disk: it fails a write with the same `SQLITE_FULL`, and SQLite rolls
    /// the transaction back itself, as it does on a full disk; `wharf`'s crash tests fill a
    /// real one.)
    #[tokio::test]
    async fn a_write_failing_on_a_full_database_leaves_the_writer_usable() {
        let (_dir, store, gate) = store().await;
        let permit = gate
            .admit(WriteIntent::Housekeeping { job: "test" })
            .await
            .unwrap();
        let content: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
        let large = NewManifest {
            digest: Digest::sha256_of(&content),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            content,
            blobs: Vec::new(),
            manifests: Vec::new(),
            artifact_type: None,
            subject: None,
            annotations: None,
            tags: vec!["big".parse().unwrap()],
            client: "test".to_owned(),
            sparse: false,
        };
        let repository: RepositoryName = "a/b".parse().unwrap();
        for _ in 0..3 {
            // The limit is the connection's: set on the writer each time, as a failed write
            // may leave the store on a fresh one.
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(&store.writer)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA max_page_count = {pages}"
            )))
            .execute(&store.writer)
            .await
            .unwrap();
            match store.put_manifest(&permit, &repository, &large).await {
                Err(MetadataError::StorageFull(full)) => {
                    assert!(full.to_string().contains("full"), "{full}");
                }
                other => panic!("expected the database to be full: {other:?}"),
            }
        }
        // Room again: the next writes succeed on the same store.
        sqlx::query("PRAGMA max_page_count = 1073741823")
            .execute(&store.writer)
            .await
            .unwrap();
        store
            .put_manifest(&permit, &repository, &large)
            .await
            .unwrap()
            .unwrap();
        store.open_upload(&permit, &session()).await.unwrap();
        assert!(
            store
                .manifest(&repository, &Reference::Tag("big".parse().unwrap()))
                .await
                .unwrap()
                .is_some()
        );
    }

    /// The API never deletes a manifest an index uses; a database edited by hand can, and the
    /// consistency check finds the index's dangling entry.
    #[tokio::test]
    async fn a_child_manifest_deleted_by_hand_is_a_dangling_reference() {
        let (_dir, store, gate) = store().await;
        let permit = gate
            .admit(WriteIntent::Housekeeping { job: "test" })
            .await
            .unwrap();
        let repository: RepositoryName = "a/b".parse().unwrap();
        let manifest = |content: &str, manifests: Vec<Descriptor>| NewManifest {
            digest: Digest::sha256_of(content.as_bytes()),
            media_type: "application/vnd.oci.image.index.v1+json".to_owned(),
            content: content.as_bytes().to_vec(),
            blobs: Vec::new(),
            manifests,
            artifact_type: None,
            subject: None,
            annotations: None,
            tags: Vec::new(),
            client: "test".to_owned(),
            sparse: false,
        };
        let child = manifest(r#"{"child":1}"#, Vec::new());
        let parent = manifest(
            r#"{"parent":1}"#,
            vec![Descriptor {
                digest: child.digest.clone(),
                size: child.content.len() as u64,
            }],
        );
        for stored in [&child, &parent] {
            store
                .put_manifest(&permit, &repository, stored)
                .await
                .unwrap()
                .unwrap();
        }
        sqlx::query("DELETE FROM manifests WHERE digest = $1")
            .bind(child.digest.to_string())
            .execute(&store.writer)
            .await
            .unwrap();
        assert_eq!(
            store.dangling_references(100).await.unwrap(),
            [DanglingReference {
                repository,
                manifest: parent.digest.clone(),
                child: child.digest.clone(),
                child_is_blob: false,
            }]
        );
    }

    #[tokio::test]
    async fn an_unflushed_write_is_written_and_the_next_write_is_flushed() {
        let (_dir, store, gate) = store().await;
        let permit = gate
            .admit(WriteIntent::Housekeeping { job: "test" })
            .await
            .unwrap();
        assert_eq!(writer_synchronous(&store).await, 2);
        let session = session();
        store.open_upload(&permit, &session).await.unwrap();
        assert!(
            store
                .record_upload_progress(&permit, &session.id, 0, 10, 8, &[4, 5])
                .await
                .unwrap()
        );
        // A progress record that does not follow the last one writes nothing.
        assert!(
            !store
                .record_upload_progress(&permit, &session.id, 0, 20, 20, &[6])
                .await
                .unwrap()
        );
        let stored = store.upload(&session.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.received, stored.hashed, stored.hash_state),
            (10, 8, vec![4, 5])
        );
        assert_eq!(writer_synchronous(&store).await, 2);
    }

    /// A failing statement (here a second session with the same id) leaves the writer
    /// connection as flushing as it found it.
    #[tokio::test]
    async fn a_failed_unflushed_write_does_not_relax_the_next_write() {
        let (_dir, store, gate) = store().await;
        let permit = gate
            .admit(WriteIntent::Housekeeping { job: "test" })
            .await
            .unwrap();
        let session = session();
        store.open_upload(&permit, &session).await.unwrap();
        assert!(store.open_upload(&permit, &session).await.is_err());
        assert_eq!(writer_synchronous(&store).await, 2);
    }

    /// A write abandoned halfway (its request went away) must not hand a relaxed connection to
    /// the next write, which expects to be flushed.
    #[tokio::test]
    async fn an_abandoned_unflushed_write_does_not_relax_the_next_write() {
        let (_dir, store, _gate) = store().await;
        let mut writer = Unflushed {
            connection: store.writer.acquire().await.unwrap(),
            restored: false,
        };
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *writer.connection)
            .await
            .unwrap();
        drop(writer);
        assert_eq!(writer_synchronous(&store).await, 2);
    }
}
