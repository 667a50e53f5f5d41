//! Stored documents in SQLite.

use async_trait::async_trait;
use rusqlite::{Row, params};
use serde_json::Value;

use super::rows::{time, u128_from};
use super::{BACKEND, SqliteStore, db};
use crate::sql::{json_text, micros, parse_json};
use crate::store::{DocumentId, DocumentPage, DocumentStore, StoredDocument};
use crate::{Result, TenantId};

/// The columns `decode` reads, in its order.
macro_rules! columns {
    () => {
        "id, tenant, name, body, created_at, updated_at"
    };
}

fn id_bytes(id: DocumentId) -> [u8; 16] {
    id.to_u128().to_be_bytes()
}

fn decode(row: &Row<'_>) -> Result<StoredDocument> {
    let id: Vec<u8> = row.get(0).map_err(db)?;
    let tenant: String = row.get(1).map_err(db)?;
    let body: String = row.get(3).map_err(db)?;
    Ok(StoredDocument {
        id: DocumentId::from_u128(u128_from(&id)?),
        tenant: TenantId::new(tenant)?,
        name: row.get(2).map_err(db)?,
        body: parse_json(BACKEND, &body)?,
        created_at: time(row.get(4).map_err(db)?)?,
        updated_at: time(row.get(5).map_err(db)?)?,
    })
}

fn select_one(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    id: DocumentId,
) -> Result<Option<StoredDocument>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM jobworks_documents WHERE id = ?1 AND tenant = ?2"
    );
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let mut rows = stmt
        .query(params![id_bytes(id), tenant.as_str()])
        .map_err(db)?;
    rows.next().map_err(db)?.map(decode).transpose()
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn create_document(&self, t: StoredDocument) -> Result<StoredDocument> {
        let text = json_text(&t.body);
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO jobworks_documents (id, tenant, name, body, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        id_bytes(t.id),
                        t.tenant.as_str(),
                        t.name,
                        text,
                        micros(t.created_at),
                        micros(t.updated_at)
                    ],
                )
                .map_err(db)?;
                Ok(t)
            })
            .await
    }

    async fn document(&self, tenant: &TenantId, id: DocumentId) -> Result<Option<StoredDocument>> {
        let tenant = tenant.clone();
        self.read(move |conn| select_one(conn, &tenant, id)).await
    }

    async fn documents(
        &self,
        tenant: &TenantId,
        page: DocumentPage,
    ) -> Result<Vec<StoredDocument>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let sql = concat!(
                "SELECT ",
                columns!(),
                " FROM jobworks_documents WHERE tenant = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(sql).map_err(db)?;
            let upper = page.upper().to_be_bytes();
            let mut rows = stmt
                .query(params![tenant.as_str(), upper, page.size() as i64])
                .map_err(db)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                out.push(decode(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_document(
        &self,
        tenant: &TenantId,
        id: DocumentId,
        name: &str,
        body: &Value,
    ) -> Result<Option<StoredDocument>> {
        let (tenant, name, text) = (tenant.clone(), name.to_owned(), json_text(body));
        let now = self.clock.now();
        self.writer
            .write(move |conn| {
                let changed = conn
                    .execute(
                        "UPDATE jobworks_documents SET name = ?1, body = ?2, updated_at = ?3
                         WHERE id = ?4 AND tenant = ?5",
                        params![name, text, micros(now), id_bytes(id), tenant.as_str()],
                    )
                    .map_err(db)?;
                if changed == 0 {
                    return Ok(None);
                }
                select_one(conn, &tenant, id)
            })
            .await
    }

    async fn delete_document(&self, tenant: &TenantId, id: DocumentId) -> Result<bool> {
        let tenant = tenant.clone();
        self.writer
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM jobworks_documents WHERE id = ?1 AND tenant = ?2",
                    params![id_bytes(id), tenant.as_str()],
                )
                .map(|n| n > 0)
                .map_err(db)
            })
            .await
    }
}
