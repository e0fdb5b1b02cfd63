-- Backup leases: while one is active, garbage collection keeps every blob that existed at its
-- snapshot, so a backup can copy what its snapshot references after the registry is writable
-- again. A lease that outlives its backup (the backup died) expires by itself.

CREATE TABLE backup_leases (
    id          TEXT COLLATE "C" PRIMARY KEY,
    snapshot_at BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
