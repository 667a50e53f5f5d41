-- jobworks schema v1 for PostgreSQL. Unqualified names: the store sets search_path to its
-- schema on every connection.
CREATE TABLE jobworks_jobs (
    id               uuid        NOT NULL PRIMARY KEY,
    tenant           text        NOT NULL,
    job_type         text        NOT NULL,
    input            jsonb       NOT NULL,
    status           text        NOT NULL,
    result           jsonb,
    error            text,
    attempts         integer     NOT NULL,
    max_attempts     integer     NOT NULL,
    priority         integer     NOT NULL,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL,
    idempotency_key  text,
    progress         jsonb,
    cancel_requested boolean     NOT NULL DEFAULT false,
    revision         bigint      NOT NULL,
    event_seq        bigint      NOT NULL,
    lease_id         uuid,
    lease_expires_at timestamptz
);

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
    job_id     uuid        NOT NULL,
    seq        bigint      NOT NULL,
    kind       text        NOT NULL,
    visibility text        NOT NULL,
    message    text        NOT NULL,
    payload    jsonb,
    artifacts  jsonb,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE jobworks_artifacts (
    job_id       uuid        NOT NULL,
    name         text        NOT NULL,
    kind         text        NOT NULL,
    role         text        NOT NULL,
    content_type text        NOT NULL,
    size_bytes   bigint      NOT NULL,
    checksum     text        NOT NULL,
    metadata     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (job_id, name)
);
