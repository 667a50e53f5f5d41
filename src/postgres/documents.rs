//! Stored documents in PostgreSQL.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Uuid;

use super::rows::get;
use super::{BACKEND, PostgresStore, db};
use crate::sql::{json_text, parse_json};
use crate::store::{DocumentId, DocumentPage, DocumentStore, StoredDocument};
use crate::{Result, TenantId};

/// The columns `decode` reads, in its order.
macro_rules! columns {
    () => {
        "id, tenant, name, body::text, created_at, updated_at"
    };
}

fn uuid(id: DocumentId) -> Uuid {
    Uuid::from_u128(id.to_u128())
}

fn decode(row: &PgRow) -> Result<StoredDocument> {
    Ok(StoredDocument {
        id: DocumentId::from_u128(get::<Uuid>(row, 0)?.as_u128()),
        tenant: TenantId::new(get::<String>(row, 1)?)?,
        name: get(row, 2)?,
        body: parse_json(BACKEND, &get::<String>(row, 3)?)?,
        created_at: get(row, 4)?,
        updated_at: get(row, 5)?,
    })
}

#[async_trait]
impl DocumentStore for PostgresStore {
    async fn create_document(&self, t: StoredDocument) -> Result<StoredDocument> {
        let mut conn = self.db.conn().await?;
        self.sql()
            .query(
                "INSERT INTO jobworks_documents (id, tenant, name, body, created_at, updated_at)
             VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
            )
            .bind(uuid(t.id))
            .bind(t.tenant.as_str())
            .bind(&t.name)
            .bind(json_text(&t.body))
            .bind(t.created_at)
            .bind(t.updated_at)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        Ok(t)
    }

    async fn document(&self, tenant: &TenantId, id: DocumentId) -> Result<Option<StoredDocument>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM jobworks_documents WHERE id = $1 AND tenant = $2"
        );
        let mut conn = self.db.conn().await?;
        let row = self
            .sql()
            .query(sql)
            .bind(uuid(id))
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        row.as_ref().map(decode).transpose()
    }

    async fn documents(
        &self,
        tenant: &TenantId,
        page: DocumentPage,
    ) -> Result<Vec<StoredDocument>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM jobworks_documents WHERE tenant = $1 AND ($2::uuid IS NULL OR id < $2) \
              ORDER BY id DESC LIMIT $3"
        );
        let mut conn = self.db.conn().await?;
        let rows = self
            .sql()
            .query(sql)
            .bind(tenant.as_str())
            .bind(page.before.map(uuid))
            .bind(page.size() as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        rows.iter().map(decode).collect()
    }

    async fn update_document(
        &self,
        tenant: &TenantId,
        id: DocumentId,
        name: &str,
        body: &Value,
    ) -> Result<Option<StoredDocument>> {
        let sql = concat!(
            "UPDATE jobworks_documents SET name = $1, body = $2::jsonb, updated_at = $3 \
             WHERE id = $4 AND tenant = $5 RETURNING ",
            columns!()
        );
        let mut conn = self.db.conn().await?;
        let row = self
            .sql()
            .query(sql)
            .bind(name)
            .bind(json_text(body))
            .bind(self.inner.clock.now())
            .bind(uuid(id))
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        row.as_ref().map(decode).transpose()
    }

    async fn delete_document(&self, tenant: &TenantId, id: DocumentId) -> Result<bool> {
        let mut conn = self.db.conn().await?;
        let done = self
            .sql()
            .query("DELETE FROM jobworks_documents WHERE id = $1 AND tenant = $2")
            .bind(uuid(id))
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        Ok(done.rows_affected() > 0)
    }
}
