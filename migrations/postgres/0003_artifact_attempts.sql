-- jobworks schema v3 for PostgreSQL: an artifact's bytes live in the folder of the attempt
-- that wrote them; 0 marks records made before (their bytes are in the job's folder).
ALTER TABLE jobworks_artifacts ADD COLUMN attempt integer NOT NULL DEFAULT 0;
