-- Read-only mode: holds (the registry is desired read-only while one exists) and the audit
-- trail of every hold change and state transition. These are the only tables written while
-- the registry is read-only.

CREATE TABLE read_only_holds (
    name       TEXT    PRIMARY KEY,
    reason     TEXT    NOT NULL,
    set_by     TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER
);

CREATE TABLE mode_events (
    id               INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,
    kind             TEXT    NOT NULL,
    hold             TEXT,
    actor            TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    replica          TEXT    NOT NULL,
    from_state       TEXT,
    to_state         TEXT,
    drain_ms         INTEGER,
    cancelled_writes INTEGER,
    abandoned_uploads INTEGER
);
CREATE INDEX mode_events_by_time ON mode_events (at);

-- Admission while draining asks which uploads were open, or finished recently, at the hold.
CREATE INDEX upload_sessions_by_activity ON upload_sessions (created_at, completed_at, updated_at);
