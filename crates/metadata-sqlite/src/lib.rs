//! The metadata store on SQLite: a single file, in WAL mode, with one writer connection (writes
//! are serialised in process, and `BEGIN IMMEDIATE` serialises them with other processes such as
//! `wharf gc`) and a pool of readers that never wait for the writer.
//!
//! The SQL is kept portable (`$n` placeholders, `ON CONFLICT`, `RETURNING`, row values) so the
//! PostgreSQL store can share it.

mod accounts;
mod stable_plans;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use wharf_core::digest::{Algorithm, Digest};
use wharf_core::placement::StorageKey;
use wharf_core::reference::{Reference, RepositoryName, Tag};
use wharf_core::time::{Millis, now_millis};
use wharf_core::upload_id::UploadId;
use wharf_gate::store::{GateStore, PushActivity, Result as GateResult, StoreError};
use wharf_gate::{ControlWrite, EventKind, Hold, HoldName, Mode, ModeEvent, WritePermit};
use wharf_metadata::{
    BackupLease, BlobRecord, BlobUnlink, DanglingReference, Descriptor, ManifestDeletion,
    ManifestRecord, ManifestRejection, MetadataError, MetadataStore, Names, NewManifest, Page,
    Referrer, Result, StoredManifest, UploadCompletion, UploadSession,
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

/// Whether the writer connection, given back to its pool, is outside any transaction; if not, the
/// pool closes it and opens a fresh one for the next write.
///
/// A transaction dropped without a commit is rolled back by a `ROLLBACK` sqlx queues on the
/// connection. When SQLite has already rolled the transaction back itself — as it does when a
/// commit or statement fails because the disk is full — that `ROLLBACK` fails, and sqlx still
/// counts the connection as inside a transaction, refusing every `BEGIN` after: the one writer
/// would refuse every write until a restart. A committed transaction costs one atomic read
/// here; only one that was dropped waits for its queued rollback (the ping runs after it).
async fn leaves_no_transaction(connection: &mut sqlx::SqliteConnection) -> sqlx::Result<bool> {
    use sqlx::Connection;
    if connection.is_in_transaction() {
        connection.ping().await?;
    }
    let clean = !connection.is_in_transaction();
    if !clean {
        tracing::warn!(
            "discarding the metadata writer connection left inside a failed transaction"
        );
    }
    Ok(clean)
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

/// Commits a write transaction at its commit point: the permit is checked once more, so a write
/// cancelled while it waited for the database (or ran) stops here, with nothing visible.
async fn commit(tx: Transaction<'static, Sqlite>, permit: &WritePermit) -> Result<()> {
    permit.check()?;
    tx.commit().await?;
    Ok(())
}

// ---- Row types and their decoding ----

fn corrupt(what: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(what.to_string())
}

fn parse<T: FromStr>(value: &str, what: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| corrupt(format!("{what} {value:?}")))
}

/// The rejection of a descriptor whose declared size is not its content's stored `size`.
fn size_mismatch(declared: &Descriptor, size: i64) -> Result<Option<ManifestRejection>> {
    let actual = to_u64(size)?;
    Ok(
        (actual != declared.size).then(|| ManifestRejection::SizeMismatch {
            digest: declared.digest.clone(),
            declared: declared.size,
            actual,
        }),
    )
}

// LISTING: a page of a listing is one row, its names joined with newlines by the query. sqlx
// hands rows from SQLite's thread to ours one at a time through a channel, and for a page of a
// thousand names those hand-offs (a thread wake-up each) cost far more than the query. The
// aggregate has no ORDER BY of its own: the subquery's order is the index's, and sorting again
// in the aggregate costs a temporary table per query; `Names::from_joined` checks the order.

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(format!("negative size {n}")))
}

#[derive(sqlx::FromRow)]
struct BlobRow {
    digest: String,
    size: i64,
    storage_key: String,
}

impl TryFrom<BlobRow> for BlobRecord {
    type Error = MetadataError;
    fn try_from(row: BlobRow) -> Result<Self> {
        Ok(BlobRecord {
            digest: parse(&row.digest, "digest")?,
            size: to_u64(row.size)?,
            storage_key: StorageKey::from_stored(row.storage_key).map_err(corrupt)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct UploadRow {
    id: String,
    repository: String,
    client: String,
    hash_algorithm: String,
    hash_state: Vec<u8>,
    hashed: i64,
    received: i64,
    created_at: i64,
    updated_at: i64,
    storage_state: String,
}

impl TryFrom<UploadRow> for UploadSession {
    type Error = MetadataError;
    fn try_from(row: UploadRow) -> Result<Self> {
        let hash_algorithm = match row.hash_algorithm.as_str() {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(corrupt(format!("hash algorithm {other:?}"))),
        };
        Ok(UploadSession {
            id: parse(&row.id, "upload id")?,
            repository: parse(&row.repository, "repository name")?,
            client: row.client,
            received: to_u64(row.received)?,
            hash_algorithm,
            hash_state: row.hash_state,
            hashed: to_u64(row.hashed)?,
            created_at: row.created_at,
            updated_at: row.updated_at,
            storage_state: row.storage_state,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ManifestRow {
    digest: String,
    media_type: String,
    content: Vec<u8>,
}

impl TryFrom<ManifestRow> for ManifestRecord {
    type Error = MetadataError;
    fn try_from(row: ManifestRow) -> Result<Self> {
        Ok(ManifestRecord {
            digest: parse(&row.digest, "digest")?,
            media_type: row.media_type,
            content: row.content,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReferrerRow {
    digest: String,
    media_type: String,
    size: i64,
    artifact_type: Option<String>,
    annotations: Option<String>,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    name: String,
    reason: String,
    set_by: String,
    source: String,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
}

impl TryFrom<HoldRow> for Hold {
    type Error = MetadataError;
    fn try_from(row: HoldRow) -> Result<Self> {
        Ok(Hold {
            name: parse(&row.name, "hold name")?,
            reason: row.reason,
            set_by: row.set_by,
            source: row.source.parse().map_err(corrupt)?,
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
        })
    }
}

const HOLD_COLUMNS: &str = "name, reason, set_by, source, created_at, updated_at, expires_at";

#[derive(sqlx::FromRow)]
struct PushRow {
    repository: String,
    client: String,
    open_uploads: i64,
    last_upload: Option<i64>,
    put_at: Option<i64>,
    tagged_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    at: i64,
    kind: String,
    hold: Option<String>,
    actor: String,
    source: String,
    reason: String,
    replica: String,
    from_state: Option<String>,
    to_state: Option<String>,
    drain_ms: Option<i64>,
    pushes_completed: Option<i64>,
    pushes_cut_off: Option<i64>,
    cancelled_writes: Option<i64>,
    abandoned_uploads: Option<i64>,
}

fn parse_mode(mode: Option<String>) -> Result<Option<Mode>> {
    mode.map(|m| match m.as_str() {
        "read-write" => Ok(Mode::ReadWrite),
        "draining" => Ok(Mode::Draining),
        "read-only" => Ok(Mode::ReadOnly),
        other => Err(corrupt(format!("mode {other:?}"))),
    })
    .transpose()
}

fn optional_count(n: Option<i64>) -> Result<Option<u64>> {
    n.map(to_u64).transpose()
}

impl TryFrom<EventRow> for ModeEvent {
    type Error = MetadataError;
    fn try_from(row: EventRow) -> Result<Self> {
        let kind = match row.kind.as_str() {
            "hold-set" => EventKind::HoldSet,
            "hold-released" => EventKind::HoldReleased,
            "hold-expired" => EventKind::HoldExpired,
            "mode-changed" => EventKind::ModeChanged,
            other => return Err(corrupt(format!("event kind {other:?}"))),
        };
        Ok(ModeEvent {
            at: row.at,
            kind,
            hold: row.hold,
            actor: row.actor,
            source: row.source,
            reason: row.reason,
            replica: row.replica,
            from: parse_mode(row.from_state)?,
            to: parse_mode(row.to_state)?,
            drain_ms: optional_count(row.drain_ms)?,
            pushes_completed: optional_count(row.pushes_completed)?,
            pushes_cut_off: optional_count(row.pushes_cut_off)?,
            cancelled_writes: optional_count(row.cancelled_writes)?,
            abandoned_uploads: optional_count(row.abandoned_uploads)?,
        })
    }
}

const UPLOAD_COLUMNS: &str = "id, repository, client, hash_algorithm, hash_state, hashed, received, \
     created_at, updated_at, storage_state";

fn collect<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = MetadataError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// Appends an event to the audit trail inside `tx`.
async fn insert_event(tx: &mut Transaction<'static, Sqlite>, event: &ModeEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO mode_events (at, kind, hold, actor, source, reason, replica, from_state,
                                  to_state, drain_ms, pushes_completed, pushes_cut_off,
                                  cancelled_writes, abandoned_uploads)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
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

/// `event` about the hold `name` held for `reason`.
fn event_for(event: &ModeEvent, name: &str, reason: &str) -> ModeEvent {
    ModeEvent {
        hold: Some(name.to_owned()),
        reason: reason.to_owned(),
        ..event.clone()
    }
}

/// Returns the id of the repository `name`, creating it if needed, inside `tx`.
async fn repository_id(
    tx: &mut Transaction<'static, Sqlite>,
    name: &RepositoryName,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = excluded.name
         RETURNING id",
    )
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
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
         ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
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
        sqlx::query("SELECT 1").execute(&self.reader).await?;
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
        let row: Option<BlobRow> = sqlx::query_as(
            "SELECT b.digest, b.size, b.storage_key
             FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE r.name = $1 AND b.digest = $2 AND b.state = 'live'",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(BlobRecord::try_from).transpose()
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let row: Option<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM upload_sessions WHERE id = $1 AND completed_at IS NULL"
        )))
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
                sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.content
                     FROM tags t
                     JOIN repositories r ON r.id = t.repository_id
                     JOIN manifests m
                       ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
                     WHERE r.name = $1 AND t.name = $2",
                )
                .bind(repository.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.reader)
                .await?
            }
            Reference::Digest(digest) => {
                sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.content
                     FROM manifests m
                     JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = $1 AND m.digest = $2",
                )
                .bind(repository.as_str())
                .bind(digest.to_string())
                .fetch_optional(&self.reader)
                .await?
            }
        };
        row.map(ManifestRecord::try_from).transpose()
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM repositories WHERE name = $1)")
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
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE rb.digest = $1 AND b.state = 'live' AND r.name > $2
             ORDER BY r.name LIMIT $3",
        )
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
        let rows: Vec<ReferrerRow> = sqlx::query_as(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
             ORDER BY m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Referrer {
                    digest: parse(&row.digest, "digest")?,
                    media_type: row.media_type,
                    size: to_u64(row.size)?,
                    artifact_type: row.artifact_type,
                    annotations: row.annotations,
                })
            })
            .collect()
    }

    async fn open_upload(&self, permit: &WritePermit, session: &UploadSession) -> Result<()> {
        self.execute_unflushed(
            permit,
            "INSERT INTO upload_sessions
                 (id, repository, client, hash_algorithm, hash_state, hashed, received,
                  created_at, updated_at, storage_state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            |statement| {
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
            },
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
        let updated = self
            .execute_unflushed(
                permit,
                "UPDATE upload_sessions
                 SET received = $3, hashed = $4, hash_state = $5, updated_at = $6
                 WHERE id = $1 AND received = $2 AND completed_at IS NULL",
                |statement| {
                    statement
                        .bind(id.as_str())
                        .bind(to_i64(expected))
                        .bind(to_i64(received))
                        .bind(to_i64(hashed))
                        .bind(hash_state)
                        .bind(now_millis())
                },
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
        // Flushed, unlike the progress of a staged file: blob storage deletes the staged
        // object this replaces once it is recorded, so a record lost to a power cut would
        // name an object that is gone.
        let updated = self
            .execute(
                permit,
                sqlx::query(
                    "UPDATE upload_sessions
                     SET received = $3, hashed = $4, hash_state = $5, updated_at = $6,
                         storage_state = $7
                     WHERE id = $1 AND received = $2 AND completed_at IS NULL",
                )
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

        let existing: Option<BlobRow> = sqlx::query_as(
            "SELECT digest, size, storage_key FROM blobs WHERE digest = $1 AND state = 'live'",
        )
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let (blob, reused_existing) = match (existing, new_key) {
            (Some(row), _) => (BlobRecord::try_from(row)?, true),
            (None, None) => return Ok(UploadCompletion::ContentNeeded),
            (None, Some(key)) => {
                // Absent, or being deleted by the garbage collector: this placement takes over.
                sqlx::query(
                    "INSERT INTO blobs (digest, size, storage_key, state, created_at)
                     VALUES ($1, $2, $3, 'live', $4)
                     ON CONFLICT (digest) DO UPDATE SET
                         size = excluded.size, storage_key = excluded.storage_key,
                         state = 'live', created_at = excluded.created_at",
                )
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
        sqlx::query(
            "UPDATE upload_sessions SET completed_at = $2, updated_at = $2, received = $3 WHERE id = $1",
        )
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
        let deleted =
            sqlx::query("DELETE FROM upload_sessions WHERE id = $1 AND completed_at IS NULL")
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
        let row: Option<BlobRow> = sqlx::query_as(
            "SELECT b.digest, b.size, b.storage_key FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE b.digest = $1 AND b.state = 'live' AND r.name = $2",
        )
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
        sqlx::query(
            "INSERT INTO upload_sessions (id, repository, client, hash_algorithm, hash_state,
                                          received, created_at, updated_at, completed_at)
             VALUES ($1, $2, $3, 'sha256', $4, $5, $6, $6, $6)",
        )
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
        let in_use: bool = sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
                 WHERE r.name = $1 AND mr.child_kind = 'blob' AND mr.child_digest = $2)",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if in_use {
            return Ok(BlobUnlink::InUse);
        }
        let deleted = sqlx::query(
            "DELETE FROM repository_blobs
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
        )
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
            let size: Option<i64> = sqlx::query_scalar(
                "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                 WHERE rb.repository_id = $1 AND rb.digest = $2 AND b.state = 'live'",
            )
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
            let size: Option<i64> = sqlx::query_scalar(
                "SELECT size FROM manifests WHERE repository_id = $1 AND digest = $2",
            )
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
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, size, content,
                                    artifact_type, subject, annotations, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
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
            sqlx::query(
                "INSERT INTO manifest_references
                     (repository_id, manifest_digest, child_kind, child_digest)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(repository_id)
            .bind(manifest.digest.to_string())
            .bind(kind)
            .bind(child.digest.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for tag in &manifest.tags {
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository_id, name) DO UPDATE SET
                     manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
            )
            .bind(repository_id)
            .bind(tag.as_str())
            .bind(manifest.digest.to_string())
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        }
        // The push this manifest belongs to: a drain reads it to tell when the push is complete.
        let now = now_millis();
        sqlx::query(
            "INSERT INTO push_manifests (repository, client, put_at, tagged_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (repository, client) DO UPDATE SET
                 put_at = excluded.put_at,
                 tagged_at = COALESCE(excluded.tagged_at, push_manifests.tagged_at)",
        )
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
        let parent: Option<String> = sqlx::query_scalar(
            "SELECT manifest_digest FROM manifest_references
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
               AND child_kind = 'manifest' AND child_digest = $2
             ORDER BY manifest_digest LIMIT 1",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(parent) = parent {
            return Ok(ManifestDeletion::InUse(parse(&parent, "digest")?));
        }
        // Tags and references go with it (ON DELETE CASCADE).
        let deleted = sqlx::query(
            "DELETE FROM manifests
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
        )
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
                sqlx::query(
                    "DELETE FROM tags
                     WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2",
                )
                .bind(repository.as_str())
                .bind(tag.as_str()),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn snapshot(&self, path: &Path) -> Result<()> {
        let path = path
            .to_str()
            .ok_or_else(|| corrupt(format!("snapshot path {} is not UTF-8", path.display())))?;
        // VACUUM INTO reads in one transaction: a consistent copy, compacted, while others read.
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.reader)
            .await?;
        Ok(())
    }

    async fn put_backup_lease(&self, control: &ControlWrite, lease: &BackupLease) -> Result<()> {
        let mut tx = self.control_write(control).await?;
        sqlx::query(
            "INSERT INTO backup_leases (id, snapshot_at, created_at, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET snapshot_at = excluded.snapshot_at, expires_at = excluded.expires_at",
        )
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
        let renewed = sqlx::query(
            "UPDATE backup_leases SET expires_at = $3 WHERE id = $1 AND expires_at > $2",
        )
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
        let deleted = sqlx::query("DELETE FROM backup_leases WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    async fn backup_leases(&self) -> Result<Vec<BackupLease>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: String,
            snapshot_at: i64,
            created_at: i64,
            expires_at: i64,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, snapshot_at, created_at, expires_at FROM backup_leases ORDER BY created_at",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| BackupLease {
                id: r.id,
                snapshot_at: r.snapshot_at,
                created_at: r.created_at,
                expires_at: r.expires_at,
            })
            .collect())
    }

    async fn live_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row: Option<BlobRow> = sqlx::query_as(
            "SELECT digest, size, storage_key FROM blobs WHERE digest = $1 AND state = 'live'",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(BlobRecord::try_from).transpose()
    }

    async fn idle_uploads(&self, idle_since: Millis, limit: u32) -> Result<Vec<UploadSession>> {
        let rows: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM upload_sessions
             WHERE completed_at IS NULL AND updated_at < $1
             ORDER BY updated_at LIMIT $2"
        )))
        .bind(idle_since)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        collect(rows)
    }

    async fn forget_completed_uploads(&self, permit: &WritePermit, before: Millis) -> Result<u64> {
        let mut tx = self.write(permit).await?;
        let deleted = sqlx::query(
            "DELETE FROM upload_sessions WHERE completed_at IS NOT NULL AND completed_at < $1",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The manifests' side of the same pushes: only a drain's pushes need them.
        sqlx::query("DELETE FROM push_manifests WHERE put_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(deleted)
    }

    async fn prune_blob_links(&self, permit: &WritePermit, before: Millis) -> Result<u64> {
        let deleted = self
            .execute(
                permit,
                sqlx::query(
                    "DELETE FROM repository_blobs
                     WHERE linked_at < $1 AND NOT EXISTS (
                     SELECT 1 FROM manifest_references mr
                     WHERE mr.repository_id = repository_blobs.repository_id
                     AND mr.child_kind = 'blob' AND mr.child_digest = repository_blobs.digest)",
                )
                .bind(before),
            )
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
        let rows: Vec<BlobRow> = sqlx::query_as(
            "UPDATE blobs SET state = 'deleting'
             WHERE digest IN (
                 SELECT b.digest FROM blobs b
                 WHERE b.state = 'live' AND b.created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
                   AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                                   WHERE mr.child_kind = 'blob' AND mr.child_digest = b.digest)
                   AND NOT EXISTS (SELECT 1 FROM backup_leases l
                                   WHERE l.expires_at > $3 AND b.created_at <= l.snapshot_at)
                 ORDER BY b.digest LIMIT $2)
             RETURNING digest, size, storage_key",
        )
        .bind(before)
        .bind(i64::from(limit))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        commit(tx, permit).await?;
        collect(rows)
    }

    async fn blobs_being_deleted(&self, limit: u32) -> Result<Vec<BlobRecord>> {
        let rows: Vec<BlobRow> = sqlx::query_as(
            "SELECT digest, size, storage_key FROM blobs WHERE state = 'deleting'
             ORDER BY digest LIMIT $1",
        )
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
            sqlx::query(
                "DELETE FROM blobs WHERE digest = $1 AND state = 'deleting' AND storage_key = $2",
            )
            .bind(digest.to_string())
            .bind(storage_key.as_str()),
        )
        .await?;
        Ok(())
    }

    async fn storage_key_in_use(&self, storage_key: &StorageKey) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM blobs WHERE storage_key = $1)")
                .bind(storage_key.as_str())
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn live_blobs(&self, page: Page<'_>) -> Result<Vec<BlobRecord>> {
        live_blobs_in(&self.reader, page).await
    }

    async fn stored_manifests(
        &self,
        last: Option<(&RepositoryName, &Digest)>,
        limit: u32,
    ) -> Result<Vec<StoredManifest>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            repository: String,
            digest: String,
            media_type: String,
            content: Vec<u8>,
        }
        let (last_repository, last_digest) = match last {
            Some((r, d)) => (r.as_str().to_owned(), d.to_string()),
            None => (String::new(), String::new()),
        };
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT r.name AS repository, m.digest, m.media_type, m.content
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE (r.name, m.digest) > ($1, $2)
             ORDER BY r.name, m.digest LIMIT $3",
        )
        .bind(last_repository)
        .bind(last_digest)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredManifest {
                    repository: parse(&row.repository, "repository name")?,
                    manifest: ManifestRecord::try_from(ManifestRow {
                        digest: row.digest,
                        media_type: row.media_type,
                        content: row.content,
                    })?,
                })
            })
            .collect()
    }

    async fn dangling_references(&self, limit: u32) -> Result<Vec<DanglingReference>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            repository: String,
            manifest_digest: String,
            child_kind: String,
            child_digest: String,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT r.name AS repository, mr.manifest_digest, mr.child_kind, mr.child_digest
             FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
             WHERE (mr.child_kind = 'blob' AND NOT EXISTS (
                        SELECT 1 FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                        WHERE rb.repository_id = mr.repository_id
                          AND rb.digest = mr.child_digest AND b.state = 'live'))
                OR (mr.child_kind = 'manifest' AND NOT EXISTS (
                        SELECT 1 FROM manifests m
                        WHERE m.repository_id = mr.repository_id AND m.digest = mr.child_digest))
             ORDER BY r.name, mr.manifest_digest, mr.child_digest LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(DanglingReference {
                    repository: parse(&row.repository, "repository name")?,
                    manifest: parse(&row.manifest_digest, "digest")?,
                    child: parse(&row.child_digest, "digest")?,
                    child_is_blob: row.child_kind == "blob",
                })
            })
            .collect()
    }

    async fn dangling_tags(&self, limit: u32) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT r.name, t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
             WHERE NOT EXISTS (SELECT 1 FROM manifests m
                               WHERE m.repository_id = t.repository_id AND m.digest = t.manifest_digest)
             ORDER BY r.name, t.name LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
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
}

impl SqliteStore {
    async fn holds_in_db(&self) -> Result<Vec<Hold>> {
        let rows: Vec<HoldRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {HOLD_COLUMNS} FROM read_only_holds ORDER BY created_at, name"
        )))
        .fetch_all(&self.reader)
        .await?;
        collect(rows)
    }

    async fn put_hold_in_db(
        &self,
        control: &ControlWrite,
        hold: &Hold,
        event: &ModeEvent,
    ) -> Result<(Hold, bool)> {
        let mut tx = self.control_write(control).await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT created_at FROM read_only_holds WHERE name = $1")
                .bind(hold.name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO read_only_holds (name, reason, set_by, source, created_at, updated_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET
                 reason = excluded.reason, set_by = excluded.set_by, source = excluded.source,
                 updated_at = excluded.updated_at, expires_at = excluded.expires_at",
        )
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
        let row: Option<HoldRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "DELETE FROM read_only_holds WHERE name = $1 RETURNING {HOLD_COLUMNS}"
        )))
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &row {
            insert_event(&mut tx, &event_for(event, &row.name, &row.reason)).await?;
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
        let expired: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM read_only_holds WHERE expires_at IS NOT NULL AND expires_at <= $1)",
        )
        .bind(now)
        .fetch_one(&self.reader)
        .await?;
        // Most evaluations find nothing expired: they need no write transaction.
        if !expired {
            return Ok(Vec::new());
        }
        let mut tx = self.control_write(control).await?;
        let rows: Vec<HoldRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "DELETE FROM read_only_holds WHERE expires_at IS NOT NULL AND expires_at <= $1
             RETURNING {HOLD_COLUMNS}"
        )))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            insert_event(&mut tx, &event_for(event, &row.name, &row.reason)).await?;
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
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT at, kind, hold, actor, source, reason, replica, from_state, to_state,
                    drain_ms, pushes_completed, pushes_cut_off, cancelled_writes,
                    abandoned_uploads
             FROM mode_events ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        collect(rows)
    }

    async fn open_upload_count_in_db(&self) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM upload_sessions WHERE completed_at IS NULL")
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
        let rows: Vec<PushRow> = sqlx::query_as(
            "WITH members AS (
                 SELECT DISTINCT repository, client FROM upload_sessions
                 WHERE created_at < $1
                   AND (completed_at >= $2 OR (completed_at IS NULL AND updated_at >= $2))
                   AND ($3 IS NULL OR (repository = $3 AND client = $4)))
             SELECT m.repository, m.client,
                    (SELECT COUNT(*) FROM upload_sessions s
                     WHERE s.repository = m.repository AND s.client = m.client
                       AND s.completed_at IS NULL AND s.updated_at >= $2) AS open_uploads,
                    (SELECT MAX(COALESCE(s.completed_at, s.updated_at)) FROM upload_sessions s
                     WHERE s.repository = m.repository AND s.client = m.client) AS last_upload,
                    p.put_at, p.tagged_at
             FROM members m
             LEFT JOIN push_manifests p ON p.repository = m.repository AND p.client = m.client
             ORDER BY m.repository, m.client",
        )
        .bind(hold_at)
        .bind(grace_start)
        .bind(push.map(|(repository, _)| repository.as_str()))
        .bind(push.map(|(_, client)| client))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(PushActivity {
                    open_uploads: to_u64(row.open_uploads)?,
                    last_write: row.last_upload.unwrap_or(0).max(row.put_at.unwrap_or(0)),
                    tagged_at: row.tagged_at,
                    repository: row.repository,
                    client: row.client,
                })
            })
            .collect()
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
    let rows: Vec<BlobRow> = sqlx::query_as(
        "SELECT digest, size, storage_key FROM blobs
         WHERE state = 'live' AND digest > $1 ORDER BY digest LIMIT $2",
    )
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
    use wharf_gate::metrics::Metrics;
    use wharf_gate::{DrainSettings, WriteGate, WriteIntent};

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
