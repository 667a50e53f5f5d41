-- jobworks schema v2 for SQLite: stored report templates, one JSON document each.
CREATE TABLE jobworks_templates (
    id         BLOB    NOT NULL PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX jobworks_templates_tenant ON jobworks_templates (tenant, id);
