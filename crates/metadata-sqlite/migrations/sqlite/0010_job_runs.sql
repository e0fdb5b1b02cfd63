-- The last run of each background job (garbage collection), whichever replica or command ran
-- it, for the web UI and the admin API to report. `outcome` is the job's own JSON: its
-- report, or why it failed. State of the running registry, like `job_leases`: backups leave
-- it out.
CREATE TABLE job_runs (
    name        TEXT    PRIMARY KEY,
    replica     TEXT    NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL
);
