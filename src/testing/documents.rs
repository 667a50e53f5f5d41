//! Cases for [`DocumentStore`] implementations.

use std::future::Future;

use serde_json::{Value, json};

use super::tenant;
use crate::store::{DocumentId, DocumentPage, DocumentStore, StoredDocument};

/// A body with every kind of JSON value in it, which must come back exactly.
fn sample(title: &str) -> Value {
    json!({
        "title": title,
        "sections": [{"key": "summary", "kind": "summary", "columns": []}, {"key": null}],
        "numbers": [0, -1, 2.5, 1e-7, 9007199254740993_u64],
        "text": "ACME — confidential \u{1F600} \"quoted\" \\ back",
        "flags": {"on": true, "off": false, "none": null},
    })
}

/// Runs every document-store case, each on a fresh store from `new_store`.
pub async fn run_document_store_suite<S, F, Fut>(new_store: F)
where
    S: DocumentStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    documents_round_trip(&new_store().await).await;
    documents_are_tenant_scoped(&new_store().await).await;
    documents_page_by_cursor(&new_store().await).await;
}

/// Create, read, list (newest first), update and delete, each exactly as stored.
pub async fn documents_round_trip(store: &dyn DocumentStore) {
    let acme = tenant("acme");
    let first = StoredDocument::new(acme.clone(), "weekly", sample("Weekly"));
    let second = StoredDocument::new(acme.clone(), "monthly", sample("Monthly"));
    assert_eq!(store.create_document(first.clone()).await.unwrap(), first);
    store.create_document(second.clone()).await.unwrap();
    assert_eq!(
        store.document(&acme, first.id).await.unwrap(),
        Some(first.clone())
    );
    let all = store
        .documents(&acme, DocumentPage::default())
        .await
        .unwrap();
    assert_eq!(all, vec![second.clone(), first.clone()], "newest first");

    let changed = sample("Weekly, revised");
    let updated = store
        .update_document(&acme, first.id, "weekly v2", &changed)
        .await
        .unwrap()
        .expect("the document exists");
    assert_eq!(
        (updated.name.as_str(), &updated.body),
        ("weekly v2", &changed)
    );
    assert_eq!(updated.created_at, first.created_at);
    assert!(updated.updated_at >= first.updated_at);
    assert_eq!(
        store.document(&acme, first.id).await.unwrap(),
        Some(updated)
    );

    assert!(store.delete_document(&acme, first.id).await.unwrap());
    assert!(!store.delete_document(&acme, first.id).await.unwrap());
    assert_eq!(store.document(&acme, first.id).await.unwrap(), None);
    let missing = DocumentId::new();
    assert_eq!(
        store
            .update_document(&acme, missing, "x", &changed)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .documents(&acme, DocumentPage::default())
            .await
            .unwrap(),
        vec![second]
    );
}

/// Another tenant's document reads, updates and deletes like a missing one.
pub async fn documents_are_tenant_scoped(store: &dyn DocumentStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let mine = StoredDocument::new(acme.clone(), "mine", sample("Mine"));
    store.create_document(mine.clone()).await.unwrap();
    assert_eq!(store.document(&globex, mine.id).await.unwrap(), None);
    assert!(
        store
            .documents(&globex, DocumentPage::default())
            .await
            .unwrap()
            .is_empty()
    );
    let other = sample("Theirs");
    assert_eq!(
        store
            .update_document(&globex, mine.id, "x", &other)
            .await
            .unwrap(),
        None
    );
    assert!(!store.delete_document(&globex, mine.id).await.unwrap());
    assert_eq!(store.document(&acme, mine.id).await.unwrap(), Some(mine));
}

/// Pages of a tenant's documents, newest first, each older than the last id of the one
/// before, with no template repeated or skipped.
pub async fn documents_page_by_cursor(store: &dyn DocumentStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let mut made = Vec::new();
    for i in 0..7 {
        let t = StoredDocument::new(acme.clone(), format!("t{i}"), sample("Paged"));
        store.create_document(t.clone()).await.unwrap();
        let theirs = StoredDocument::new(globex.clone(), "theirs", sample("Theirs"));
        store.create_document(theirs).await.unwrap();
        made.push(t.id);
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut page = DocumentPage::default().limit(3);
    loop {
        let got = store.documents(&acme, page).await.unwrap();
        assert!(got.len() <= 3);
        assert!(got.iter().all(|t| t.tenant == acme));
        seen.extend(got.iter().map(|t| t.id));
        match got.last() {
            Some(last) if got.len() == 3 => page = page.before(Some(last.id)),
            _ => break,
        }
    }
    assert_eq!(seen, made, "newest first, each once");
}
