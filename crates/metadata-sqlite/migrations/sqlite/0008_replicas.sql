-- Replicas: how many times the holds have changed (each change adds one, in its transaction),
-- so that a replica can say which change it has applied; each replica's published state (its
-- heartbeat); leases of the background jobs one replica at a time runs; and the request writing
-- to an upload session, so that one request writes to a session at a time across replicas.
CREATE TABLE hold_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO hold_changes (id, version) VALUES (1, 0);

CREATE TABLE replicas (
    name             TEXT    PRIMARY KEY,
    address          TEXT    NOT NULL,
    mode             TEXT    NOT NULL,
    since            INTEGER NOT NULL,
    drain_cutoff     INTEGER,
    writes_in_flight INTEGER NOT NULL,
    pushes_running   TEXT    NOT NULL,
    holds_applied    INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL
);

CREATE TABLE job_leases (
    name   TEXT    PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
);

ALTER TABLE upload_sessions ADD COLUMN writer TEXT;
ALTER TABLE upload_sessions ADD COLUMN writer_until INTEGER;
