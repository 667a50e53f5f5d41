-- jobworks schema v2 for PostgreSQL: stored report templates, one JSON document each.
CREATE TABLE jobworks_templates (
    id         uuid        PRIMARY KEY,
    tenant     text        NOT NULL,
    name       text        NOT NULL,
    body       jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX jobworks_templates_tenant ON jobworks_templates (tenant, id);
