//! The rows both backends read, and their decoding into the store's records: the same columns
//! come back from SQLite and PostgreSQL (integers as `i64`, text as `String`, bytes as
//! `Vec<u8>`), so each row type and each check of a stored value is written once.

use std::str::FromStr;

use crate::accounts::{GrantRecord, RobotRecord, UserRecord};
use crate::{
    BlobRecord, Descriptor, ManifestRecord, ManifestRejection, MetadataError, Referrer, Result,
    UploadSession,
};
use wharf_core::digest::Algorithm;
use wharf_core::placement::StorageKey;
use wharf_gate::{EventKind, Hold, Mode, ModeEvent, ReplicaState, RunningPush};

/// A stored value that cannot be what it claims to be.
pub fn corrupt(what: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(what.to_string())
}

/// Parses a stored value, calling it `what` if it does not parse.
pub fn parse<T: FromStr>(value: &str, what: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| corrupt(format!("{what} {value:?}")))
}

/// A count or size as the databases store it (they have no unsigned integers).
pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count or size, which is never negative.
pub fn to_u64(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(format!("negative size {n}")))
}

/// A stored count that may be absent.
pub fn optional_count(n: Option<i64>) -> Result<Option<u64>> {
    n.map(to_u64).transpose()
}

/// The rejection of a descriptor whose declared size is not its content's stored `size`.
pub fn size_mismatch(declared: &Descriptor, size: i64) -> Result<Option<ManifestRejection>> {
    let actual = to_u64(size)?;
    Ok(
        (actual != declared.size).then(|| ManifestRejection::SizeMismatch {
            digest: declared.digest.clone(),
            declared: declared.size,
            actual,
        }),
    )
}

/// Decodes every row of a result.
pub fn collect<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = MetadataError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// `event` about the hold `name` held for `reason`.
pub fn event_for(event: &ModeEvent, name: &str, reason: &str) -> ModeEvent {
    ModeEvent {
        hold: Some(name.to_owned()),
        reason: reason.to_owned(),
        ..event.clone()
    }
}

/// A row of `blobs` ([`crate::sql::BLOB_COLUMNS`]).
#[derive(sqlx::FromRow)]
pub struct BlobRow {
    /// The digest.
    pub digest: String,
    /// The size.
    pub size: i64,
    /// The object holding the content.
    pub storage_key: String,
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

/// A row of `upload_sessions` ([`crate::sql::UPLOAD_COLUMNS`]).
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct UploadRow {
    pub id: String,
    pub repository: String,
    pub client: String,
    pub hash_algorithm: String,
    pub hash_state: Vec<u8>,
    pub hashed: i64,
    pub received: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub storage_state: String,
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

/// A manifest's digest, media type and content.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
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

/// A manifest as the referrers API lists it.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct ReferrerRow {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

impl TryFrom<ReferrerRow> for Referrer {
    type Error = MetadataError;
    fn try_from(row: ReferrerRow) -> Result<Self> {
        Ok(Referrer {
            digest: parse(&row.digest, "digest")?,
            media_type: row.media_type,
            size: to_u64(row.size)?,
            artifact_type: row.artifact_type,
            annotations: row.annotations,
        })
    }
}

/// A row of `read_only_holds` ([`crate::sql::HOLD_COLUMNS`]).
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct HoldRow {
    pub name: String,
    pub reason: String,
    pub set_by: String,
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
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

/// A push as [`crate::sql::PUSHES`] finds it.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct PushRow {
    pub repository: String,
    pub client: String,
    pub open_uploads: i64,
    pub last_upload: Option<i64>,
    pub put_at: Option<i64>,
    pub tagged_at: Option<i64>,
}

impl TryFrom<PushRow> for wharf_gate::store::PushActivity {
    type Error = MetadataError;
    fn try_from(row: PushRow) -> Result<Self> {
        Ok(wharf_gate::store::PushActivity {
            open_uploads: to_u64(row.open_uploads)?,
            last_write: row.last_upload.unwrap_or(0).max(row.put_at.unwrap_or(0)),
            tagged_at: row.tagged_at,
            repository: row.repository,
            client: row.client,
        })
    }
}

/// A row of `replicas` ([`crate::sql::REPLICAS`]).
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct ReplicaRow {
    pub name: String,
    pub address: String,
    pub mode: String,
    pub since: i64,
    pub drain_cutoff: Option<i64>,
    pub writes_in_flight: i64,
    pub pushes_running: String,
    pub holds_applied: i64,
    pub started_at: i64,
    pub last_seen: i64,
}

/// A replica's running pushes as stored: one per line, the repository and the client separated
/// by a tab (neither a repository name nor a client, an account name or an address, has one).
pub fn encode_pushes(pushes: &[RunningPush]) -> String {
    pushes
        .iter()
        .map(|p| format!("{}\t{}", p.repository, p.client))
        .collect::<Vec<_>>()
        .join("\n")
}

impl TryFrom<ReplicaRow> for ReplicaState {
    type Error = MetadataError;
    fn try_from(row: ReplicaRow) -> Result<Self> {
        let pushes_running = row
            .pushes_running
            .lines()
            .map(|line| {
                let (repository, client) = line
                    .split_once('\t')
                    .ok_or_else(|| corrupt(format!("running push {line:?}")))?;
                Ok(RunningPush {
                    repository: repository.to_owned(),
                    client: client.to_owned(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(ReplicaState {
            mode: parse_mode(Some(row.mode))?.unwrap_or(Mode::ReadWrite),
            name: row.name,
            address: row.address,
            since: row.since,
            drain_cutoff: row.drain_cutoff,
            writes_in_flight: to_u64(row.writes_in_flight)?,
            pushes_running,
            holds_applied: to_u64(row.holds_applied)?,
            started_at: row.started_at,
            last_seen: row.last_seen,
        })
    }
}

/// A row of `mode_events` ([`crate::sql::MODE_EVENTS`]).
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub hold: Option<String>,
    pub actor: String,
    pub source: String,
    pub reason: String,
    pub replica: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub drain_ms: Option<i64>,
    pub pushes_completed: Option<i64>,
    pub pushes_cut_off: Option<i64>,
    pub cancelled_writes: Option<i64>,
    pub abandoned_uploads: Option<i64>,
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

/// A row of `backup_leases`.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct LeaseRow {
    pub id: String,
    pub snapshot_at: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl From<LeaseRow> for crate::BackupLease {
    fn from(r: LeaseRow) -> Self {
        crate::BackupLease {
            id: r.id,
            snapshot_at: r.snapshot_at,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

/// A manifest with its repository, as fsck walks them.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct StoredManifestRow {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
}

impl TryFrom<StoredManifestRow> for crate::StoredManifest {
    type Error = MetadataError;
    fn try_from(row: StoredManifestRow) -> Result<Self> {
        Ok(crate::StoredManifest {
            repository: parse(&row.repository, "repository name")?,
            manifest: ManifestRecord::try_from(ManifestRow {
                digest: row.digest,
                media_type: row.media_type,
                content: row.content,
            })?,
        })
    }
}

/// A reference fsck found dangling.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct DanglingRow {
    pub repository: String,
    pub manifest_digest: String,
    pub child_kind: String,
    pub child_digest: String,
}

impl TryFrom<DanglingRow> for crate::DanglingReference {
    type Error = MetadataError;
    fn try_from(row: DanglingRow) -> Result<Self> {
        Ok(crate::DanglingReference {
            repository: parse(&row.repository, "repository name")?,
            manifest: parse(&row.manifest_digest, "digest")?,
            child: parse(&row.child_digest, "digest")?,
            child_is_blob: row.child_kind == "blob",
        })
    }
}

// ---- Accounts ----

/// A row of `users` ([`crate::sql::accounts::USER_COLUMNS`]).
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct UserRow {
    pub name: String,
    pub password_hash: String,
    pub superuser: bool,
    pub created_at: i64,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        UserRecord {
            name: row.name,
            password_hash: row.password_hash,
            superuser: row.superuser,
            created_at: row.created_at,
        }
    }
}

/// A row of `robots` ([`crate::sql::accounts::ROBOT_COLUMNS`]).
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct RobotRow {
    pub name: String,
    pub organization: String,
    pub token_hash: String,
    pub admin: bool,
    pub description: String,
    pub created_at: i64,
}

impl From<RobotRow> for RobotRecord {
    fn from(row: RobotRow) -> Self {
        RobotRecord {
            name: row.name,
            organization: row.organization,
            token_hash: row.token_hash,
            admin: row.admin,
            description: row.description,
            created_at: row.created_at,
        }
    }
}

/// A row of `repository_grants`.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct GrantRow {
    pub repository: String,
    pub principal: String,
    pub role: String,
}

impl TryFrom<GrantRow> for GrantRecord {
    type Error = MetadataError;
    fn try_from(row: GrantRow) -> Result<Self> {
        Ok(GrantRecord {
            role: parse(&row.role, "role")?,
            repository: row.repository,
            principal: row.principal,
        })
    }
}
