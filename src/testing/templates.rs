//! Cases for [`TemplateStore`] implementations.

use std::future::Future;

use crate::report::{Preset, StoredTemplate, TemplateId, TemplatePage, TemplateStore};

use super::tenant;

fn sample(title: &str) -> crate::report::ReportTemplate {
    let preset: Preset = serde_json::from_value(serde_json::json!({
        "title": title,
        "sections": ["summary", "findings"],
        "branding": {"header": "ACME — confidential"},
        "filter": {"severity": ["high"], "since": "2026-01-01T00:00:00Z"},
        "style": {"font": "Times-Roman", "font_size": 11}
    }))
    .expect("a valid preset");
    preset.expand().expect("a valid preset")
}

/// Runs every template-store case, each on a fresh store from `new_store`.
pub async fn run_template_store_suite<S, F, Fut>(new_store: F)
where
    S: TemplateStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    templates_round_trip(&new_store().await).await;
    templates_are_tenant_scoped(&new_store().await).await;
    templates_page_by_cursor(&new_store().await).await;
}

/// Create, read, list (newest first), update and delete, each exactly as stored.
pub async fn templates_round_trip(store: &dyn TemplateStore) {
    let acme = tenant("acme");
    let first = StoredTemplate::new(acme.clone(), "weekly", sample("Weekly"));
    let second = StoredTemplate::new(acme.clone(), "monthly", sample("Monthly"));
    assert_eq!(store.create_template(first.clone()).await.unwrap(), first);
    store.create_template(second.clone()).await.unwrap();
    assert_eq!(
        store.template(&acme, first.id).await.unwrap(),
        Some(first.clone())
    );
    let all = store
        .templates(&acme, TemplatePage::default())
        .await
        .unwrap();
    assert_eq!(all, vec![second.clone(), first.clone()], "newest first");

    let changed = sample("Weekly, revised");
    let updated = store
        .update_template(&acme, first.id, "weekly v2", &changed)
        .await
        .unwrap()
        .expect("the template exists");
    assert_eq!(
        (updated.name.as_str(), &updated.template),
        ("weekly v2", &changed)
    );
    assert_eq!(updated.created_at, first.created_at);
    assert!(updated.updated_at >= first.updated_at);
    assert_eq!(
        store.template(&acme, first.id).await.unwrap(),
        Some(updated)
    );

    assert!(store.delete_template(&acme, first.id).await.unwrap());
    assert!(!store.delete_template(&acme, first.id).await.unwrap());
    assert_eq!(store.template(&acme, first.id).await.unwrap(), None);
    let missing = TemplateId::new();
    assert_eq!(
        store
            .update_template(&acme, missing, "x", &changed)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .templates(&acme, TemplatePage::default())
            .await
            .unwrap(),
        vec![second]
    );
}

/// Another tenant's template reads, updates and deletes like a missing one.
pub async fn templates_are_tenant_scoped(store: &dyn TemplateStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let mine = StoredTemplate::new(acme.clone(), "mine", sample("Mine"));
    store.create_template(mine.clone()).await.unwrap();
    assert_eq!(store.template(&globex, mine.id).await.unwrap(), None);
    assert!(
        store
            .templates(&globex, TemplatePage::default())
            .await
            .unwrap()
            .is_empty()
    );
    let other = sample("Theirs");
    assert_eq!(
        store
            .update_template(&globex, mine.id, "x", &other)
            .await
            .unwrap(),
        None
    );
    assert!(!store.delete_template(&globex, mine.id).await.unwrap());
    assert_eq!(store.template(&acme, mine.id).await.unwrap(), Some(mine));
}

/// Pages of a tenant's templates, newest first, each older than the last id of the one
/// before, with no template repeated or skipped.
pub async fn templates_page_by_cursor(store: &dyn TemplateStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let mut made = Vec::new();
    for i in 0..7 {
        let t = StoredTemplate::new(acme.clone(), format!("t{i}"), sample("Paged"));
        store.create_template(t.clone()).await.unwrap();
        let theirs = StoredTemplate::new(globex.clone(), "theirs", sample("Theirs"));
        store.create_template(theirs).await.unwrap();
        made.push(t.id);
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut page = TemplatePage::default().limit(3);
    loop {
        let got = store.templates(&acme, page).await.unwrap();
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
