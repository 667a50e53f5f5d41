-- jobworks schema v9 for SQLite: engines' beats (each started engine says every few
-- seconds that it is alive), and an index of finished jobs that holds what the count of
-- finished jobs by minute reads (time, status, tenant), so the count reads no rows.
CREATE TABLE jobworks_engines (
    id TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX jobworks_engines_seen ON jobworks_engines (seen_at);

DROP INDEX jobworks_jobs_ended;
CREATE INDEX jobworks_jobs_ended ON jobworks_jobs (completed_at, status, tenant)
    WHERE completed_at IS NOT NULL;

-- Jobs waiting for their parents, for the counts of open jobs (queued and running jobs
-- have their own partial indexes already).
CREATE INDEX jobworks_jobs_waiting ON jobworks_jobs (queue, tenant)
    WHERE status = 'waiting';
