-- jobworks schema v5 for SQLite: every job waits in a queue (and may name a concurrency
-- key); a queue's settings are stored, so every engine on the store obeys them.
ALTER TABLE jobworks_jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobworks_jobs ADD COLUMN concurrency_key TEXT;
DROP INDEX jobworks_jobs_ready;
CREATE INDEX jobworks_jobs_ready ON jobworks_jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued';

CREATE TABLE jobworks_queues (
    name       TEXT    NOT NULL PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    max_running INTEGER,
    -- A rate limit: rate_limit starts per rate_period_ms, rate_burst at once; rate_tat is
    -- the state of its bucket (microseconds; NULL: full).
    rate_limit     INTEGER,
    rate_period_ms INTEGER,
    rate_burst     INTEGER,
    rate_tat       INTEGER,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
