-- jobworks schema v5 for PostgreSQL: every job waits in a queue (and may name a
-- concurrency key); a queue's settings are stored, so every engine on the store obeys them.
ALTER TABLE jobworks_jobs ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE jobworks_jobs ADD COLUMN concurrency_key text;
DROP INDEX jobworks_jobs_ready;
CREATE INDEX jobworks_jobs_ready ON jobworks_jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued';

CREATE TABLE jobworks_queues (
    name       text        NOT NULL PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL
);
