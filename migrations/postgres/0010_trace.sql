-- jobworks schema v10 for PostgreSQL: the W3C trace context a job was submitted under, as
-- JSON text ({"traceparent": …, "tracestate": …}; never queried, so not jsonb), so that
-- its attempts continue that trace.
ALTER TABLE jobworks_jobs ADD COLUMN trace text;
