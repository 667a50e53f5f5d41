-- jobworks schema v4 for SQLite: report templates are stored documents, which the store
-- keeps without reading.
ALTER TABLE jobworks_templates RENAME TO jobworks_documents;
DROP INDEX jobworks_templates_tenant;
CREATE INDEX jobworks_documents_tenant ON jobworks_documents (tenant, id);
