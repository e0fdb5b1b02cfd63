-- The version PostgreSQL's 0008 also is, for one process: how many times the holds have
-- changed (each change adds one, in its transaction), so that the state report can say which
-- change this replica has applied; and the lease of the background jobs. The replicas' state
-- and the claims on upload sessions exist only on PostgreSQL: SQLite serves one process (its
-- data folder is locked), which has no other replica to tell.
CREATE TABLE hold_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO hold_changes (id, version) VALUES (1, 0);

CREATE TABLE job_leases (
    name   TEXT    PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
);
