//! Stored report templates in PostgreSQL.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::types::Uuid;

use super::rows::get;
use super::{BACKEND, PostgresStore, db};
use crate::report::{ReportTemplate, StoredTemplate, TemplateId, TemplatePage, TemplateStore};
use crate::sql::{parse_json, template_json};
use crate::{Result, TenantId};

/// The columns `decode` reads, in its order.
macro_rules! columns {
    () => {
        "id, tenant, name, body::text, created_at, updated_at"
    };
}

fn uuid(id: TemplateId) -> Uuid {
    Uuid::from_u128(id.to_u128())
}

fn decode(row: &PgRow) -> Result<StoredTemplate> {
    Ok(StoredTemplate {
        id: TemplateId::from_u128(get::<Uuid>(row, 0)?.as_u128()),
        tenant: TenantId::new(get::<String>(row, 1)?)?,
        name: get(row, 2)?,
        template: parse_json(BACKEND, &get::<String>(row, 3)?)?,
        created_at: get(row, 4)?,
        updated_at: get(row, 5)?,
    })
}

#[async_trait]
impl TemplateStore for PostgresStore {
    async fn create_template(&self, t: StoredTemplate) -> Result<StoredTemplate> {
        sqlx::query(
            "INSERT INTO jobworks_templates (id, tenant, name, body, created_at, updated_at)
             VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
        )
        .bind(uuid(t.id))
        .bind(t.tenant.as_str())
        .bind(&t.name)
        .bind(template_json(&t.template)?)
        .bind(t.created_at)
        .bind(t.updated_at)
        .execute(self.pool())
        .await
        .map_err(db)?;
        Ok(t)
    }

    async fn template(&self, tenant: &TenantId, id: TemplateId) -> Result<Option<StoredTemplate>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM jobworks_templates WHERE id = $1 AND tenant = $2"
        );
        sqlx::query(sql)
            .bind(uuid(id))
            .bind(tenant.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .as_ref()
            .map(decode)
            .transpose()
    }

    async fn templates(
        &self,
        tenant: &TenantId,
        page: TemplatePage,
    ) -> Result<Vec<StoredTemplate>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM jobworks_templates WHERE tenant = $1 AND ($2::uuid IS NULL OR id < $2) \
              ORDER BY id DESC LIMIT $3"
        );
        sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(page.before.map(uuid))
            .bind(page.size() as i64)
            .fetch_all(self.pool())
            .await
            .map_err(db)?
            .iter()
            .map(decode)
            .collect()
    }

    async fn update_template(
        &self,
        tenant: &TenantId,
        id: TemplateId,
        name: &str,
        template: &ReportTemplate,
    ) -> Result<Option<StoredTemplate>> {
        let sql = concat!(
            "UPDATE jobworks_templates SET name = $1, body = $2::jsonb, updated_at = $3 \
             WHERE id = $4 AND tenant = $5 RETURNING ",
            columns!()
        );
        sqlx::query(sql)
            .bind(name)
            .bind(template_json(template)?)
            .bind(crate::job::now())
            .bind(uuid(id))
            .bind(tenant.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .as_ref()
            .map(decode)
            .transpose()
    }

    async fn delete_template(&self, tenant: &TenantId, id: TemplateId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM jobworks_templates WHERE id = $1 AND tenant = $2")
            .bind(uuid(id))
            .bind(tenant.as_str())
            .execute(self.pool())
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}
