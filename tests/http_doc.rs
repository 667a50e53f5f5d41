//! `docs/http-api.md` is kept true with the code: every route the router serves (as its
//! OpenAPI document lists them) is named there as `` `METHOD /path` ``, and every route
//! named there is served.

use std::collections::BTreeSet;

use async_trait::async_trait;
use jobworks::http::{JobsApi, StaticCredentials, install_prometheus};
use jobworks::report::{Filter, ReportData, Reports, Section, SectionData};
use jobworks::{Engine, MemoryStore, TenantId};

#[derive(Debug)]
struct NoData;

#[async_trait]
impl ReportData for NoData {
    async fn section(
        &self,
        _: &TenantId,
        _: &Section,
        _: &Filter,
    ) -> jobworks::Result<SectionData> {
        Ok(SectionData::default())
    }
}

/// `METHOD /path` of every operation of the document of a router with every option on.
fn served() -> BTreeSet<String> {
    let engine = Engine::builder().build().unwrap();
    let api = JobsApi::new(engine, StaticCredentials::new())
        .metrics(install_prometheus().unwrap())
        .reports(Reports::new(NoData, MemoryStore::new()));
    let doc = serde_json::to_value(api.openapi()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    // Served beside the document it is.
    out.insert("GET /openapi.json".to_owned());
    out
}

/// Every `` `METHOD /path` `` of the page, without its query string.
fn documented() -> BTreeSet<String> {
    let page = include_str!("../docs/http-api.md");
    let mut out = BTreeSet::new();
    for piece in page.split('`').skip(1).step_by(2) {
        let Some((method, path)) = piece.split_once(' ') else {
            continue;
        };
        if ["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&method) && path.starts_with('/') {
            let path = path.split('?').next().unwrap_or(path);
            out.insert(format!("{method} {path}"));
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_served() {
    let served = served();
    let documented = documented();
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "served but not in docs/http-api.md: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in docs/http-api.md but not served: {stale:?}"
    );
    assert!(served.len() > 30, "{served:?}");
}

#[test]
fn the_readme_points_at_the_page() {
    let readme = include_str!("../README.md");
    assert!(readme.contains("docs/http-api.md"));
    assert!(!readme.contains("../shared"));
}
