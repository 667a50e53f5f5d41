-- jobworks schema v10 for SQLite: the W3C trace context a job was submitted under, as
-- JSON ({"traceparent": …, "tracestate": …}), so that its attempts continue that trace.
ALTER TABLE jobworks_jobs ADD COLUMN trace TEXT;
