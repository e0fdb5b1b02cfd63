//! The metadata store on PostgreSQL: one database shared by every replica of a registry, through
//! a pool of connections (sizes and timeouts in [`PostgresOptions`]).
//!
//! The SQL is the SQLite store's, from [`wharf_metadata::sql`]; this crate keeps its own only
//! where the dialects differ (a listing's names joined with `string_agg`, `FOR UPDATE`). Where
//! SQLite relies on its one writer — a transaction that checks something and then writes on the
//! strength of it — this store takes an advisory lock first ([`locks`]), so the same checks
//! hold with writes running concurrently on several replicas.
//!
//! When the database cannot be reached, a query waits at most the pool's acquire timeout for a
//! connection, and a statement runs at most the statement timeout; then it fails as
//! [`MetadataError::Unavailable`], which the registry answers with `503`. The pool pings a
//! connection before lending it, so connections broken by a restart of the server are replaced
//! and the store recovers by itself when the database is back.
//!
//! # Layout
//!
//! - [`options`]: the URL, password, pool size and timeouts, and redacting the password.
//! - [`locks`]: the advisory locks, and why each exists.
//! - `notifications`: LISTEN/NOTIFY, so that every replica hears of a hold change at once.
//! - `accounts`: the [`AccountStore`](wharf_metadata::AccountStore) part.
//! - `transfer`: backups of the database (one consistent read of its rows) and restores into
//!   an empty one.
//! - `testing` (feature `testing`): a fresh database per test on the test server.

mod accounts;
mod browse;
pub mod locks;
mod notifications;
pub mod options;
#[cfg(feature = "testing")]
pub mod testing;
mod transfer;

pub use transfer::Import;

use std::path::Path;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

pub use options::PostgresOptions;
use wharf_core::digest::Digest;
use wharf_core::placement::StorageKey;
use wharf_core::reference::{Reference, RepositoryName, Tag};
use wharf_core::time::{Millis, now_millis};
use wharf_core::upload_id::UploadId;
use wharf_gate::store::{GateStore, PushActivity, Result as GateResult, StoreError};
use wharf_gate::{ControlWrite, Hold, HoldName, Mode, ModeEvent, ReplicaState, WritePermit};
use wharf_metadata::connections::{commit, leaves_no_transaction};
use wharf_metadata::rows::{
    BlobRow, DanglingRow, EventRow, HoldRow, LeaseRow, ManifestRow, PushRow, ReferrerRow,
    ReplicaRow, StoredManifestRow, UploadRow, collect, encode_pushes, event_for, parse,
    size_mismatch, to_i64, to_u64,
};
use wharf_metadata::{
    BackupLease, BlobRecord, BlobUnlink, DanglingReference, JobRun, ManifestDeletion,
    ManifestRecord, ManifestRejection, MetadataError, MetadataStore, Names, NewManifest, Page,
    Referrer, Result, Snapshot, StoredManifest, UploadCompletion, UploadSession, sql,
};

// A page of a listing is one row, its names joined with newlines (`string_agg` where SQLite has
// `group_concat`): one message from the server instead of one per name. As on SQLite the
// aggregate has no ORDER BY of its own (PostgreSQL 15 would sort its input again, though the
// subquery's order is the index's); `Names::from_joined` checks the order.

/// A page of a repository's tags, and whether it exists, in one row.
const TAGS: &str = "SELECT r.id, (SELECT string_agg(page.name, E'\\n') FROM (
         SELECT t.name FROM tags t WHERE t.repository_id = r.id AND t.name > $2
         ORDER BY t.name LIMIT $3) page)
     FROM repositories r WHERE r.name = $1";

/// A page of the repositories that hold a manifest, as one string.
const REPOSITORIES: &str = "SELECT string_agg(page.name, E'\\n') FROM (
         SELECT name FROM repositories r
         WHERE name > $1 AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
         ORDER BY name LIMIT $2) page";

/// The repository of session `$1` if it holds `$2` bytes and is open, locked until the
/// transaction ends: a second request completing the same session waits, then finds it
/// completed.
const UPLOAD_TO_COMPLETE: &str = "SELECT repository FROM upload_sessions
     WHERE id = $1 AND received = $2 AND completed_at IS NULL
     FOR UPDATE";

/// The PostgreSQL metadata store.
pub struct PostgresStore {
    pool: PgPool,
    /// How to connect, for the connection that listens for hold changes.
    connect: sqlx::postgres::PgConnectOptions,
    /// How long to wait for a connection.
    acquire_timeout: std::time::Duration,
}

impl PostgresStore {
    /// Connects to the database, checks it answers, and brings its schema up to date (several
    /// replicas starting at once apply the migrations once: sqlx takes a lock for it).
    pub async fn connect(options: &PostgresOptions) -> Result<Self> {
        if options.max_connections == 0 {
            return Err(MetadataError::Settings(
                "the pool needs at least one connection".to_owned(),
            ));
        }
        let connect = options.connect_options()?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // Kept on (the default): a connection broken while idle (the server restarted) is
            // found and replaced before a query meets it; the ping is one round trip.
            .test_before_acquire(true)
            .after_release(|connection, _| Box::pin(leaves_no_transaction(connection)))
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(PostgresStore {
            pool,
            connect,
            acquire_timeout: options.acquire_timeout,
        })
    }

    /// The schema migrations this version of Wharf knows.
    pub fn known_schema_versions() -> Vec<i64> {
        sqlx::migrate!("./migrations")
            .iter()
            .map(|m| m.version)
            .collect()
    }

    /// Starts a write transaction. This is a commit point: the permit is re-checked, so a write
    /// cancelled meanwhile stops here.
    async fn write(&self, permit: &WritePermit) -> Result<Transaction<'static, Postgres>> {
        permit.check()?;
        Ok(self.pool.begin().await?)
    }

    /// Starts a write transaction holding the advisory lock(s) of `lock`, bound to `key`.
    async fn write_locked(
        &self,
        permit: &WritePermit,
        lock: &'static str,
        key: Option<&str>,
    ) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.write(permit).await?;
        take_lock(&mut tx, lock, key).await?;
        Ok(tx)
    }

    /// Runs one statement as a write of its own (PostgreSQL commits it by itself); returns the
    /// rows affected. The statement is the commit point, so the permit is re-checked just before.
    async fn execute(
        &self,
        permit: &WritePermit,
        statement: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64> {
        permit.check()?;
        Ok(statement.execute(&self.pool).await?.rows_affected())
    }

    /// Runs one statement as a write of its own holding the advisory lock `lock` (without a key).
    async fn execute_locked(
        &self,
        permit: &WritePermit,
        lock: &'static str,
        statement: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64> {
        let mut tx = self.write_locked(permit, lock, None).await?;
        let rows = statement.execute(&mut *tx).await?.rows_affected();
        commit(tx, permit).await?;
        Ok(rows)
    }

    /// Starts a write transaction of the control plane (holds, audit trail), which the write
    /// gate allows even while read-only.
    async fn control_write(
        &self,
        _control: &ControlWrite,
    ) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// Takes the advisory lock(s) `lock` (one of [`locks`]) inside `tx`, bound to `key` if it has one.
async fn take_lock(tx: &mut PgConnection, lock: &'static str, key: Option<&str>) -> Result<()> {
    let statement = sqlx::query(lock);
    match key {
        Some(key) => statement.bind(key).execute(tx).await?,
        None => statement.execute(tx).await?,
    };
    Ok(())
}

/// Counts a change of the holds inside `tx` (see [`GateStore::holds_version`]) and notifies
/// every replica listening, when the transaction commits.
async fn count_hold_change(tx: &mut PgConnection) -> Result<()> {
    let version: i64 = sqlx::query_scalar(sql::COUNT_HOLD_CHANGE)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(notifications::NOTIFY)
        .bind(version.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

/// Appends an event to the audit trail inside `tx`.
async fn insert_event(tx: &mut PgConnection, event: &ModeEvent) -> Result<()> {
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
        .execute(tx)
        .await?;
    Ok(())
}

/// Returns the id of the repository `name`, creating it if needed, inside `tx`.
async fn repository_id(tx: &mut PgConnection, name: &RepositoryName) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(sql::REPOSITORY_ID)
        .bind(name.as_str())
        .bind(now_millis())
        .fetch_one(tx)
        .await?;
    Ok(id)
}

async fn link_blob(tx: &mut PgConnection, repository_id: i64, digest: &Digest) -> Result<()> {
    sqlx::query(sql::LINK_BLOB)
        .bind(repository_id)
        .bind(digest.to_string())
        .bind(now_millis())
        .execute(tx)
        .await?;
    Ok(())
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query(sql::PING).execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn blob_in_repository(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        let row: Option<BlobRow> = sqlx::query_as(sql::BLOB_IN_REPOSITORY)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(BlobRecord::try_from).transpose()
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let row: Option<UploadRow> = sqlx::query_as(sql::UPLOAD)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(UploadSession::try_from).transpose()
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let (query, key) = match reference {
            Reference::Tag(tag) => (sql::MANIFEST_BY_TAG, tag.as_str().to_owned()),
            Reference::Digest(digest) => (sql::MANIFEST_BY_DIGEST, digest.to_string()),
        };
        let row: Option<ManifestRow> = sqlx::query_as(query)
            .bind(repository.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(ManifestRecord::try_from).transpose()
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        Ok(sqlx::query_scalar(sql::REPOSITORY_EXISTS)
            .bind(repository.as_str())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn tags(&self, repository: &RepositoryName, page: Page<'_>) -> Result<Option<Names>> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(TAGS)
            .bind(repository.as_str())
            .bind(page.last.unwrap_or(""))
            .bind(i64::from(page.limit))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(_, names)| Names::from_joined(names)))
    }

    async fn repositories(&self, page: Page<'_>) -> Result<Names> {
        let names: Option<String> = sqlx::query_scalar(REPOSITORIES)
            .bind(page.last.unwrap_or(""))
            .bind(i64::from(page.limit))
            .fetch_one(&self.pool)
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
            .fetch_all(&self.pool)
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
            .fetch_all(&self.pool)
            .await?;
        collect(rows)
    }

    async fn open_upload(&self, permit: &WritePermit, session: &UploadSession) -> Result<()> {
        self.execute(
            permit,
            sqlx::query(sql::OPEN_UPLOAD)
                .bind(session.id.as_str())
                .bind(session.repository.as_str())
                .bind(&session.client)
                .bind(session.hash_algorithm.name())
                .bind(&session.hash_state)
                .bind(to_i64(session.hashed))
                .bind(to_i64(session.received))
                .bind(session.created_at)
                .bind(session.updated_at)
                .bind(&session.storage_state),
        )
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
        // One statement: its `received = $2` is re-checked on the row it updates, so of two
        // writers advancing the session from the same length, one advances it.
        let updated = self
            .execute(
                permit,
                sqlx::query(sql::RECORD_UPLOAD_PROGRESS)
                    .bind(id.as_str())
                    .bind(to_i64(expected))
                    .bind(to_i64(received))
                    .bind(to_i64(hashed))
                    .bind(hash_state)
                    .bind(now_millis()),
            )
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
        // As `record_upload_progress`: one statement, re-checked on the row it updates.
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
        let digest_text = digest.to_string();
        let mut tx = self
            .write_locked(permit, locks::BLOBS_SHARED_AND_DIGEST, Some(&digest_text))
            .await?;
        let repository: Option<String> = sqlx::query_scalar(UPLOAD_TO_COMPLETE)
            .bind(id.as_str())
            .bind(to_i64(expected))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(repository) = repository else {
            return Ok(UploadCompletion::SessionGone);
        };
        let repository: RepositoryName = parse(&repository, "repository name")?;

        let existing: Option<BlobRow> = sqlx::query_as(sql::LIVE_BLOB)
            .bind(&digest_text)
            .fetch_optional(&mut *tx)
            .await?;
        let (blob, reused_existing) = match (existing, new_key) {
            (Some(row), _) => (BlobRecord::try_from(row)?, true),
            (None, None) => return Ok(UploadCompletion::ContentNeeded),
            (None, Some(key)) => {
                sqlx::query(sql::PUT_BLOB)
                    .bind(&digest_text)
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
        let deleted = self
            .execute(permit, sqlx::query(sql::DELETE_UPLOAD).bind(id.as_str()))
            .await?;
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
        let mut tx = self.write_locked(permit, locks::BLOBS_SHARED, None).await?;
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
        sqlx::query(sql::RECORD_MOUNT)
            .bind(UploadId::generate().as_str())
            .bind(repository.as_str())
            .bind(client)
            .bind(Vec::<u8>::new())
            .bind(to_i64(blob.size))
            .bind(now_millis())
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
        let mut tx = self
            .write_locked(permit, locks::REPOSITORY, Some(repository.as_str()))
            .await?;
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
        let mut tx = self
            .write_locked(
                permit,
                locks::BLOBS_SHARED_AND_REPOSITORY,
                Some(repository.as_str()),
            )
            .await?;
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
        let digest = manifest.digest.to_string();
        sqlx::query(sql::PUT_MANIFEST)
            .bind(repository_id)
            .bind(&digest)
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
                .bind(&digest)
                .bind(kind)
                .bind(child.digest.to_string())
                .execute(&mut *tx)
                .await?;
        }
        for tag in &manifest.tags {
            sqlx::query(sql::PUT_TAG)
                .bind(repository_id)
                .bind(tag.as_str())
                .bind(&digest)
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
        // Under the repository's lock: an index put meanwhile either committed first, and this
        // finds it, or waits, then finds its child gone and is refused.
        let mut tx = self
            .write_locked(permit, locks::REPOSITORY, Some(repository.as_str()))
            .await?;
        let parent: Option<String> = sqlx::query_scalar(sql::MANIFEST_PARENT)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(parent) = parent {
            return Ok(ManifestDeletion::InUse(parse(&parent, "digest")?));
        }
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

    async fn claim_upload(
        &self,
        permit: &WritePermit,
        id: &UploadId,
        writer: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let statement = sqlx::query(sql::CLAIM_UPLOAD)
            .bind(id.as_str())
            .bind(writer)
            .bind(until)
            .bind(now);
        Ok(self.execute(permit, statement).await? == 1)
    }

    async fn renew_upload_claim(&self, id: &UploadId, writer: &str, until: Millis) -> Result<bool> {
        let renewed = sqlx::query(sql::RENEW_UPLOAD_CLAIM)
            .bind(id.as_str())
            .bind(writer)
            .bind(until)
            .execute(&self.pool)
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn release_upload_claim(&self, id: &UploadId, writer: &str) -> Result<()> {
        sqlx::query(sql::RELEASE_UPLOAD_CLAIM)
            .bind(id.as_str())
            .bind(writer)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn snapshot(&self, _path: &Path) -> Result<Snapshot> {
        Ok(Snapshot::Begun(self.begin_export().await?))
    }

    async fn claim_job_lease(
        &self,
        control: &ControlWrite,
        name: &str,
        holder: &str,
        until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let _ = control;
        // One statement, committed by itself (see `put_replica_in_db`).
        let claimed = sqlx::query(sql::CLAIM_JOB_LEASE)
            .bind(name)
            .bind(holder)
            .bind(until)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(claimed == 1)
    }

    async fn release_job_lease(
        &self,
        control: &ControlWrite,
        name: &str,
        holder: &str,
    ) -> Result<()> {
        let _ = control;
        sqlx::query(sql::RELEASE_JOB_LEASE)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_job_run(&self, control: &ControlWrite, run: &JobRun) -> Result<()> {
        let _ = control;
        // One statement, committed by itself (see `put_replica_in_db`).
        sqlx::query(sql::RECORD_JOB_RUN)
            .bind(&run.name)
            .bind(&run.replica)
            .bind(run.finished_at)
            .bind(&run.outcome)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn last_job_run(&self, name: &str) -> Result<Option<JobRun>> {
        Ok(sqlx::query_as(sql::LAST_JOB_RUN)
            .bind(name)
            .fetch_optional(&self.pool)
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
        _control: &ControlWrite,
        id: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<bool> {
        let renewed = sqlx::query(sql::RENEW_BACKUP_LEASE)
            .bind(id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(renewed == 1)
    }

    async fn delete_backup_lease(&self, _control: &ControlWrite, id: &str) -> Result<bool> {
        let deleted = sqlx::query(sql::DELETE_BACKUP_LEASE)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }

    async fn backup_leases(&self) -> Result<Vec<BackupLease>> {
        let rows: Vec<LeaseRow> = sqlx::query_as(sql::BACKUP_LEASES)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(BackupLease::from).collect())
    }

    async fn live_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row: Option<BlobRow> = sqlx::query_as(sql::LIVE_BLOB)
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(BlobRecord::try_from).transpose()
    }

    async fn idle_uploads(&self, idle_since: Millis, limit: u32) -> Result<Vec<UploadSession>> {
        let rows: Vec<UploadRow> = sqlx::query_as(sql::IDLE_UPLOADS)
            .bind(idle_since)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        sqlx::query(sql::FORGET_PUSH_MANIFESTS)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(deleted)
    }

    async fn prune_blob_links(&self, permit: &WritePermit, before: Millis) -> Result<u64> {
        // Exclusive: no manifest being put can be about to refer to a link this removes.
        let mut tx = self
            .write_locked(permit, locks::BLOBS_EXCLUSIVE, None)
            .await?;
        let deleted = sqlx::query(sql::PRUNE_BLOB_LINKS)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit(tx, permit).await?;
        Ok(deleted)
    }

    async fn claim_unreferenced_blobs(
        &self,
        permit: &WritePermit,
        before: Millis,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<BlobRecord>> {
        // Exclusive: no manifest, upload or mount about to use one of these blobs is under way.
        let mut tx = self
            .write_locked(permit, locks::BLOBS_EXCLUSIVE, None)
            .await?;
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
            .fetch_all(&self.pool)
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
            .fetch_one(&self.pool)
            .await?)
    }

    async fn live_blobs(&self, page: Page<'_>) -> Result<Vec<BlobRecord>> {
        let rows: Vec<BlobRow> = sqlx::query_as(sql::LIVE_BLOBS)
            .bind(page.last.unwrap_or(""))
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await?;
        collect(rows)
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
            .fetch_all(&self.pool)
            .await?;
        collect(rows)
    }

    async fn dangling_references(&self, limit: u32) -> Result<Vec<DanglingReference>> {
        let rows: Vec<DanglingRow> = sqlx::query_as(sql::DANGLING_REFERENCES)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        collect(rows)
    }

    async fn dangling_tags(&self, limit: u32) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(sql::DANGLING_TAGS)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn browse_repositories(
        &self,
        query: &wharf_metadata::browse::RepositoryQuery<'_>,
    ) -> Result<Vec<wharf_metadata::browse::RepositorySummary>> {
        browse::repositories(&self.pool, query).await
    }

    async fn browse_tags(
        &self,
        repository: &RepositoryName,
        page: Page<'_>,
    ) -> Result<Option<Vec<wharf_metadata::browse::TagSummary>>> {
        browse::tags(&self.pool, repository, page).await
    }
}

/// The gate's state (holds, the audit trail, what a drain waits for), as the gate asks for it.
#[async_trait]
impl GateStore for PostgresStore {
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

    async fn record_mode_event(
        &self,
        _control: &ControlWrite,
        event: &ModeEvent,
    ) -> GateResult<()> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|e| StoreError::new(MetadataError::from(e)))?;
        insert_event(&mut connection, event)
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

    fn shared_by_replicas(&self) -> bool {
        true
    }

    async fn holds_version(&self) -> GateResult<u64> {
        self.holds_version_in_db().await.map_err(StoreError::new)
    }

    async fn put_replica(&self, control: &ControlWrite, state: &ReplicaState) -> GateResult<()> {
        self.put_replica_in_db(control, state)
            .await
            .map_err(StoreError::new)
    }

    async fn delete_replica(
        &self,
        control: &ControlWrite,
        name: &str,
        forget_before: Millis,
    ) -> GateResult<bool> {
        self.delete_replica_in_db(control, name, forget_before)
            .await
            .map_err(StoreError::new)
    }

    async fn replicas(&self) -> GateResult<Vec<ReplicaState>> {
        self.replicas_in_db().await.map_err(StoreError::new)
    }

    async fn follow_hold_changes(
        &self,
        replica: &str,
        changed: &(dyn Fn() + Send + Sync),
        stop: CancellationToken,
    ) {
        notifications::follow(self, replica, changed, stop).await;
    }
}

impl PostgresStore {
    async fn holds_in_db(&self) -> Result<Vec<Hold>> {
        let rows: Vec<HoldRow> = sqlx::query_as(sql::HOLDS).fetch_all(&self.pool).await?;
        collect(rows)
    }

    async fn put_hold_in_db(
        &self,
        control: &ControlWrite,
        hold: &Hold,
        event: &ModeEvent,
    ) -> Result<(Hold, bool)> {
        let mut tx = self.control_write(control).await?;
        take_lock(&mut tx, locks::HOLDS, None).await?;
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
            .fetch_one(&self.pool)
            .await?;
        // Most evaluations find nothing expired: they need no write transaction.
        if !expired {
            return Ok(Vec::new());
        }
        let mut tx = self.control_write(control).await?;
        // Of two replicas deleting the same expired hold, the second's DELETE waits for the
        // first and then finds nothing: each expiry is recorded once.
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

    async fn mode_events_in_db(&self, limit: u32) -> Result<Vec<ModeEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(sql::MODE_EVENTS)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        collect(rows)
    }

    async fn holds_version_in_db(&self) -> Result<u64> {
        let version: i64 = sqlx::query_scalar(sql::HOLDS_VERSION)
            .fetch_one(&self.pool)
            .await?;
        to_u64(version)
    }

    async fn put_replica_in_db(&self, _control: &ControlWrite, state: &ReplicaState) -> Result<()> {
        // One statement, committed by itself: no transaction is left open (holding its locks)
        // while this process waits between statements.
        sqlx::query(sql::PUT_REPLICA)
            .bind(&state.name)
            .bind(&state.address)
            .bind(state.mode.as_str())
            .bind(state.since)
            .bind(state.drain_cutoff)
            .bind(to_i64(state.writes_in_flight))
            .bind(encode_pushes(&state.pushes_running))
            .bind(to_i64(state.holds_applied))
            .bind(state.started_at)
            .bind(state.last_seen)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_replica_in_db(
        &self,
        _control: &ControlWrite,
        name: &str,
        forget_before: Millis,
    ) -> Result<bool> {
        // Statements committed by themselves (see `put_replica_in_db`); forgetting old rows
        // needs no atomicity with the removal.
        let deleted = sqlx::query(sql::DELETE_REPLICA)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query(sql::FORGET_LOST_REPLICAS)
            .bind(forget_before)
            .execute(&self.pool)
            .await?;
        Ok(deleted > 0)
    }

    async fn replicas_in_db(&self) -> Result<Vec<ReplicaState>> {
        let rows: Vec<ReplicaRow> = sqlx::query_as(sql::REPLICAS).fetch_all(&self.pool).await?;
        collect(rows)
    }

    async fn open_upload_count_in_db(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(sql::OPEN_UPLOAD_COUNT)
            .fetch_one(&self.pool)
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
            .fetch_all(&self.pool)
            .await?;
        collect(rows)
    }
}
