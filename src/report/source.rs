//! [`ReportData`]: where the host's findings come from.

use std::fmt::Debug;

use async_trait::async_trait;

use super::data::{Filter, Finding};
use super::model::Section;
use crate::error::Result;
use crate::job::TenantId;

/// The host's data: the findings a section of a tenant's report covers.
///
/// The filter is validated, typed input: apply it with bound parameters (or
/// [`Filter::matches`]), never by pasting its strings into a query.
#[async_trait]
pub trait ReportData: Send + Sync + Debug + 'static {
    /// The findings of `tenant` that `section` shows, under `filter`.
    async fn findings(
        &self,
        tenant: &TenantId,
        section: &Section,
        filter: &Filter,
    ) -> Result<Vec<Finding>>;
}
