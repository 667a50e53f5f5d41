-- jobworks schema v5 for PostgreSQL: every job waits in a queue (and may name a
-- concurrency key); a queue's settings are stored, so every engine on the store obeys them.
ALTER TABLE jobworks_jobs ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE jobworks_jobs ADD COLUMN concurrency_key text;
DROP INDEX jobworks_jobs_ready;
CREATE INDEX jobworks_jobs_ready ON jobworks_jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued';

CREATE TABLE jobworks_queues (
    name       text        NOT NULL PRIMARY KEY,
    paused      boolean     NOT NULL DEFAULT false,
    max_running integer,
    updated_at  timestamptz NOT NULL
);

-- The claim, in one round trip: the queue's settings decide how many jobs it may take.
-- A queue with `max_running` is claimed from by one claimer at a time (the lock on its
-- settings row), and each statement after the lock sees the claims committed before it,
-- so claims on many engines together never run more than the limit; jobs count while
-- their lease is unexpired. Each row is a claimed job with the room the claim had (-1: the
-- queue is paused); a claim that took nothing answers one row without a job, so the room
-- is always known.
CREATE FUNCTION jobworks_claim(p_queue text, p_now timestamptz, p_types text[], p_limit integer,
                               p_expires timestamptz, p_channel text)
RETURNS TABLE (job jobworks_jobs, room integer) LANGUAGE plpgsql AS $$
DECLARE
    q jobworks_queues%ROWTYPE;
BEGIN
    room := p_limit;
    SELECT * INTO q FROM jobworks_queues WHERE name = p_queue;
    IF FOUND AND q.max_running IS NOT NULL THEN
        SELECT * INTO q FROM jobworks_queues WHERE name = p_queue FOR UPDATE;
    END IF;
    IF FOUND AND q.paused THEN
        room := -1;
    ELSIF FOUND AND q.max_running IS NOT NULL THEN
        room := least(p_limit, greatest(0, q.max_running - (
            SELECT count(*) FROM jobworks_jobs j
            WHERE j.status = 'running' AND j.queue = p_queue AND j.lease_expires_at > p_now)));
    END IF;
    IF room > 0 THEN
        RETURN QUERY
        WITH picked AS (
            SELECT j.id FROM jobworks_jobs j
            WHERE j.queue = p_queue AND j.status = 'queued' AND j.run_at <= p_now
                AND (p_types IS NULL OR j.job_type = ANY(p_types))
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT room FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE jobworks_jobs j SET status = 'running', attempts = j.attempts + 1,
                started_at = p_now, progress = NULL, updated_at = p_now, revision = j.revision + 1,
                event_seq = j.event_seq + 1, lease_id = gen_random_uuid(), lease_expires_at = p_expires
            FROM picked WHERE j.id = picked.id
            RETURNING j AS claimed_row, j.id, j.event_seq, j.attempts
        ), started AS (
            INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, created_at)
            SELECT c.id, c.event_seq, 'started', 'public', 'attempt ' || c.attempts, p_now
            FROM claimed c
        ), told AS (
            SELECT pg_notify(p_channel, string_agg(c.id::text, ','))
            FROM claimed c HAVING count(*) > 0
        ), relaxed AS (
            SELECT set_config('synchronous_commit', 'off', true)
        )
        SELECT c.claimed_row, room FROM claimed c, (SELECT count(*) FROM told) AS t, relaxed;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    job := NULL;
    RETURN NEXT;
END $$;
