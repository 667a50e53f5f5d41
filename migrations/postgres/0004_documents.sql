-- jobworks schema v4 for PostgreSQL: report templates are stored documents, which the
-- store keeps without reading.
ALTER TABLE jobworks_templates RENAME TO jobworks_documents;
ALTER INDEX jobworks_templates_tenant RENAME TO jobworks_documents_tenant;
