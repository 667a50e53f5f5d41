-- jobworks schema v7 for SQLite: workflows. A workflow's job keeps its parents (a JSON
-- array of ids, written once), its workflow's id, and its link (a JSON object: key,
-- dependents, counts of pending and failed parents, flags), which the state machine
-- changes as its parents end.
ALTER TABLE jobworks_jobs ADD COLUMN parents TEXT;
ALTER TABLE jobworks_jobs ADD COLUMN workflow_id BLOB;
ALTER TABLE jobworks_jobs ADD COLUMN workflow TEXT;

CREATE INDEX jobworks_jobs_workflow ON jobworks_jobs (tenant, workflow_id, id)
    WHERE workflow_id IS NOT NULL;
