-- jobworks schema v7 for PostgreSQL: workflows. A workflow's job keeps its parents
-- (written once), its workflow's id, and its link (key, dependents, counts of pending and
-- failed parents, flags), which the state machine changes as its parents end.
ALTER TABLE jobworks_jobs ADD COLUMN parents jsonb;
ALTER TABLE jobworks_jobs ADD COLUMN workflow_id uuid;
ALTER TABLE jobworks_jobs ADD COLUMN workflow jsonb;

CREATE INDEX jobworks_jobs_workflow ON jobworks_jobs (tenant, workflow_id, id)
    WHERE workflow_id IS NOT NULL;
