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
    -- A rate limit: rate_limit starts per rate_period_ms, rate_burst at once; rate_tat is
    -- the state of its bucket (NULL: full).
    rate_limit     integer,
    rate_period_ms bigint,
    rate_burst     integer,
    rate_tat       timestamptz,
    updated_at  timestamptz NOT NULL
);

-- The claim, in one round trip: the queue's settings decide how many jobs it may take.
-- A queue with `max_running` or a rate limit is claimed from by one claimer at a time
-- (the lock on its settings row), and each statement after the lock sees the claims
-- committed before it, so claims on many engines together keep to the limits; jobs count
-- while their lease is unexpired. The rate limit is the generic cell rate algorithm in
-- whole microseconds (`rules::RateWindow` in the crate). The answer is the claimed jobs,
-- then one row without a job that gives the room the claim had (-1: the queue is paused),
-- whether `max_running` held back a due job, and, when the rate limit is what stopped the
-- claim, when the next job may start.
CREATE FUNCTION jobworks_claim(p_queue text, p_now timestamptz, p_types text[], p_limit integer,
                               p_expires timestamptz, p_channel text)
RETURNS TABLE (job jobworks_jobs, room integer, next_token timestamptz, held_back boolean)
LANGUAGE plpgsql AS $$
DECLARE
    q jobworks_queues%ROWTYPE;
    stored boolean;
    take integer;
    taken integer := 0;
    allowed integer;
    interval_us bigint;
    tolerance bigint;
    start_at timestamptz;
    ahead bigint;
BEGIN
    room := p_limit;
    next_token := NULL;
    held_back := false;
    SELECT * INTO q FROM jobworks_queues WHERE name = p_queue;
    stored := FOUND;
    IF stored AND (q.max_running IS NOT NULL OR q.rate_limit IS NOT NULL) THEN
        SELECT * INTO q FROM jobworks_queues WHERE name = p_queue FOR UPDATE;
    END IF;
    IF stored AND q.paused THEN
        room := -1;
        job := NULL;
        RETURN NEXT;
        RETURN;
    END IF;
    IF stored AND q.max_running IS NOT NULL THEN
        room := least(p_limit, greatest(0, q.max_running - (
            SELECT count(*) FROM jobworks_jobs j
            WHERE j.status = 'running' AND j.queue = p_queue AND j.lease_expires_at > p_now)));
        IF room < p_limit THEN
            -- Whether the limit holds back a due job: then the claimer waits for a slot.
            held_back := room < (SELECT count(*) FROM (
                SELECT 1 FROM jobworks_jobs j
                WHERE j.queue = p_queue AND j.status = 'queued' AND j.run_at <= p_now
                    AND (p_types IS NULL OR j.job_type = ANY(p_types))
                LIMIT room + 1) AS due);
        END IF;
    END IF;
    take := room;
    IF stored AND q.rate_limit IS NOT NULL THEN
        interval_us := greatest(1, (q.rate_period_ms * 1000) / q.rate_limit);
        tolerance := interval_us * (q.rate_burst - 1);
        start_at := greatest(coalesce(q.rate_tat, p_now), p_now);
        ahead := (extract(epoch FROM start_at - p_now) * 1000000)::bigint;
        IF ahead > tolerance THEN
            allowed := 0;
        ELSE
            allowed := least((tolerance - ahead) / interval_us + 1, q.rate_burst);
        END IF;
        take := least(room, allowed);
    END IF;
    IF take > 0 THEN
        RETURN QUERY
        WITH picked AS (
            SELECT j.id FROM jobworks_jobs j
            WHERE j.queue = p_queue AND j.status = 'queued' AND j.run_at <= p_now
                AND (p_types IS NULL OR j.job_type = ANY(p_types))
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT take FOR UPDATE SKIP LOCKED
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
        SELECT c.claimed_row, room, NULL::timestamptz, held_back
        FROM claimed c, (SELECT count(*) FROM told) AS t, relaxed;
        GET DIAGNOSTICS taken = ROW_COUNT;
    END IF;
    IF stored AND q.rate_limit IS NOT NULL THEN
        IF taken > 0 THEN
            UPDATE jobworks_queues
            SET rate_tat = start_at + (taken * interval_us) * interval '1 microsecond'
            WHERE name = p_queue;
        END IF;
        IF allowed < room AND taken = allowed THEN
            next_token := start_at + (taken * interval_us - tolerance) * interval '1 microsecond';
        END IF;
    END IF;
    job := NULL;
    RETURN NEXT;
END $$;
