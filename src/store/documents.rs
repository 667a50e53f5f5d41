//! Stored documents: named JSON bodies of a tenant, which the store keeps without reading
//! them (report templates are documents; the report layer gives them their meaning).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Result;
use crate::job::TenantId;

crate::job::ulid_type!(
    /// A stored document's id: a ULID from the generator of job ids, so ids minted by one
    /// process strictly increase and newest-first listings follow creation order.
    DocumentId
);

/// A document as stored: a tenant's named JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// Its id.
    pub id: DocumentId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Its name.
    pub name: String,
    /// Its body, kept as given.
    pub body: Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl StoredDocument {
    /// A new document of `tenant`, created now.
    pub fn new(tenant: TenantId, name: impl Into<String>, body: Value) -> Self {
        let now = crate::job::now();
        StoredDocument {
            id: DocumentId::new(),
            tenant,
            name: name.into(),
            body,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Which page of a tenant's documents to read: newest first, at most `limit` (1 to 1,000;
/// 50 by default), older than `before` (the last id of the previous page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DocumentPage {
    /// Most documents to return.
    pub limit: usize,
    /// Only documents with a smaller (older) id.
    pub before: Option<DocumentId>,
}

impl Default for DocumentPage {
    fn default() -> Self {
        DocumentPage {
            limit: 50,
            before: None,
        }
    }
}

impl DocumentPage {
    /// At most `limit` documents (clamped to 1 to 1,000).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, 1000);
        self
    }

    /// Only documents older than `id`.
    pub fn before(mut self, id: Option<DocumentId>) -> Self {
        self.before = id;
        self
    }

    /// The limit, clamped.
    pub(crate) fn size(&self) -> usize {
        self.limit.clamp(1, 1000)
    }

    /// The exclusive upper bound of ids, as 128 bits.
    pub(crate) fn upper(&self) -> u128 {
        self.before.map_or(u128::MAX, DocumentId::to_u128)
    }
}

/// Where documents are kept. Another tenant's document is `None`, like a missing one.
/// Implemented by [`MemoryStore`](crate::MemoryStore) and the SQL backends; `testing::run_document_store_suite`
/// checks an implementation.
#[async_trait]
pub trait DocumentStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a new document.
    async fn create_document(&self, document: StoredDocument) -> Result<StoredDocument>;

    /// A document of the tenant.
    async fn document(&self, tenant: &TenantId, id: DocumentId) -> Result<Option<StoredDocument>>;

    /// A page of the tenant's documents, newest first (by id).
    async fn documents(&self, tenant: &TenantId, page: DocumentPage)
    -> Result<Vec<StoredDocument>>;

    /// Replaces a document's name and body; `None` when the tenant has no such document.
    async fn update_document(
        &self,
        tenant: &TenantId,
        id: DocumentId,
        name: &str,
        body: &Value,
    ) -> Result<Option<StoredDocument>>;

    /// Deletes a document; `false` when the tenant has no such document.
    async fn delete_document(&self, tenant: &TenantId, id: DocumentId) -> Result<bool>;
}

#[async_trait]
impl<T: DocumentStore + ?Sized> DocumentStore for Arc<T> {
    async fn create_document(&self, document: StoredDocument) -> Result<StoredDocument> {
        (**self).create_document(document).await
    }
    async fn document(&self, tenant: &TenantId, id: DocumentId) -> Result<Option<StoredDocument>> {
        (**self).document(tenant, id).await
    }
    async fn documents(
        &self,
        tenant: &TenantId,
        page: DocumentPage,
    ) -> Result<Vec<StoredDocument>> {
        (**self).documents(tenant, page).await
    }
    async fn update_document(
        &self,
        tenant: &TenantId,
        id: DocumentId,
        name: &str,
        body: &Value,
    ) -> Result<Option<StoredDocument>> {
        (**self).update_document(tenant, id, name, body).await
    }
    async fn delete_document(&self, tenant: &TenantId, id: DocumentId) -> Result<bool> {
        (**self).delete_document(tenant, id).await
    }
}
