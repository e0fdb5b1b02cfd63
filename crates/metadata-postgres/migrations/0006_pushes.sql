-- A drain lets pushes finish, not only upload sessions: it needs to know, from the database so
-- that every replica decides alike, when each client last put a manifest in each repository and
-- whether by tag (a push is complete when a manifest is put by tag after its other writes).
CREATE TABLE push_manifests (
    repository TEXT COLLATE "C" NOT NULL,
    client     TEXT COLLATE "C" NOT NULL,
    put_at     BIGINT NOT NULL,
    tagged_at  BIGINT,
    PRIMARY KEY (repository, client)
);

-- A push's uploads, looked up by its repository and client while draining.
CREATE INDEX upload_sessions_by_push ON upload_sessions (repository, client);

-- What a drain let finish and what it cut off, recorded with its end.
ALTER TABLE mode_events ADD COLUMN pushes_completed BIGINT;
ALTER TABLE mode_events ADD COLUMN pushes_cut_off BIGINT;
