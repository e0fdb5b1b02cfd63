//! The SQL both backends run, written once: a query that reads the same on SQLite and
//! PostgreSQL (`$n` placeholders, `ON CONFLICT`, `RETURNING`, row values, `EXISTS`) lives here
//! and nowhere else. A backend keeps a query of its own only where the dialects really differ:
//! joining a listing's names (`group_concat` / `string_agg`), row locks (`FOR UPDATE`, which
//! SQLite has no use for with its one writer), advisory locks, snapshots.
//!
//! Integers come back as `i64` on both (`BIGINT` on PostgreSQL), so a constant `1` selected
//! to test for a row is decoded as `i32` (PostgreSQL's `integer`).

/// Whether the database answers.
pub const PING: &str = "SELECT 1";

// ---- Repositories, blobs, manifests, tags ----

/// The id of repository `$1`, created (at `$2`) if missing. `DO UPDATE` rather than `DO
/// NOTHING`, so that the row comes back (and, on PostgreSQL, is locked) even when it exists.
pub const REPOSITORY_ID: &str = "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET name = excluded.name
     RETURNING id";

/// Links blob `$2` to repository id `$1` at `$3`.
pub const LINK_BLOB: &str =
    "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
     ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at";

/// Blob `$2` if live and linked to repository `$1`.
pub const BLOB_IN_REPOSITORY: &str = "SELECT b.digest, b.size, b.storage_key
     FROM blobs b
     JOIN repository_blobs rb ON rb.digest = b.digest
     JOIN repositories r ON r.id = rb.repository_id
     WHERE r.name = $1 AND b.digest = $2 AND b.state = 'live'";

/// The open upload session `$1`.
pub const UPLOAD: &str =
    "SELECT id, repository, client, hash_algorithm, hash_state, hashed, received,
            created_at, updated_at, storage_state
     FROM upload_sessions WHERE id = $1 AND completed_at IS NULL";

/// The manifest tag `$2` points at in repository `$1`.
pub const MANIFEST_BY_TAG: &str = "SELECT m.digest, m.media_type, m.content
     FROM tags t
     JOIN repositories r ON r.id = t.repository_id
     JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
     WHERE r.name = $1 AND t.name = $2";

/// Manifest `$2` of repository `$1`.
pub const MANIFEST_BY_DIGEST: &str = "SELECT m.digest, m.media_type, m.content
     FROM manifests m
     JOIN repositories r ON r.id = m.repository_id
     WHERE r.name = $1 AND m.digest = $2";

/// Whether repository `$1` exists.
pub const REPOSITORY_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = $1)";

/// A page (after `$2`, at most `$3`) of the repositories blob `$1` is live in.
pub const REPOSITORIES_WITH_BLOB: &str = "SELECT r.name FROM repository_blobs rb
     JOIN repositories r ON r.id = rb.repository_id
     JOIN blobs b ON b.digest = rb.digest
     WHERE rb.digest = $1 AND b.state = 'live' AND r.name > $2
     ORDER BY r.name LIMIT $3";

/// The manifests of repository `$1` whose subject is `$2`, of artifact type `$3` if not null.
pub const REFERRERS: &str = "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
     FROM manifests m JOIN repositories r ON r.id = m.repository_id
     WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
     ORDER BY m.digest";

/// Records a new upload session.
pub const OPEN_UPLOAD: &str = "INSERT INTO upload_sessions
         (id, repository, client, hash_algorithm, hash_state, hashed, received,
          created_at, updated_at, storage_state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Advances session `$1` from `$2` bytes to `$3`, `$4` of them hashed to `$5`, at `$6`.
pub const RECORD_UPLOAD_PROGRESS: &str = "UPDATE upload_sessions
     SET received = $3, hashed = $4, hash_state = $5, updated_at = $6
     WHERE id = $1 AND received = $2 AND completed_at IS NULL";

/// As [`RECORD_UPLOAD_PROGRESS`], and blob storage's state of the session becomes `$7`.
pub const RECORD_UPLOAD_PROGRESS_WITH_STORAGE: &str = "UPDATE upload_sessions
     SET received = $3, hashed = $4, hash_state = $5, updated_at = $6, storage_state = $7
     WHERE id = $1 AND received = $2 AND completed_at IS NULL";

/// The live blob `$1`.
pub const LIVE_BLOB: &str =
    "SELECT digest, size, storage_key FROM blobs WHERE digest = $1 AND state = 'live'";

/// Stores blob `$1` of `$2` bytes under placement `$3`, created at `$4`: absent, or being
/// deleted by the garbage collector, this placement takes over.
pub const PUT_BLOB: &str = "INSERT INTO blobs (digest, size, storage_key, state, created_at)
     VALUES ($1, $2, $3, 'live', $4)
     ON CONFLICT (digest) DO UPDATE SET
         size = excluded.size, storage_key = excluded.storage_key,
         state = 'live', created_at = excluded.created_at";

/// Closes session `$1` as completed at `$2` with `$3` bytes.
pub const COMPLETE_UPLOAD: &str =
    "UPDATE upload_sessions SET completed_at = $2, updated_at = $2, received = $3 WHERE id = $1";

/// Forgets the open session `$1`.
pub const DELETE_UPLOAD: &str =
    "DELETE FROM upload_sessions WHERE id = $1 AND completed_at IS NULL";

/// Blob `$1`, if live and linked to repository `$2` (a mount's source).
pub const MOUNT_SOURCE: &str = "SELECT b.digest, b.size, b.storage_key FROM blobs b
     JOIN repository_blobs rb ON rb.digest = b.digest
     JOIN repositories r ON r.id = rb.repository_id
     WHERE b.digest = $1 AND b.state = 'live' AND r.name = $2";

/// Records a mount as session `$1` into `$2` by `$3`, of `$5` bytes, completed at once at `$6`.
pub const RECORD_MOUNT: &str = "INSERT INTO upload_sessions
         (id, repository, client, hash_algorithm, hash_state, received, created_at, updated_at,
          completed_at)
     VALUES ($1, $2, $3, 'sha256', $4, $5, $6, $6, $6)";

/// Whether a manifest of repository `$1` refers to blob `$2`.
pub const BLOB_IN_USE: &str = "SELECT EXISTS (
         SELECT 1 FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
         WHERE r.name = $1 AND mr.child_kind = 'blob' AND mr.child_digest = $2)";

/// Removes blob `$2`'s link from repository `$1`.
pub const UNLINK_BLOB: &str = "DELETE FROM repository_blobs
     WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";

/// The size of blob `$2` if live and linked to repository id `$1`.
pub const LINKED_BLOB_SIZE: &str = "SELECT b.size FROM repository_blobs rb
     JOIN blobs b ON b.digest = rb.digest
     WHERE rb.repository_id = $1 AND rb.digest = $2 AND b.state = 'live'";

/// The size of manifest `$2` of repository id `$1`.
pub const MANIFEST_SIZE: &str =
    "SELECT size FROM manifests WHERE repository_id = $1 AND digest = $2";

/// Stores a manifest. The same digest means the same bytes: an existing row is already it.
pub const PUT_MANIFEST: &str =
    "INSERT INTO manifests (repository_id, digest, media_type, size, content,
                            artifact_type, subject, annotations, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (repository_id, digest) DO NOTHING";

/// Records that manifest `$2` of repository id `$1` refers to `$4` (a `$3`: blob or manifest).
pub const PUT_MANIFEST_REFERENCE: &str = "INSERT INTO manifest_references
         (repository_id, manifest_digest, child_kind, child_digest)
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

/// Points tag `$2` of repository id `$1` at manifest `$3`, at `$4`.
pub const PUT_TAG: &str = "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (repository_id, name) DO UPDATE SET
         manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at";

/// Records that client `$2` put a manifest in repository `$1` at `$3` (by tag: `$4` not null),
/// the push a drain waits for.
pub const RECORD_PUSH_MANIFEST: &str =
    "INSERT INTO push_manifests (repository, client, put_at, tagged_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (repository, client) DO UPDATE SET
         put_at = excluded.put_at,
         tagged_at = COALESCE(excluded.tagged_at, push_manifests.tagged_at)";

/// The first index of repository `$1` that refers to manifest `$2`.
pub const MANIFEST_PARENT: &str = "SELECT manifest_digest FROM manifest_references
     WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
       AND child_kind = 'manifest' AND child_digest = $2
     ORDER BY manifest_digest LIMIT 1";

/// Deletes manifest `$2` of repository `$1`; its tags and references go with it (`ON DELETE
/// CASCADE`).
pub const DELETE_MANIFEST: &str = "DELETE FROM manifests
     WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";

/// Deletes tag `$2` of repository `$1`.
pub const DELETE_TAG: &str = "DELETE FROM tags
     WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2";

// ---- Backup leases ----

/// Takes or updates a backup lease.
pub const PUT_BACKUP_LEASE: &str =
    "INSERT INTO backup_leases (id, snapshot_at, created_at, expires_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET
         snapshot_at = excluded.snapshot_at, expires_at = excluded.expires_at";

/// Extends lease `$1`, if active at `$2`, to `$3`.
pub const RENEW_BACKUP_LEASE: &str =
    "UPDATE backup_leases SET expires_at = $3 WHERE id = $1 AND expires_at > $2";

/// Releases lease `$1`.
pub const DELETE_BACKUP_LEASE: &str = "DELETE FROM backup_leases WHERE id = $1";

/// Every backup lease.
pub const BACKUP_LEASES: &str =
    "SELECT id, snapshot_at, created_at, expires_at FROM backup_leases ORDER BY created_at";

// ---- Housekeeping ----

/// At most `$2` open sessions idle since before `$1`.
pub const IDLE_UPLOADS: &str =
    "SELECT id, repository, client, hash_algorithm, hash_state, hashed, received,
            created_at, updated_at, storage_state
     FROM upload_sessions
     WHERE completed_at IS NULL AND updated_at < $1
     ORDER BY updated_at LIMIT $2";

/// Forgets sessions completed before `$1`.
pub const FORGET_COMPLETED_UPLOADS: &str =
    "DELETE FROM upload_sessions WHERE completed_at IS NOT NULL AND completed_at < $1";

/// Forgets the manifests' side of pushes older than `$1`: only a drain's pushes need them.
pub const FORGET_PUSH_MANIFESTS: &str = "DELETE FROM push_manifests WHERE put_at < $1";

/// Removes links made before `$1` to blobs no manifest of their repository refers to.
pub const PRUNE_BLOB_LINKS: &str = "DELETE FROM repository_blobs
     WHERE linked_at < $1 AND NOT EXISTS (
         SELECT 1 FROM manifest_references mr
         WHERE mr.repository_id = repository_blobs.repository_id
           AND mr.child_kind = 'blob' AND mr.child_digest = repository_blobs.digest)";

/// Marks up to `$2` blobs created before `$1` that nothing links, refers to or keeps (a lease
/// active at `$3`) as being deleted, and returns them.
pub const CLAIM_UNREFERENCED_BLOBS: &str = "UPDATE blobs SET state = 'deleting'
     WHERE digest IN (
         SELECT b.digest FROM blobs b
         WHERE b.state = 'live' AND b.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
           AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                           WHERE mr.child_kind = 'blob' AND mr.child_digest = b.digest)
           AND NOT EXISTS (SELECT 1 FROM backup_leases l
                           WHERE l.expires_at > $3 AND b.created_at <= l.snapshot_at)
         ORDER BY b.digest LIMIT $2)
     RETURNING digest, size, storage_key";

/// At most `$1` blobs being deleted.
pub const BLOBS_BEING_DELETED: &str = "SELECT digest, size, storage_key FROM blobs
     WHERE state = 'deleting' ORDER BY digest LIMIT $1";

/// Forgets blob `$1` if still being deleted from placement `$2`.
pub const FORGET_DELETED_BLOB: &str =
    "DELETE FROM blobs WHERE digest = $1 AND state = 'deleting' AND storage_key = $2";

/// Whether a blob record uses placement `$1`.
pub const STORAGE_KEY_IN_USE: &str = "SELECT EXISTS (SELECT 1 FROM blobs WHERE storage_key = $1)";

// ---- Consistency checks ----

/// A page of live blobs after digest `$1`, at most `$2`.
pub const LIVE_BLOBS: &str = "SELECT digest, size, storage_key FROM blobs
     WHERE state = 'live' AND digest > $1 ORDER BY digest LIMIT $2";

/// A page of manifests after (`$1`, `$2`), at most `$3`.
pub const STORED_MANIFESTS: &str = "SELECT r.name AS repository, m.digest, m.media_type, m.content
     FROM manifests m JOIN repositories r ON r.id = m.repository_id
     WHERE (r.name, m.digest) > ($1, $2)
     ORDER BY r.name, m.digest LIMIT $3";

/// At most `$1` references to blobs not live and linked, or manifests not there.
pub const DANGLING_REFERENCES: &str =
    "SELECT r.name AS repository, mr.manifest_digest, mr.child_kind, mr.child_digest
     FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
     WHERE (mr.child_kind = 'blob' AND NOT EXISTS (
                SELECT 1 FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                WHERE rb.repository_id = mr.repository_id
                  AND rb.digest = mr.child_digest AND b.state = 'live'))
        OR (mr.child_kind = 'manifest' AND NOT EXISTS (
                SELECT 1 FROM manifests m
                WHERE m.repository_id = mr.repository_id AND m.digest = mr.child_digest))
     ORDER BY r.name, mr.manifest_digest, mr.child_digest LIMIT $1";

/// At most `$1` tags that point at no manifest.
pub const DANGLING_TAGS: &str =
    "SELECT r.name, t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
     WHERE NOT EXISTS (SELECT 1 FROM manifests m
                       WHERE m.repository_id = t.repository_id AND m.digest = t.manifest_digest)
     ORDER BY r.name, t.name LIMIT $1";

// ---- The gate's state ----

/// Every hold.
pub const HOLDS: &str = "SELECT name, reason, set_by, source, created_at, updated_at, expires_at
     FROM read_only_holds ORDER BY created_at, name";

/// The creation time of hold `$1`.
pub const HOLD_CREATED_AT: &str = "SELECT created_at FROM read_only_holds WHERE name = $1";

/// Stores a hold, keeping the creation time of one of the same name.
pub const PUT_HOLD: &str = "INSERT INTO read_only_holds
         (name, reason, set_by, source, created_at, updated_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (name) DO UPDATE SET
         reason = excluded.reason, set_by = excluded.set_by, source = excluded.source,
         updated_at = excluded.updated_at, expires_at = excluded.expires_at";

/// Deletes hold `$1`, returning it.
pub const DELETE_HOLD: &str = "DELETE FROM read_only_holds WHERE name = $1
     RETURNING name, reason, set_by, source, created_at, updated_at, expires_at";

/// Whether a hold expired at or before `$1`.
pub const ANY_HOLD_EXPIRED: &str = "SELECT EXISTS (SELECT 1 FROM read_only_holds
                       WHERE expires_at IS NOT NULL AND expires_at <= $1)";

/// Deletes the holds expired at or before `$1`, returning them.
pub const DELETE_EXPIRED_HOLDS: &str =
    "DELETE FROM read_only_holds WHERE expires_at IS NOT NULL AND expires_at <= $1
     RETURNING name, reason, set_by, source, created_at, updated_at, expires_at";

/// How many times the holds have changed.
pub const HOLDS_VERSION: &str = "SELECT version FROM hold_changes WHERE id = 1";

/// Counts a change of the holds, in its transaction; returns the new count.
pub const COUNT_HOLD_CHANGE: &str =
    "UPDATE hold_changes SET version = version + 1 WHERE id = 1 RETURNING version";

// ---- Replicas ----

/// Claims (or renews) the lease of job `$1` for `$2` until `$3`, unless another holder's lease
/// holds at `$4`.
pub const CLAIM_JOB_LEASE: &str = "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
     WHERE job_leases.holder = excluded.holder OR job_leases.until < $4";

/// Ends `$2`'s lease of job `$1`.
pub const RELEASE_JOB_LEASE: &str = "DELETE FROM job_leases WHERE name = $1 AND holder = $2";

/// Records the run of job `$1` by replica `$2`, finished at `$3` with outcome `$4`, in place of
/// the one before.
pub const RECORD_JOB_RUN: &str = "INSERT INTO job_runs (name, replica, finished_at, outcome)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO UPDATE SET replica = excluded.replica,
         finished_at = excluded.finished_at, outcome = excluded.outcome";

/// The last run of job `$1`.
pub const LAST_JOB_RUN: &str =
    "SELECT name, replica, finished_at, outcome FROM job_runs WHERE name = $1";

/// Claims open session `$1` for writer `$2` until `$3`, unless another writer's claim holds at
/// `$4`.
pub const CLAIM_UPLOAD: &str = "UPDATE upload_sessions SET writer = $2, writer_until = $3
     WHERE id = $1 AND completed_at IS NULL
       AND (writer IS NULL OR writer = $2 OR writer_until < $4)";

/// Extends writer `$2`'s claim of session `$1` to `$3`.
pub const RENEW_UPLOAD_CLAIM: &str =
    "UPDATE upload_sessions SET writer_until = $3 WHERE id = $1 AND writer = $2";

/// Ends writer `$2`'s claim of session `$1`.
pub const RELEASE_UPLOAD_CLAIM: &str =
    "UPDATE upload_sessions SET writer = NULL, writer_until = NULL WHERE id = $1 AND writer = $2";

/// Publishes a replica's state.
pub const PUT_REPLICA: &str = "INSERT INTO replicas
         (name, address, mode, since, drain_cutoff, writes_in_flight, pushes_running,
          holds_applied, started_at, last_seen)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (name) DO UPDATE SET
         address = excluded.address, mode = excluded.mode, since = excluded.since,
         drain_cutoff = excluded.drain_cutoff, writes_in_flight = excluded.writes_in_flight,
         pushes_running = excluded.pushes_running, holds_applied = excluded.holds_applied,
         started_at = excluded.started_at, last_seen = excluded.last_seen";

/// Removes replica `$1`'s state.
pub const DELETE_REPLICA: &str = "DELETE FROM replicas WHERE name = $1";

/// Removes the states of replicas last seen before `$1`.
pub const FORGET_LOST_REPLICAS: &str = "DELETE FROM replicas WHERE last_seen < $1";

/// Every replica's state.
pub const REPLICAS: &str = "SELECT name, address, mode, since, drain_cutoff, writes_in_flight,
         pushes_running, holds_applied, started_at, last_seen
     FROM replicas ORDER BY name";

/// Appends an event to the audit trail.
pub const INSERT_MODE_EVENT: &str =
    "INSERT INTO mode_events (at, kind, hold, actor, source, reason, replica, from_state,
                              to_state, drain_ms, pushes_completed, pushes_cut_off,
                              cancelled_writes, abandoned_uploads)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// The latest `$1` events, newest first.
pub const MODE_EVENTS: &str =
    "SELECT at, kind, hold, actor, source, reason, replica, from_state, to_state,
            drain_ms, pushes_completed, pushes_cut_off, cancelled_writes, abandoned_uploads
     FROM mode_events ORDER BY id DESC LIMIT $1";

/// How many sessions are open.
pub const OPEN_UPLOAD_COUNT: &str =
    "SELECT COUNT(*) FROM upload_sessions WHERE completed_at IS NULL";

/// The pushes begun before the hold at `$1` and active since `$2` (only the one of repository
/// `$3` and client `$4`, if not null).
pub const PUSHES: &str = "WITH members AS (
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
     ORDER BY m.repository, m.client";

/// The SQL of the accounts part of the store.
pub mod accounts {
    /// The user `$1`.
    pub const USER: &str =
        "SELECT name, password_hash, superuser, created_at FROM users WHERE name = $1";

    /// Every user.
    pub const USERS: &str =
        "SELECT name, password_hash, superuser, created_at FROM users ORDER BY name";

    /// A row if a superuser exists.
    pub const ANY_SUPERUSER: &str = "SELECT 1 FROM users WHERE superuser LIMIT 1";

    /// Every organization.
    pub const ORGANIZATIONS: &str = "SELECT name FROM organizations ORDER BY name";

    /// The teams of organization `$1`.
    pub const TEAMS: &str = "SELECT name, role FROM teams WHERE organization = $1 ORDER BY name";

    /// The members of every team of organization `$1`.
    pub const TEAM_MEMBERS: &str =
        "SELECT team, member FROM team_members WHERE organization = $1 ORDER BY team, member";

    /// The robot `$1`.
    pub const ROBOT: &str = "SELECT name, organization, token_hash, admin, description, created_at
         FROM robots WHERE name = $1";

    /// The robots of organization `$1`, or every robot if null.
    pub const ROBOTS: &str = "SELECT name, organization, token_hash, admin, description, created_at
         FROM robots WHERE $1 IS NULL OR organization = $1 ORDER BY name";

    /// The (organization, role) of each team `$1` is a member of.
    pub const TEAM_ROLES: &str = "SELECT t.organization, t.role
         FROM team_members m
         JOIN teams t ON t.organization = m.organization AND t.name = m.team
         WHERE m.member = $1";

    /// The grants of principal `$1`.
    pub const GRANTS_OF: &str = "SELECT repository, principal, role FROM repository_grants
         WHERE principal = $1 ORDER BY repository";

    /// The grants on repository `$1`.
    pub const GRANTS_ON: &str = "SELECT repository, principal, role FROM repository_grants
         WHERE repository = $1 ORDER BY principal";

    /// Every visibility rule.
    pub const VISIBILITY_RULES: &str = "SELECT pattern, public FROM visibility ORDER BY pattern";

    /// The kind of record (`user`, `organization`) that has name `$1`.
    pub const NAMESPACE_OWNER: &str = "SELECT 'user' FROM users WHERE name = $1
         UNION ALL SELECT 'organization' FROM organizations WHERE name = $1";

    /// A row if `$1` is a user or a robot.
    pub const PRINCIPAL_EXISTS: &str =
        "SELECT 1 FROM users WHERE name = $1 UNION ALL SELECT 1 FROM robots WHERE name = $1";

    /// Removes `$1`'s team memberships.
    pub const FORGET_MEMBERSHIPS: &str = "DELETE FROM team_members WHERE member = $1";

    /// Removes `$1`'s grants.
    pub const FORGET_GRANTS: &str = "DELETE FROM repository_grants WHERE principal = $1";

    /// Deletes user `$1`.
    pub const DELETE_USER: &str = "DELETE FROM users WHERE name = $1";

    /// Deletes robot `$1`.
    pub const DELETE_ROBOT: &str = "DELETE FROM robots WHERE name = $1";

    /// Creates a user.
    pub const INSERT_USER: &str =
        "INSERT INTO users (name, password_hash, superuser, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)";

    /// Changes user `$1`'s password hash (`$2`) and/or superuser flag (`$3`) at `$4`.
    pub const UPDATE_USER: &str = "UPDATE users SET password_hash = COALESCE($2, password_hash),
                          superuser = COALESCE($3, superuser), updated_at = $4
         WHERE name = $1";

    /// Creates organization `$1` at `$2`.
    pub const INSERT_ORGANIZATION: &str =
        "INSERT INTO organizations (name, created_at) VALUES ($1, $2)";

    /// The robots of organization `$1`.
    pub const ORGANIZATION_ROBOTS: &str = "SELECT name FROM robots WHERE organization = $1";

    /// Deletes organization `$1`; its teams, their members and its robots go with it (`ON
    /// DELETE CASCADE`).
    pub const DELETE_ORGANIZATION: &str = "DELETE FROM organizations WHERE name = $1";

    /// A row if organization `$1` exists.
    pub const ORGANIZATION_EXISTS: &str = "SELECT 1 FROM organizations WHERE name = $1";

    /// Creates team `$2` of `$1` with role `$3`, or changes its role.
    pub const PUT_TEAM: &str = "INSERT INTO teams (organization, name, role) VALUES ($1, $2, $3)
         ON CONFLICT (organization, name) DO UPDATE SET role = excluded.role";

    /// Deletes team `$2` of `$1`.
    pub const DELETE_TEAM: &str = "DELETE FROM teams WHERE organization = $1 AND name = $2";

    /// A row if team `$2` of `$1` exists.
    pub const TEAM_EXISTS: &str = "SELECT 1 FROM teams WHERE organization = $1 AND name = $2";

    /// A row if `$1` is a user, or a robot of organization `$2` (a robot joins only its own
    /// organization's teams).
    pub const MEMBER_EXISTS: &str = "SELECT 1 FROM users WHERE name = $1
         UNION ALL SELECT 1 FROM robots WHERE name = $1 AND organization = $2";

    /// Adds `$3` to team `$2` of `$1`.
    pub const ADD_TEAM_MEMBER: &str =
        "INSERT INTO team_members (organization, team, member) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING";

    /// Removes `$3` from team `$2` of `$1`.
    pub const REMOVE_TEAM_MEMBER: &str =
        "DELETE FROM team_members WHERE organization = $1 AND team = $2 AND member = $3";

    /// Creates a robot, unless its name is taken.
    pub const INSERT_ROBOT: &str = "INSERT INTO robots
             (name, organization, token_hash, admin, description, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (name) DO NOTHING";

    /// Changes robot `$1`'s token hash (`$2`) and/or admin flag (`$3`) at `$4`.
    pub const UPDATE_ROBOT: &str = "UPDATE robots SET token_hash = COALESCE($2, token_hash),
                           admin = COALESCE($3, admin), updated_at = $4
         WHERE name = $1";

    /// Gives a principal a role on a repository.
    pub const PUT_GRANT: &str =
        "INSERT INTO repository_grants (repository, principal, role) VALUES ($1, $2, $3)
         ON CONFLICT (repository, principal) DO UPDATE SET role = excluded.role";

    /// Removes the grant on `$1` to `$2`.
    pub const DELETE_GRANT: &str =
        "DELETE FROM repository_grants WHERE repository = $1 AND principal = $2";

    /// Sets a visibility rule.
    pub const PUT_VISIBILITY: &str = "INSERT INTO visibility (pattern, public) VALUES ($1, $2)
         ON CONFLICT (pattern) DO UPDATE SET public = excluded.public";

    /// Removes visibility rule `$1`.
    pub const DELETE_VISIBILITY: &str = "DELETE FROM visibility WHERE pattern = $1";
}
