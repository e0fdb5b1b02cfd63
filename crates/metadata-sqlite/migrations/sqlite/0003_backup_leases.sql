-- Backup leases: while one is active, garbage collection keeps every blob that existed at its
-- snapshot, so a backup can copy what its snapshot references after the registry is writable
-- again. A lease that outlives its backup (the backup died) expires by itself.

CREATE TABLE backup_leases (
    id          TEXT    PRIMARY KEY,
    snapshot_at INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
