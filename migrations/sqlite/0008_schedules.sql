-- jobworks schema v8 for SQLite: schedules. A schedule is a tenant's JSON body (its
-- definition and how far its ticks were made) with a revision that guards every write;
-- a job made by a tick keeps the schedule's id and the tick's time.
CREATE TABLE jobworks_schedules (
    id BLOB PRIMARY KEY,
    tenant TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX jobworks_schedules_tenant ON jobworks_schedules (tenant, id);

ALTER TABLE jobworks_jobs ADD COLUMN schedule_id BLOB;
ALTER TABLE jobworks_jobs ADD COLUMN scheduled_for INTEGER;

CREATE INDEX jobworks_jobs_schedule ON jobworks_jobs (tenant, schedule_id, id)
    WHERE schedule_id IS NOT NULL;
