//! Stored report templates, tenant-scoped, in every backend.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ulid::Ulid;

use super::model::ReportTemplate;
use crate::{Result, TenantId};

/// A stored template's id (a ULID).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(Ulid);

impl TemplateId {
    /// A fresh id. Ids minted by one process strictly increase (they come from the
    /// generator of job ids), so newest-first listings follow creation order.
    pub fn new() -> Self {
        TemplateId(Ulid(crate::JobId::new().to_u128()))
    }

    /// The id as 128 bits.
    pub fn to_u128(self) -> u128 {
        self.0.0
    }

    /// The id of 128 bits.
    pub fn from_u128(bits: u128) -> Self {
        TemplateId(Ulid(bits))
    }
}

impl Default for TemplateId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateId({})", self.0)
    }
}

impl FromStr for TemplateId {
    type Err = crate::ParseJobIdError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        // The same two spellings as job ids: a ULID or a UUID.
        s.parse::<crate::JobId>()
            .map(|id| TemplateId::from_u128(id.to_u128()))
    }
}

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
}

/// Which page of a tenant's templates to read: newest first, at most `limit` (1 to 1,000;
/// 50 by default), older than `before` (the last id of the previous page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TemplatePage {
    /// Most templates to return.
    pub limit: usize,
    /// Only templates with a smaller (older) id.
    pub before: Option<TemplateId>,
}

impl Default for TemplatePage {
    fn default() -> Self {
        TemplatePage {
            limit: 50,
            before: None,
        }
    }
}

impl TemplatePage {
    /// At most `limit` templates (clamped to 1 to 1,000).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, 1000);
        self
    }

    /// Only templates older than `id`.
    pub fn before(mut self, id: Option<TemplateId>) -> Self {
        self.before = id;
        self
    }

    /// The limit, clamped.
    pub(crate) fn size(&self) -> usize {
        self.limit.clamp(1, 1000)
    }

    /// The exclusive upper bound of ids, as 128 bits.
    pub(crate) fn upper(&self) -> u128 {
        self.before.map_or(u128::MAX, TemplateId::to_u128)
    }
}

/// Where report templates are kept. Another tenant's template is `None`, like a missing
/// one. Implemented by [`MemoryStore`](crate::MemoryStore) and the SQL backends.
#[async_trait]
pub trait TemplateStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a new template.
    async fn create_template(&self, template: StoredTemplate) -> Result<StoredTemplate>;

    /// A template of the tenant.
    async fn template(&self, tenant: &TenantId, id: TemplateId) -> Result<Option<StoredTemplate>>;

    /// A page of the tenant's templates, newest first (by id).
    async fn templates(&self, tenant: &TenantId, page: TemplatePage)
    -> Result<Vec<StoredTemplate>>;

    /// Replaces a template's name and content; `None` when the tenant has no such template.
    async fn update_template(
        &self,
        tenant: &TenantId,
        id: TemplateId,
        name: &str,
        template: &ReportTemplate,
    ) -> Result<Option<StoredTemplate>>;

    /// Deletes a template; `false` when the tenant has no such template.
    async fn delete_template(&self, tenant: &TenantId, id: TemplateId) -> Result<bool>;
}

#[async_trait]
impl<T: TemplateStore + ?Sized> TemplateStore for Arc<T> {
    async fn create_template(&self, template: StoredTemplate) -> Result<StoredTemplate> {
        (**self).create_template(template).await
    }
    async fn template(&self, tenant: &TenantId, id: TemplateId) -> Result<Option<StoredTemplate>> {
        (**self).template(tenant, id).await
    }
    async fn templates(
        &self,
        tenant: &TenantId,
        page: TemplatePage,
    ) -> Result<Vec<StoredTemplate>> {
        (**self).templates(tenant, page).await
    }
    async fn update_template(
        &self,
        tenant: &TenantId,
        id: TemplateId,
        name: &str,
        template: &ReportTemplate,
    ) -> Result<Option<StoredTemplate>> {
        (**self).update_template(tenant, id, name, template).await
    }
    async fn delete_template(&self, tenant: &TenantId, id: TemplateId) -> Result<bool> {
        (**self).delete_template(tenant, id).await
    }
}

#[async_trait]
impl TemplateStore for crate::MemoryStore {
    async fn create_template(&self, template: StoredTemplate) -> Result<StoredTemplate> {
        self.templates_mut().insert(template.id, template.clone());
        Ok(template)
    }

    async fn template(&self, tenant: &TenantId, id: TemplateId) -> Result<Option<StoredTemplate>> {
        Ok(self
            .templates_mut()
            .get(&id)
            .filter(|t| &t.tenant == tenant)
            .cloned())
    }

    async fn templates(
        &self,
        tenant: &TenantId,
        page: TemplatePage,
    ) -> Result<Vec<StoredTemplate>> {
        let all = self.templates_mut();
        let mut ids: Vec<TemplateId> = all
            .values()
            .filter(|t| &t.tenant == tenant && t.id.to_u128() < page.upper())
            .map(|t| t.id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids
            .into_iter()
            .take(page.size())
            .map(|id| all[&id].clone())
            .collect())
    }

    async fn update_template(
        &self,
        tenant: &TenantId,
        id: TemplateId,
        name: &str,
        template: &ReportTemplate,
    ) -> Result<Option<StoredTemplate>> {
        let mut all = self.templates_mut();
        let Some(stored) = all.get_mut(&id).filter(|t| &t.tenant == tenant) else {
            return Ok(None);
        };
        stored.name = name.to_owned();
        stored.template = template.clone();
        stored.updated_at = crate::job::now();
        Ok(Some(stored.clone()))
    }

    async fn delete_template(&self, tenant: &TenantId, id: TemplateId) -> Result<bool> {
        let mut all = self.templates_mut();
        if all.get(&id).is_some_and(|t| &t.tenant == tenant) {
            all.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }
}
