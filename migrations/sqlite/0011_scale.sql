-- jobworks schema v11 for SQLite: the running jobs are indexed by queue, not by lease
-- expiry, so a heartbeat writes no index entry. Running jobs are few (at most the
-- engine's slots): the reaper and the count of a queue's running jobs read them by queue
-- and check the expiry on the row.
DROP INDEX jobworks_jobs_leases;
CREATE INDEX jobworks_jobs_running ON jobworks_jobs (queue) WHERE status = 'running';
