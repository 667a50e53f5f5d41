-- jobworks schema v11 for PostgreSQL: a heartbeat changes no indexed column, so it is a
-- HOT update (no new index entries; the old row version is pruned without a vacuum). The
-- reaper's index held the lease expiry, which every heartbeat moves; running jobs are few
-- (at most every engine's slots), so it and the count of a queue's running jobs read them
-- by queue, and check the expiry on the row.
DROP INDEX jobworks_jobs_leases;
CREATE INDEX jobworks_jobs_running ON jobworks_jobs (queue) WHERE status = 'running';
