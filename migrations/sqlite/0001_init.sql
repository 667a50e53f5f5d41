-- jobworks schema v1 for SQLite. Times are microseconds since the Unix epoch; ids are the
-- 16 bytes of the ULID (big-endian, so they sort by creation time); JSON is text.
CREATE TABLE jobworks_jobs (
    id               BLOB    NOT NULL PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    job_type         TEXT    NOT NULL,
    input            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    result           TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    completed_at     INTEGER,
    updated_at       INTEGER NOT NULL,
    idempotency_key  TEXT,
    progress         TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    revision         INTEGER NOT NULL,
    event_seq        INTEGER NOT NULL,
    lease_id         BLOB,
    lease_expires_at INTEGER
) WITHOUT ROWID;

CREATE UNIQUE INDEX jobworks_jobs_idempotency ON jobworks_jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobworks_jobs_ready ON jobworks_jobs (priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX jobworks_jobs_leases ON jobworks_jobs (lease_expires_at)
    WHERE status = 'running';
CREATE INDEX jobworks_jobs_tenant ON jobworks_jobs (tenant, id);
CREATE INDEX jobworks_jobs_ended ON jobworks_jobs (completed_at)
    WHERE completed_at IS NOT NULL;

CREATE TABLE jobworks_events (
    job_id     BLOB    NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    visibility TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    payload    TEXT,
    artifacts  TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE jobworks_artifacts (
    job_id       BLOB    NOT NULL,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size_bytes   INTEGER NOT NULL,
    checksum     TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;
