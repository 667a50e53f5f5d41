//! [`ReportData`]: where a report's paragraphs and tables come from.

use std::fmt::Debug;

use async_trait::async_trait;

use super::data::SectionData;
use super::model::{Filter, Problem, ReportTemplate, Section};
use crate::error::Result;
use crate::job::TenantId;

/// The host's data: what each section of a tenant's report shows.
///
/// The library knows titles, branding, layout, charts and output formats; the data source
/// knows what a section's `kind`, its `columns` and the template's filter mean. The
/// filter is untrusted input: [`check`](Self::check) bounds it when a template is saved or
/// built, and [`section`](Self::section) applies it with bound parameters (or in memory),
/// never by pasting its strings into a query.
#[async_trait]
pub trait ReportData: Send + Sync + Debug + 'static {
    /// What `section` shows for `tenant` under `filter`: [`SectionData::default`] when
    /// nothing matches (preflight then lists the section as empty).
    async fn section(
        &self,
        tenant: &TenantId,
        section: &Section,
        filter: &Filter,
    ) -> Result<SectionData>;

    /// The sections a preset may name, each with its `key` set (none by default).
    fn presets(&self) -> &[Section] {
        &[]
    }

    /// The problems of `template` in the data source's terms: kinds, columns and filter
    /// it does not know, filter values past its bounds (none by default). Each names the
    /// path of its field, as in [`Problem::new`].
    fn check(&self, template: &ReportTemplate) -> Vec<Problem> {
        let _ = template;
        Vec::new()
    }
}
