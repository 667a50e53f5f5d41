//! Stored report templates: documents of a [`DocumentStore`] whose bodies are
//! [`ReportTemplate`]s. The store keeps the JSON; this module reads and writes it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::ReportTemplate;
use crate::error::{Error, Result};
use crate::job::TenantId;
use crate::store::{DocumentId, DocumentPage, DocumentStore, StoredDocument};

/// A stored template's id: the id of its document.
pub type TemplateId = DocumentId;

/// A template as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTemplate {
    /// Its id.
    pub id: TemplateId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Its name.
    pub name: String,
    /// The full template.
    pub template: ReportTemplate,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl StoredTemplate {
    /// A new template of `tenant`, created now.
    pub fn new(tenant: TenantId, name: impl Into<String>, template: ReportTemplate) -> Self {
        let now = crate::job::now();
        StoredTemplate {
            id: TemplateId::new(),
            tenant,
            name: name.into(),
            template,
            created_at: now,
            updated_at: now,
        }
    }

    /// The template a document holds.
    ///
    /// # Errors
    /// [`Error::Backend`] when its body is not a template (the store was written by
    /// something else).
    pub fn from_document(document: StoredDocument) -> Result<Self> {
        let template = serde_json::from_value(document.body).map_err(|e| Error::Backend {
            backend: "templates",
            source: format!("document {} is not a report template: {e}", document.id).into(),
        })?;
        Ok(StoredTemplate {
            id: document.id,
            tenant: document.tenant,
            name: document.name,
            template,
            created_at: document.created_at,
            updated_at: document.updated_at,
        })
    }

    /// The document that holds this template.
    pub fn into_document(self) -> StoredDocument {
        StoredDocument {
            id: self.id,
            tenant: self.tenant,
            name: self.name,
            body: body(&self.template),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

fn body(template: &ReportTemplate) -> serde_json::Value {
    serde_json::to_value(template).expect("templates serialise")
}

/// A tenant's stored templates, kept as documents of a [`DocumentStore`] (usually the job
/// store: every backend is one). Another tenant's template reads like a missing one.
#[derive(Debug, Clone)]
pub struct Templates {
    documents: Arc<dyn DocumentStore>,
}

impl Templates {
    /// Templates in `documents`.
    pub fn new(documents: impl DocumentStore) -> Self {
        Templates {
            documents: Arc::new(documents),
        }
    }

    /// Stores a new template.
    ///
    /// # Errors
    /// Store errors.
    pub async fn create(&self, template: StoredTemplate) -> Result<StoredTemplate> {
        let stored = self
            .documents
            .create_document(template.into_document())
            .await?;
        StoredTemplate::from_document(stored)
    }

    /// A template of the tenant.
    ///
    /// # Errors
    /// Store errors; a document that is not a template.
    pub async fn get(&self, tenant: &TenantId, id: TemplateId) -> Result<Option<StoredTemplate>> {
        let found = self.documents.document(tenant, id).await?;
        found.map(StoredTemplate::from_document).transpose()
    }

    /// A page of the tenant's templates, newest first.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn list(&self, tenant: &TenantId, page: DocumentPage) -> Result<Vec<StoredTemplate>> {
        let found = self.documents.documents(tenant, page).await?;
        found
            .into_iter()
            .map(StoredTemplate::from_document)
            .collect()
    }

    /// Replaces a template's name and content; `None` when the tenant has no such template.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: TemplateId,
        name: &str,
        template: &ReportTemplate,
    ) -> Result<Option<StoredTemplate>> {
        let updated = self
            .documents
            .update_document(tenant, id, name, &body(template))
            .await?;
        updated.map(StoredTemplate::from_document).transpose()
    }

    /// Deletes a template; `false` when the tenant has no such template.
    ///
    /// # Errors
    /// Store errors.
    pub async fn delete(&self, tenant: &TenantId, id: TemplateId) -> Result<bool> {
        self.documents.delete_document(tenant, id).await
    }
}
