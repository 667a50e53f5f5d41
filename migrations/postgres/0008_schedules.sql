-- jobworks schema v8 for PostgreSQL: schedules. A schedule is a tenant's JSON body (its
-- definition and how far its ticks were made) with a revision that guards every write;
-- a job made by a tick keeps the schedule's id and the tick's time.
CREATE TABLE jobworks_schedules (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    revision bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX jobworks_schedules_tenant ON jobworks_schedules (tenant, id);

ALTER TABLE jobworks_jobs ADD COLUMN schedule_id uuid;
ALTER TABLE jobworks_jobs ADD COLUMN scheduled_for timestamptz;

CREATE INDEX jobworks_jobs_schedule ON jobworks_jobs (tenant, schedule_id, id)
    WHERE schedule_id IS NOT NULL;
