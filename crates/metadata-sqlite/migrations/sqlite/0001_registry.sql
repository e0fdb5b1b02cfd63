-- The registry's metadata: repositories, blobs and their links, manifests, tags, upload sessions.
-- Times are Unix milliseconds (INTEGER), so the same queries run on SQLite and PostgreSQL.

CREATE TABLE repositories (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Blob content, shared by every repository that links it. `storage_key` names the object that
-- holds it; a blob being garbage-collected is in state 'deleting' and is invisible to readers.
CREATE TABLE blobs (
    digest      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    storage_key TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('live', 'deleting')),
    created_at  INTEGER NOT NULL
);
CREATE INDEX blobs_by_storage_key ON blobs (storage_key);

-- Which repositories may serve a blob (it was uploaded or mounted there).
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    digest        TEXT    NOT NULL,
    linked_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    digest        TEXT    NOT NULL,
    media_type    TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    content       BLOB    NOT NULL,
    -- For the referrers API: the manifest's artifactType (or its config's media type),
    -- its subject's digest, and its annotations as JSON.
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repository_id, subject) WHERE subject IS NOT NULL;

-- What each manifest points at: blobs (config, layers) and child manifests (of an index).
CREATE TABLE manifest_references (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    child_kind      TEXT    NOT NULL CHECK (child_kind IN ('blob', 'manifest')),
    child_digest    TEXT    NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_kind, child_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_by_child ON manifest_references (child_digest, child_kind);

CREATE TABLE tags (
    repository_id   INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    manifest_digest TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);

-- Blob upload sessions. `received` bytes are in the staging object and `hash_state` is the
-- hasher's state after them, so an upload resumes after a restart. A completed session is kept
-- (with `completed_at`) for a while: it tells which client just pushed into which repository.
CREATE TABLE upload_sessions (
    id             TEXT    PRIMARY KEY,
    repository     TEXT    NOT NULL,
    client         TEXT    NOT NULL,
    hash_algorithm TEXT    NOT NULL,
    hash_state     BLOB    NOT NULL,
    received       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    completed_at   INTEGER
);
CREATE INDEX upload_sessions_by_repository_client ON upload_sessions (repository, client);
