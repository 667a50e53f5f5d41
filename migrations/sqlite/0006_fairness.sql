-- jobworks schema v6 for SQLite: claims take tenants in turn, and a queue may limit how
-- many of its jobs with one concurrency key run at once.
ALTER TABLE jobworks_queues ADD COLUMN max_running_per_key INTEGER;
-- The tenant each queue's last claim served last: the next claim's turn starts after it.
CREATE TABLE jobworks_turns (
    queue  TEXT NOT NULL PRIMARY KEY,
    tenant TEXT NOT NULL
);
DROP INDEX jobworks_jobs_ready;
CREATE INDEX jobworks_jobs_ready ON jobworks_jobs (queue, tenant, priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX jobworks_jobs_running_keys ON jobworks_jobs (queue, concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;
