-- jobworks schema v11 for PostgreSQL: a heartbeat changes no indexed column, so it is a
-- HOT update (no new index entries; the old row version is pruned without a vacuum). The
-- reaper's index held the lease expiry, which every heartbeat moves; running jobs are few
-- (at most every engine's slots), so it and the count of a queue's running jobs read them
-- by queue, and check the expiry on the row.
DROP INDEX jobworks_jobs_leases;
CREATE INDEX jobworks_jobs_running ON jobworks_jobs (queue) WHERE status = 'running';

-- Claims no longer notify in their transaction: the store announces the claimed jobs
-- after the commit, many commits in one notification (a NOTIFY takes a lock of the whole
-- database at commit, one claim after another). `p_channel` is kept for the signature.
CREATE OR REPLACE FUNCTION jobworks_claim(p_queue text, p_now timestamptz, p_types text[], p_limit integer,
                               p_expires timestamptz, p_channel text)
RETURNS TABLE (job jobworks_jobs, pos bigint, room integer, next_token timestamptz,
               held_back boolean)
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
    scan integer;
    per_tenant integer;
    max_tenants integer;
    cursor_at text COLLATE "C";
    probe text COLLATE "C";
    next_tenant text COLLATE "C";
    last_tenant text COLLATE "C";
    -- The last tenant (by name) with queued jobs, and another one if any.
    last_queued text COLLATE "C";
    earlier_queued text COLLATE "C";
    wrapped boolean;
    tenants integer := 0;
    found_ids uuid[];
    candidates uuid[] := '{}';
    picked uuid[];
    eligible integer := 0;
BEGIN
    room := p_limit;
    next_token := NULL;
    held_back := false;
    pos := NULL;
    SELECT * INTO q FROM jobworks_queues WHERE name = p_queue;
    stored := FOUND;
    IF stored AND (q.max_running IS NOT NULL OR q.max_running_per_key IS NOT NULL
                   OR q.rate_limit IS NOT NULL) THEN
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
    IF take = 0 THEN
        -- Nothing to take: only whether `max_running` holds back a due job matters.
        IF room < p_limit THEN
            held_back := room < (SELECT count(*) FROM (
                SELECT 1 FROM jobworks_jobs j
                WHERE j.queue = p_queue AND j.status = 'queued' AND j.run_at <= p_now
                    AND (p_types IS NULL OR j.job_type = ANY(p_types))
                LIMIT room + 1) AS due);
        END IF;
    ELSE
        scan := CASE WHEN room < p_limit THEN room + 1 ELSE room END;
        per_tenant := CASE WHEN stored AND q.max_running_per_key IS NOT NULL
                           THEN scan * 4 ELSE scan END;
        max_tenants := least(scan, 16);
        -- Where the turn stands, and whether one tenant or more have queued jobs: the
        -- last tenant, and any before it. Both probes read the index from its end, away
        -- from the entries that claims left behind at its start (their order, which only
        -- the queue's index has, keeps the planner on it).
        SELECT (SELECT t.tenant FROM jobworks_turns t WHERE t.queue = p_queue), l.tenant,
            (SELECT j.tenant FROM jobworks_jobs j
             WHERE j.queue = p_queue AND j.status = 'queued' AND j.tenant < l.tenant
             ORDER BY j.tenant DESC, j.priority, j.run_at DESC, j.id DESC LIMIT 1)
        INTO cursor_at, last_queued, earlier_queued
        FROM (SELECT j.tenant FROM jobworks_jobs j
              WHERE j.queue = p_queue AND j.status = 'queued'
              ORDER BY j.tenant DESC, j.priority, j.run_at DESC, j.id DESC LIMIT 1) AS l;
        IF last_queued IS NULL THEN
            NULL; -- nothing queued
        ELSIF earlier_queued IS NULL AND NOT (stored AND q.max_running_per_key IS NOT NULL) THEN
            -- One tenant and no key limit: its first due jobs are the picks (the rule's
            -- answer without gathering).
            SELECT array_agg(d.id ORDER BY d.priority DESC, d.run_at, d.id)
            INTO candidates FROM (
                SELECT j.id, j.priority, j.run_at FROM jobworks_jobs j
                WHERE j.queue = p_queue AND j.tenant = last_queued AND j.status = 'queued'
                    AND j.run_at <= p_now AND (p_types IS NULL OR j.job_type = ANY(p_types))
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT per_tenant FOR UPDATE SKIP LOCKED) AS d;
            candidates := coalesce(candidates, '{}');
            picked := candidates[1:take];
            eligible := cardinality(candidates);
            last_tenant := last_queued;
        ELSE
            -- Gather in turn after the tenant served last, then pick.
            probe := cursor_at;
            wrapped := cursor_at IS NULL;
            WHILE tenants < max_tenants LOOP
                -- The next tenant with queued jobs, from the index (two statements, so that
                -- each plan uses the index's order).
                next_tenant := NULL;
                IF probe IS NULL THEN
                    SELECT j.tenant INTO next_tenant FROM jobworks_jobs j
                    WHERE j.queue = p_queue AND j.status = 'queued'
                    ORDER BY j.tenant, j.priority DESC, j.run_at, j.id LIMIT 1;
                ELSE
                    SELECT j.tenant INTO next_tenant FROM jobworks_jobs j
                    WHERE j.queue = p_queue AND j.status = 'queued' AND j.tenant > probe
                    ORDER BY j.tenant, j.priority DESC, j.run_at, j.id LIMIT 1;
                END IF;
                IF next_tenant IS NULL THEN
                    EXIT WHEN wrapped;
                    wrapped := true;
                    probe := NULL;
                    CONTINUE;
                END IF;
                EXIT WHEN wrapped AND cursor_at IS NOT NULL AND next_tenant > cursor_at;
                probe := next_tenant;
                SELECT array_agg(d.id ORDER BY d.priority DESC, d.run_at, d.id)
                INTO found_ids FROM (
                    SELECT j.id, j.priority, j.run_at FROM jobworks_jobs j
                    WHERE j.queue = p_queue AND j.tenant = next_tenant AND j.status = 'queued'
                        AND j.run_at <= p_now AND (p_types IS NULL OR j.job_type = ANY(p_types))
                    ORDER BY j.priority DESC, j.run_at, j.id
                    LIMIT per_tenant FOR UPDATE SKIP LOCKED) AS d;
                IF found_ids IS NOT NULL THEN
                    candidates := candidates || found_ids;
                    tenants := tenants + 1;
                    last_tenant := next_tenant;
                END IF;
            END LOOP;
            IF tenants = 1 AND NOT (stored AND q.max_running_per_key IS NOT NULL) THEN
                -- One tenant and no key limit: its jobs in claim order are the picks.
                picked := candidates[1:take];
                eligible := cardinality(candidates);
            ELSIF tenants > 0 THEN
                WITH c AS (
                    SELECT j.id, j.tenant, j.concurrency_key, j.priority, j.run_at
                    FROM jobworks_jobs j WHERE j.id = ANY(candidates)
                ), busy AS (
                    SELECT r.concurrency_key, count(*) AS n FROM jobworks_jobs r
                    WHERE r.queue = p_queue AND r.status = 'running' AND r.lease_expires_at > p_now
                        AND q.max_running_per_key IS NOT NULL
                        AND r.concurrency_key IN (SELECT c.concurrency_key FROM c)
                    GROUP BY r.concurrency_key
                ), keyed AS (
                    SELECT c.*, row_number() OVER (PARTITION BY c.concurrency_key
                        ORDER BY c.priority DESC, c.run_at, c.id) AS key_rank
                    FROM c
                ), free AS (
                    SELECT k.* FROM keyed k LEFT JOIN busy b ON b.concurrency_key = k.concurrency_key
                    WHERE k.concurrency_key IS NULL OR NOT stored OR q.max_running_per_key IS NULL
                        OR k.key_rank + coalesce(b.n, 0) <= q.max_running_per_key
                ), turns AS (
                    SELECT f.id, f.tenant,
                        row_number() OVER (PARTITION BY f.tenant
                            ORDER BY f.priority DESC, f.run_at, f.id) AS turn,
                        (cursor_at IS NOT NULL AND f.tenant <= cursor_at) AS later
                    FROM free f
                ), chosen AS (
                    SELECT t.* FROM turns t ORDER BY t.turn, t.later, t.tenant LIMIT take
                )
                SELECT array_agg(ch.id ORDER BY ch.turn, ch.later, ch.tenant),
                    (array_agg(ch.tenant ORDER BY ch.turn DESC, ch.later DESC, ch.tenant DESC))[1],
                    (SELECT count(*) FROM free)
                INTO picked, last_tenant, eligible FROM chosen ch;
            END IF;
        END IF;
        IF picked IS NOT NULL AND cardinality(picked) > 0 THEN
            RETURN QUERY
            WITH order_of AS (
                SELECT o.id, o.pos FROM unnest(picked) WITH ORDINALITY AS o(id, pos)
            ), claimed AS (
                UPDATE jobworks_jobs j SET status = 'running', attempts = j.attempts + 1,
                    started_at = p_now, progress = NULL, updated_at = p_now,
                    revision = j.revision + 1, event_seq = j.event_seq + 1,
                    lease_id = gen_random_uuid(), lease_expires_at = p_expires
                FROM order_of WHERE j.id = order_of.id
                RETURNING j AS claimed_row, j.id, j.event_seq, j.attempts, order_of.pos
            ), started AS (
                INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, created_at)
                SELECT c.id, c.event_seq, 'started', 'public', 'attempt ' || c.attempts, p_now
                FROM claimed c
            ), relaxed AS (
                SELECT set_config('synchronous_commit', 'off', true)
            )
            SELECT c.claimed_row, c.pos, room, NULL::timestamptz, false
            FROM claimed c, relaxed;
            GET DIAGNOSTICS taken = ROW_COUNT;
            IF last_tenant IS DISTINCT FROM cursor_at THEN
                INSERT INTO jobworks_turns (queue, tenant) VALUES (p_queue, last_tenant)
                ON CONFLICT (queue) DO UPDATE SET tenant = EXCLUDED.tenant;
            END IF;
        END IF;
        held_back := (room < p_limit AND cardinality(candidates) > room)
            OR (eligible < cardinality(candidates) AND taken < take);
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
    pos := NULL;
    job := NULL;
    RETURN NEXT;
END $$;
