//! The handlers: one per page, one per action, the live feed of a job page, and the
//! embedded assets.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::view::{self, Section, action_form, job_path, maybe_time, status, time};
use super::{ARTIFACT_LINK_TTL, Action, PageError, Part, Shared, Visit};
use crate::engine::{JobFilter, MAX_BULK, Tenants};
use crate::job::{Job, JobId, JobStatus, JobType, QueueName, ScheduleId, TenantId, WorkflowId};
use crate::store::{EventParams, ListParams, Operator, QueueStats};

type Page = Result<Html<String>, PageError>;

/// Rows on a page of jobs.
const PAGE_SIZE: usize = 50;
/// How long the live feed of a job page waits for a change before answering empty.
const LIVE_WAIT: Duration = Duration::from_secs(20);
/// The cap a bulk form starts with.
const DEFAULT_BULK_CAP: usize = 1000;

pub(super) async fn overview(Extract(state): Extract<Shared>, visit: Visit) -> Page {
    let across = state.engine.across(&visit.viewer.tenants);
    // Finished times are the store's: so is the window.
    let now = state.engine.store().clock().now();
    let start = crate::store::minute_of(now) - chrono::Duration::minutes(59);
    // Four reads that do not depend on each other, at once.
    let (counts, failures, minutes, engines) = futures::try_join!(
        across.open_counts(),
        across.list(ListParams::default().status(JobStatus::Failed).limit(5)),
        state
            .activity
            .since(&state.engine, &visit.viewer.tenants, start, now),
        state.engine.engines(),
    )?;
    let mut total = QueueStats::default();
    for c in counts.values() {
        total.merge(c);
    }
    let base = &visit.base;
    let body = html! {
        @if let Some(engines) = &engines {
            @if engines.is_empty() {
                p.alert role="alert" {
                    strong { "No engine is running. " }
                    "None has been seen in the last " (crate::ENGINE_ALIVE.as_secs())
                    " seconds: queued jobs wait until one starts."
                }
            }
        }
        @if let Some(minutes) = &minutes {
            (activity(minutes, start))
        }
        section aria-labelledby="totals" {
            h2 #totals { "Open jobs" }
            ul.tiles {
                @for (s, n) in [
                    (JobStatus::Waiting, total.waiting), (JobStatus::Queued, total.queued),
                    (JobStatus::Running, total.running),
                ] {
                    li {
                        a href={ (base) "/jobs?status=" (s.as_str()) } {
                            span.n { (n) } " " (status(s))
                        }
                    }
                }
            }
        }
        section aria-labelledby="depths" {
            h2 #depths { "Queues" }
            (queue_counts(base, &counts))
        }
        @if let Some(engines) = engines.as_ref().filter(|e| !e.is_empty()) {
            section aria-labelledby="engines" {
                h2 #engines { "Engines" }
                @if matches!(visit.viewer.tenants, Tenants::All) {
                    div.scroll {
                        table {
                            thead { tr {
                                th scope="col" { "Host" } th.num scope="col" { "Process" }
                                th scope="col" { "Queues" } th scope="col" { "Started" }
                                th scope="col" { "Last seen" }
                            } }
                            tbody {
                                @for e in engines {
                                    tr {
                                        td { (e.host) } td.num { (e.pid) }
                                        td { (e.queues.join(", ")) }
                                        td { (time(e.started_at)) } td { (time(e.seen_at)) }
                                    }
                                }
                            }
                        }
                    }
                } @else {
                    p { (engines.len()) " running." }
                }
            }
        }
        section aria-labelledby="recent" {
            h2 #recent { "Recent failures" }
            @if failures.jobs.is_empty() {
                p.empty { "No failed jobs." }
            } @else {
                (failed_table(&state, &visit, &failures.jobs))
                p { a href={ (base) "/failed" } { "Every failed job" } }
            }
        }
    };
    Ok(view::page(
        &state,
        &visit,
        Section::Overview,
        "Overview",
        body,
    ))
}

/// Jobs finished and failed each minute of the last hour, as sparklines with their sums.
fn activity(minutes: &[crate::MinuteCounts], start: DateTime<Utc>) -> Markup {
    let mut completed = [0u64; 60];
    let mut failed = [0u64; 60];
    let first = start.timestamp().div_euclid(60);
    for m in minutes {
        let i = m.minute.timestamp().div_euclid(60) - first;
        if let Ok(i @ 0..60) = usize::try_from(i) {
            completed[i] += m.completed;
            failed[i] += m.failed;
        }
    }
    let (done, bad): (u64, u64) = (completed.iter().sum(), failed.iter().sum());
    let peak = completed
        .iter()
        .zip(&failed)
        .map(|(c, f)| c + f)
        .max()
        .unwrap_or(0);
    let finished: Vec<u64> = completed.iter().zip(&failed).map(|(c, f)| c + f).collect();
    html! {
        section aria-labelledby="activity" {
            h2 #activity { "The last hour" }
            div.cards {
                div.card {
                    p.label { "Finished" }
                    p.n { (done + bad) }
                    (view::sparkline(&finished, &format!("Jobs finished each minute of the last hour: {} in all, at most {peak} in a minute", done + bad), "s-completed"))
                }
                div.card {
                    p.label { "Failed" }
                    p.n { (bad) }
                    (view::sparkline(&failed, &format!("Jobs failed each minute of the last hour: {bad} in all"), "s-failed"))
                }
            }
        }
    }
}

fn queue_counts(base: &str, counts: &BTreeMap<QueueName, QueueStats>) -> Markup {
    html! {
        @if counts.is_empty() {
            p.empty { "No open jobs." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Queue" } th.num scope="col" { "Waiting" }
                        th.num scope="col" { "Queued" } th.num scope="col" { "Running" }
                    } }
                    tbody {
                        @for (name, c) in counts {
                            tr {
                                th scope="row" { a href={ (base) "/jobs?queue=" (name) } { (name) } }
                                td.num { (c.waiting) } td.num { (c.queued) }
                                td.num { (c.running) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(super) async fn queues(Extract(state): Extract<Shared>, visit: Visit) -> Page {
    let across = state.engine.across(&visit.viewer.tenants);
    let counts = across.open_counts().await?;
    let mut rows: BTreeMap<QueueName, (crate::store::QueueSettings, QueueStats)> = BTreeMap::new();
    for queue in state.engine.store().queues().await? {
        rows.entry(queue.name).or_default().0 = queue.settings;
    }
    for (name, c) in counts {
        rows.entry(name).or_default().1 = c;
    }
    // And the queues that running engines serve, even while they are empty.
    for beat in state.engine.engines().await?.unwrap_or_default() {
        for name in beat.queues.iter().filter_map(|q| QueueName::new(q).ok()) {
            rows.entry(name).or_default();
        }
    }
    let may = state.may(&visit.viewer, Action::Queues);
    let token = state.csrf_token(&visit.viewer);
    let base = &visit.base;
    let body = html! {
        @if rows.is_empty() {
            p.empty { "No queue has open jobs, settings or an engine serving it." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Queue" } th scope="col" { "State" }
                        th.num scope="col" { "Queued" } th.num scope="col" { "Running" }
                        th scope="col" { "Limits" }
                        @if may { th scope="col" { "Action" } }
                    } }
                    tbody {
                        @for (name, (settings, c)) in &rows {
                            tr {
                                th scope="row" { a href={ (base) "/jobs?queue=" (name) } { (name) } }
                                td { @if settings.paused { span.badge.paused { "paused" } } @else { "active" } }
                                td.num { (c.queued) }
                                td.num { (c.running) }
                                td { (limits(settings)) }
                                @if may {
                                    td {
                                        @let path = format!("{base}/queues/{name}/{}", if settings.paused { "resume" } else { "pause" });
                                        form.inline method="post" action=(path) {
                                            input type="hidden" name="csrf" value=(token);
                                            button type="submit" class="act" {
                                                @if settings.paused { "Resume" } @else { "Pause" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(&state, &visit, Section::Queues, "Queues", body))
}

fn limits(settings: &crate::store::QueueSettings) -> String {
    let mut parts = Vec::new();
    if let Some(n) = settings.max_running {
        parts.push(format!("{n} at once"));
    }
    if let Some(n) = settings.max_running_per_key {
        parts.push(format!("{n} per key"));
    }
    if let Some(rate) = &settings.rate {
        parts.push(format!(
            "{} per {} s (burst {})",
            rate.limit,
            rate.period.as_secs_f64(),
            rate.burst
        ));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

pub(super) async fn queue_action(
    Extract(state): Extract<Shared>,
    visit: Visit,
    Path((name, verb)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = Form::parse(&body);
    guard(&state, &visit, &form, Action::Queues)?;
    let name = QueueName::new(name).map_err(|e| PageError::bad_request(e.to_string()))?;
    match verb.as_str() {
        "pause" => state.engine.pause_queue(&name).await?,
        "resume" => state.engine.resume_queue(&name).await?,
        _ => return Err(PageError::new(StatusCode::NOT_FOUND, "No such action.")),
    };
    Ok(Redirect::to(&format!("{}/queues", visit.base)).into_response())
}

/// The filters of the jobs and failed pages, as the query string gives them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Filters {
    tenant: Option<String>,
    queue: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    status: Option<String>,
    error: Option<String>,
    since: Option<String>,
    until: Option<String>,
    schedule: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

/// The filters, checked.
#[derive(Debug, Clone, Default)]
struct Selection {
    /// The one tenant asked for, if any.
    tenant: Option<TenantId>,
    filter: JobFilter,
    cursor: Option<JobId>,
}

fn some(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

impl Filters {
    fn from_form(form: &Form) -> Filters {
        let get = |name| form.get(name).map(str::to_owned);
        Filters {
            tenant: get("tenant"),
            queue: get("queue"),
            job_type: get("type"),
            status: get("status"),
            error: get("error"),
            since: get("since"),
            until: get("until"),
            schedule: get("schedule"),
            ..Filters::default()
        }
    }

    fn check(&self) -> Result<Selection, PageError> {
        let bad = |e: &dyn std::fmt::Display| PageError::bad_request(e.to_string());
        let mut filter = JobFilter::default();
        if let Some(s) = some(&self.status) {
            filter = filter.status(s.parse::<JobStatus>().map_err(|e| bad(&e))?);
        }
        if let Some(t) = some(&self.job_type) {
            filter = filter.job_type(JobType::new(t).map_err(|e| bad(&e))?);
        }
        if let Some(q) = some(&self.queue) {
            filter = filter.queue(QueueName::new(q).map_err(|e| bad(&e))?);
        }
        if let Some(e) = some(&self.error) {
            filter = filter.error_contains(e);
        }
        let since = some(&self.since).map(parse_time).transpose()?;
        let until = some(&self.until).map(parse_time).transpose()?;
        filter = filter.submitted(since, until);
        if let Some(s) = some(&self.schedule) {
            filter = filter.schedule(s.parse::<ScheduleId>().map_err(|e| bad(&e))?);
        }
        Ok(Selection {
            tenant: some(&self.tenant)
                .map(TenantId::new)
                .transpose()
                .map_err(|e| bad(&e))?,
            filter,
            cursor: some(&self.cursor)
                .map(str::parse)
                .transpose()
                .map_err(|e| bad(&e))?,
        })
    }

    /// The query string of these filters (without cursor), for links and forms.
    fn query(&self) -> Vec<(&'static str, &str)> {
        [
            ("tenant", &self.tenant),
            ("queue", &self.queue),
            ("type", &self.job_type),
            ("status", &self.status),
            ("error", &self.error),
            ("since", &self.since),
            ("until", &self.until),
            ("schedule", &self.schedule),
        ]
        .into_iter()
        .filter_map(|(k, v)| some(v).map(|v| (k, v)))
        .collect()
    }
}

/// A time from a `datetime-local` field (taken as UTC) or RFC 3339.
fn parse_time(text: &str) -> Result<DateTime<Utc>, PageError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(PageError::bad_request(format!(
        "{text:?} is not a time: give 2026-12-02T10:00 (UTC) or RFC 3339"
    )))
}

impl Selection {
    /// The tenants to read: the viewer's, or the one of them the filter names (none when
    /// it names another).
    fn tenants(&self, viewer: &Tenants) -> Tenants {
        match &self.tenant {
            None => viewer.clone(),
            Some(t) if viewer.contains(t) => Tenants::only([t.clone()]),
            Some(_) => Tenants::only([]),
        }
    }

    /// The store's filters for a page: the filter's, from the cursor.
    fn params(&self) -> ListParams {
        let params = self.filter.list_params(PAGE_SIZE);
        let until = params.before;
        params.before(self.cursor.or(until))
    }
}

/// One page of the jobs a selection picks, with the cursor of the next.
async fn read_page(
    state: &Shared,
    visit: &Visit,
    selection: &Selection,
) -> Result<(Vec<Job>, Option<JobId>), PageError> {
    let tenants = selection.tenants(&visit.viewer.tenants);
    let page = state
        .engine
        .across(&tenants)
        .list(selection.params())
        .await?;
    let mut next = page.next;
    let mut jobs = Vec::with_capacity(page.jobs.len());
    for job in page.jobs {
        if selection.filter.since.is_some_and(|t| job.created_at < t) {
            next = None;
            break;
        }
        if selection.filter.matches(&job) {
            jobs.push(job);
        }
    }
    Ok((jobs, next))
}

fn link_with(base: &str, path: &str, query: &[(&str, &str)], more: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query.iter().chain(more) {
        out.append_pair(k, v);
    }
    let q = out.finish();
    if q.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{q}")
    }
}

pub(super) async fn jobs(
    Extract(state): Extract<Shared>,
    visit: Visit,
    Query(filters): Query<Filters>,
) -> Page {
    let selection = filters.check()?;
    let (jobs, next) = read_page(&state, &visit, &selection).await?;
    let base = &visit.base;
    let query = filters.query();
    let bulk: Vec<Action> = Action::ALL
        .into_iter()
        .filter(|a| a.bulk().is_some() && state.may(&visit.viewer, *a))
        .collect();
    let token = state.csrf_token(&visit.viewer);
    let body = html! {
        (filter_form(&visit, &filters, true))
        @if jobs.is_empty() {
            p.empty { "No job matches." }
        } @else {
            form #bulk method="post" action={ (base) "/jobs/bulk" } {
                input type="hidden" name="csrf" value=(token);
                @for (k, v) in &query { input type="hidden" name=(k) value=(v); }
                div.scroll {
                    table.jobs {
                        thead { tr {
                            @if !bulk.is_empty() {
                                th scope="col" {
                                    input #select-all type="checkbox" aria-label="Select every job on this page";
                                }
                            }
                            th scope="col" { "Job" } th scope="col" { "Tenant" } th scope="col" { "Type" }
                            th scope="col" { "Queue" } th scope="col" { "Status" }
                            th.num scope="col" { "Attempts" } th scope="col" { "Submitted" }
                        } }
                        tbody {
                            @for job in &jobs {
                                tr {
                                    @if !bulk.is_empty() {
                                        td {
                                            input type="checkbox" name="ids" value=(job.id)
                                                aria-label={ "Select job " (job.id) };
                                        }
                                    }
                                    td { a.id href=(job_path(base, job.id)) { (job.id) } }
                                    td { (job.tenant) } td { (job.job_type) } td { (job.queue) }
                                    td { (status(job.status)) }
                                    td.num { (job.attempts) "/" (job.max_attempts) }
                                    td { (time(job.created_at)) }
                                }
                            }
                        }
                    }
                }
                @if !bulk.is_empty() {
                    fieldset.bulk {
                        legend { "Bulk action" }
                        label { "Action "
                            select name="action" {
                                @for a in &bulk { option value=(a.as_str()) { (a.label()) } }
                            }
                        }
                        fieldset.choice {
                            legend { "On" }
                            label { input type="radio" name="scope" value="selected" checked; " the selected jobs" }
                            label { input type="radio" name="scope" value="filter"; " every job the filter matches" }
                        }
                        label { "At most "
                            input type="number" name="limit" min="1" max=(MAX_BULK) value=(DEFAULT_BULK_CAP);
                        }
                        button type="submit" class="act" { "Review" }
                        p.hint { "Nothing changes until you confirm on the next page." }
                    }
                }
            }
        }
        @if let Some(next) = next {
            nav.pager aria-label="Pages" {
                a href=(link_with(base, "/jobs", &query, &[("cursor", &next.to_string())])) rel="next" { "Older jobs →" }
            }
        }
    };
    Ok(view::page(&state, &visit, Section::Jobs, "Jobs", body))
}

/// The filter form of a list page, filled with the filters in use.
fn filter_form(visit: &Visit, filters: &Filters, with_status: bool) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let several = !matches!(&visit.viewer.tenants, Tenants::Only(set) if set.len() <= 1);
    let action = if with_status { "/jobs" } else { "/failed" };
    html! {
        form.filters method="get" action={ (visit.base) (action) } role="search" {
            @if several {
                label { "Tenant " input type="text" name="tenant" value=(value(&filters.tenant)); }
            }
            label { "Queue " input type="text" name="queue" value=(value(&filters.queue)); }
            label { "Type " input type="text" name="type" value=(value(&filters.job_type)); }
            @if with_status {
                label { "Status "
                    select name="status" {
                        option value="" { "any" }
                        @for s in JobStatus::ALL {
                            option value=(s.as_str()) selected[filters.status.as_deref() == Some(s.as_str())] { (s.as_str()) }
                        }
                    }
                }
            } @else {
                label { "Error contains " input type="text" name="error" value=(value(&filters.error)); }
            }
            label { "Submitted from " input type="datetime-local" name="since" step="1" value=(value(&filters.since)); }
            label { "to " input type="datetime-local" name="until" step="1" value=(value(&filters.until)); }
            @if let Some(s) = some(&filters.schedule) { input type="hidden" name="schedule" value=(s); }
            button type="submit" { "Filter" }
        }
    }
}

pub(super) async fn failed(
    Extract(state): Extract<Shared>,
    visit: Visit,
    Query(mut filters): Query<Filters>,
) -> Page {
    filters.status = Some(JobStatus::Failed.as_str().to_owned());
    let selection = filters.check()?;
    let (jobs, next) = read_page(&state, &visit, &selection).await?;
    let base = &visit.base;
    let query = filters.query();
    let may = state.may(&visit.viewer, Action::Retry);
    let token = state.csrf_token(&visit.viewer);
    let body = html! {
        p.lead { "Jobs that failed for good: the dead letters. Retry queues one again with a fresh attempt budget." }
        (notice(filters.done.as_deref()))
        (filter_form(&visit, &filters, false))
        @if jobs.is_empty() {
            p.empty { "No failed job matches." }
        } @else {
            (failed_table(&state, &visit, &jobs))
            @if may {
                form.bulk method="post" action={ (base) "/jobs/bulk" } {
                    input type="hidden" name="csrf" value=(token);
                    @for (k, v) in &query { input type="hidden" name=(k) value=(v); }
                    input type="hidden" name="action" value="retry";
                    input type="hidden" name="scope" value="filter";
                    label { "At most " input type="number" name="limit" min="1" max=(MAX_BULK) value=(DEFAULT_BULK_CAP); }
                    button type="submit" class="act" { "Review: retry every failed job the filter matches" }
                }
            }
        }
        @if let Some(next) = next {
            nav.pager aria-label="Pages" {
                a href=(link_with(base, "/failed", &query, &[("cursor", &next.to_string())])) rel="next" { "Older failures →" }
            }
        }
    };
    Ok(view::page(
        &state,
        &visit,
        Section::Failed,
        "Failed jobs",
        body,
    ))
}

/// A table of failed jobs with their errors, and Retry where the viewer may.
fn failed_table(state: &Shared, visit: &Visit, jobs: &[Job]) -> Markup {
    let may = state.may(&visit.viewer, Action::Retry);
    let token = state.csrf_token(&visit.viewer);
    let base = &visit.base;
    html! {
        div.scroll {
            table.jobs {
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Tenant" } th scope="col" { "Type" }
                    th scope="col" { "Queue" } th scope="col" { "Error" } th scope="col" { "Failed at" }
                    @if may { th scope="col" { "Action" } }
                } }
                tbody {
                    @for job in jobs {
                        tr {
                            td { a.id href=(job_path(base, job.id)) { (job.id) } }
                            td { (job.tenant) } td { (job.job_type) } td { (job.queue) }
                            td.error { (view::clip(job.error.as_deref().unwrap_or(""), 160)) }
                            td { (maybe_time(job.completed_at)) }
                            @if may && job.status == JobStatus::Failed {
                                td { (action_form(&token, &format!("{}/retry", job_path(base, job.id)), Action::Retry, &[("back", "failed")])) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("retry") => "Queued again.",
        Some("cancel") => "Cancelled (a running job stops when its executor sees it).",
        Some("requeue") => "Due now.",
        Some("discard") => "Discarded: the job, its timeline and its files are gone.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

fn parse_id(id: &str) -> Result<JobId, PageError> {
    id.parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "No such job."))
}

#[derive(Debug, Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

pub(super) async fn job(
    Extract(state): Extract<Shared>,
    visit: Visit,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Page {
    let id = parse_id(&id)?;
    let across = state.engine.across(&visit.viewer.tenants);
    let job = across.get(id).await?;
    let events = state
        .engine
        .events(&job.tenant, id, EventParams::default().limit(1000))
        .await?;
    let mut links = Vec::new();
    for a in &job.artifacts {
        let url = state
            .engine
            .sign(&job, &a.name, Some(ARTIFACT_LINK_TTL))
            .await
            .ok();
        links.push((a, url));
    }
    let base = &visit.base;
    let token = state.csrf_token(&visit.viewer);
    let now = state.engine.store().clock().now();
    let offered: Vec<Action> = [
        (
            Action::Retry,
            matches!(job.status, JobStatus::Failed | JobStatus::Cancelled),
        ),
        (Action::Cancel, !job.status.is_terminal()),
        (
            Action::Requeue,
            job.status == JobStatus::Queued && job.run_at > now,
        ),
        (Action::Discard, job.status.is_terminal()),
    ]
    .into_iter()
    .filter(|(a, applies)| *applies && state.may(&visit.viewer, *a))
    .map(|(a, _)| a)
    .collect();
    let last = events.events.last().map_or(0, |e| e.seq);
    let live = (!job.status.is_terminal()).then(|| format!("{}/live", job_path(base, id)));
    let title = format!("Job {id}");
    let body = html! {
        (notice(done.done.as_deref()))
        p.summary {
            span #job-status { (status(job.status)) }
            " " (job.job_type) " in " (job.queue) " · tenant " (job.tenant)
        }
        @let fraction = job.progress.as_ref().map_or(0.0, |p| p.fraction);
        div #job-progress hidden[job.progress.is_none()] {
            label for="progress-bar" { "Progress" }
            " " progress #progress-bar max="1" value=(fraction) { (format!("{:.0} %", fraction * 100.0)) }
            " " span #progress-message { (job.progress.as_ref().map(|p| p.message.as_str()).unwrap_or("")) }
        }
        @if !offered.is_empty() {
            section.actions aria-labelledby="actions" {
                h2 #actions { "Actions" }
                @for a in &offered {
                    (action_form(&token, &format!("{}/{}", job_path(base, id), a.as_str()), *a, &[]))
                }
            }
        }
        @if let Some(error) = &job.error {
            section aria-labelledby="error" {
                h2 #error { "Error" }
                pre.error tabindex="0" { (error) }
            }
        }
        section aria-labelledby="facts" {
            h2 #facts { "Details" }
            dl.facts {
                dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
                dt { "Priority" } dd { (job.priority) }
                dt { "Submitted" } dd { (time(job.created_at)) }
                dt { "Runs from" } dd { (time(job.run_at)) }
                dt { "Started" } dd { (maybe_time(job.started_at)) }
                dt { "Finished" } dd { (maybe_time(job.completed_at)) }
                @if let Some(key) = &job.idempotency_key { dt { "Idempotency key" } dd { code { (key) } } }
                @if let Some(key) = &job.concurrency_key { dt { "Concurrency key" } dd { code { (key) } } }
                @if let Some(w) = &job.workflow {
                    dt { "Workflow" }
                    dd { a href={ (base) "/workflows/" (w.id) } { (w.name.as_deref().unwrap_or("workflow")) } " (as " code { (w.key) } ")" }
                }
                @if let Some(s) = job.schedule_id {
                    dt { "Schedule" }
                    dd { a href={ (base) "/jobs?schedule=" (s) } { (s) } " for " (maybe_time(job.scheduled_for)) }
                }
                @if let Some(cx) = &job.trace { dt { "Trace" } dd { code { (cx.trace_id()) } } }
            }
        }
        (view::json_block("Input", &state.redacted(&job, Part::Input, &job.input)))
        @if let Some(result) = &job.result {
            (view::json_block("Result", &state.redacted(&job, Part::Result, result)))
        }
        @if !links.is_empty() {
            section aria-labelledby="artifacts" {
                h2 #artifacts { "Artifacts" }
                ul.artifacts {
                    @for (a, url) in &links {
                        li {
                            @match url {
                                Some(url) => a href=(url.url) { (a.name) },
                                None => span { (a.name) },
                            }
                            " · " (a.content_type) " · " (a.size_bytes) " bytes"
                            @if let Some(url) = url { " · link valid until " (time(url.expires_at)) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="timeline-title" {
            h2 #timeline-title { "Timeline" }
            @if live.is_some() { p.hint #live-state role="status" { "Following live." } }
            div.scroll {
                table #timeline data-after=(last) data-live=[live] {
                    thead { tr {
                        th.num scope="col" { "#" } th scope="col" { "At" } th scope="col" { "Event" } th scope="col" { "Message" }
                    } }
                    tbody {
                        @for e in &events.events {
                            tr {
                                td.num { (e.seq) } td { (time(e.created_at)) }
                                td { (e.kind.as_str()) } td { (e.message) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(&state, &visit, Section::Jobs, &title, body))
}

#[derive(Debug, Deserialize)]
pub(super) struct After {
    #[serde(default)]
    after: u64,
}

/// The live feed of a job page: waits (up to [`LIVE_WAIT`]) for events after `after`,
/// then answers them with the job's status and progress.
pub(super) async fn live(
    Extract(state): Extract<Shared>,
    visit: Visit,
    Path(id): Path<String>,
    Query(after): Query<After>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let across = state.engine.across(&visit.viewer.tenants);
    let tenant = across.tenant_of(id).await?;
    let page = state
        .engine
        .wait_for_events(
            &tenant,
            id,
            EventParams::default().after(after.after).limit(200),
            LIVE_WAIT,
        )
        .await?;
    let job = state.engine.get(&tenant, id).await?;
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "at": crate::http::format_time(e.created_at),
                "shown": e.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                "kind": e.kind.as_str(),
                "message": e.message,
            })
        })
        .collect();
    Ok(Json(json!({
        "status": job.status.as_str(),
        "terminal": job.status.is_terminal(),
        "progress": job.progress.as_ref().map(|p| json!({"fraction": p.fraction, "message": p.message})),
        "events": events,
    }))
    .into_response())
}

/// A form body as name–value pairs (a name may repeat).
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What every action checks first: the dashboard is not read only, the form carries the
/// viewer's CSRF token, and the viewer may take `action`.
fn guard(state: &Shared, visit: &Visit, form: &Form, action: Action) -> Result<(), PageError> {
    if state.read_only {
        return Err(PageError::forbidden("This dashboard is read only."));
    }
    if !state.csrf_holds(&visit.viewer, form.get("csrf")) {
        return Err(PageError::forbidden(
            "The form's security token is missing or wrong; nothing was changed. Reload the page and try again.",
        ));
    }
    if !visit.viewer.allows(action) {
        return Err(PageError::forbidden(format!(
            "You may not {} jobs here.",
            action.as_str()
        )));
    }
    Ok(())
}

fn operator(visit: &Visit) -> Operator {
    Operator::new(visit.viewer.name.clone()).reason("from the dashboard")
}

pub(super) async fn job_action(
    Extract(state): Extract<Shared>,
    visit: Visit,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = Form::parse(&body);
    let action = Action::named(&action)
        .filter(|a| *a != Action::Queues)
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "No such action."))?;
    guard(&state, &visit, &form, action)?;
    let id = parse_id(&id)?;
    let tenant = state
        .engine
        .across(&visit.viewer.tenants)
        .tenant_of(id)
        .await?;
    let by = operator(&visit);
    let engine = &state.engine;
    match action {
        Action::Retry => drop(engine.retry(&tenant, id, &by).await?),
        Action::Cancel => drop(engine.cancel_as(&tenant, id, &by).await?),
        Action::Requeue => drop(engine.requeue(&tenant, id, &by).await?),
        Action::Discard => engine.discard(&tenant, id, &by).await?,
        Action::Queues => unreachable!("not a job action"),
    }
    let base = &visit.base;
    let to = match (form.get("back"), action) {
        (Some("failed"), _) => format!("{base}/failed?done={}", action.as_str()),
        (_, Action::Discard) => format!("{base}/jobs"),
        _ => format!("{}?done={}", job_path(base, id), action.as_str()),
    };
    Ok(Redirect::to(&to).into_response())
}

pub(super) async fn bulk(
    Extract(state): Extract<Shared>,
    visit: Visit,
    body: Bytes,
) -> Result<Html<String>, PageError> {
    let form = Form::parse(&body);
    let Some((action, bulk_action)) = form
        .get("action")
        .and_then(Action::named)
        .and_then(|a| Some((a, a.bulk()?)))
    else {
        return Err(PageError::bad_request("Choose retry, cancel or discard."));
    };
    guard(&state, &visit, &form, action)?;
    let limit: usize = form
        .get("limit")
        .unwrap_or("1000")
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=MAX_BULK).contains(n))
        .ok_or_else(|| {
            PageError::bad_request(format!("The cap is a number from 1 to {MAX_BULK}."))
        })?;
    let confirmed = form.get("confirm") == Some("yes");
    let by = operator(&visit);
    let filters = Filters::from_form(&form);
    let (report, what) = match form.get("scope") {
        Some("filter") => {
            let selection = filters.check()?;
            let tenants = selection.tenants(&visit.viewer.tenants);
            let report = state
                .engine
                .across(&tenants)
                .bulk(bulk_action, &selection.filter, limit, !confirmed, &by)
                .await?;
            (report, "jobs the filter matches")
        }
        _ => {
            let ids = form
                .all("ids")
                .take(limit)
                .map(parse_id)
                .collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Err(PageError::bad_request("Select at least one job."));
            }
            let report = state
                .engine
                .across(&visit.viewer.tenants)
                .bulk_ids(bulk_action, &ids, !confirmed, &by)
                .await?;
            (report, "selected jobs")
        }
    };
    let base = &visit.base;
    let verb = action.label();
    let body = if confirmed {
        html! {
            p.notice role="status" {
                (verb) ": " (report.applied) " of " (report.matched) " " (what) " changed."
                @if report.applied < report.matched { " The others were not in a state the action applies to." }
            }
            p { a href={ (base) "/jobs" } { "Back to the jobs" } }
        }
    } else {
        html! {
            p { (verb) " " strong { (report.matched) } " " (what) " (at most " (limit) ")?" }
            form method="post" action={ (base) "/jobs/bulk" } {
                @for (k, v) in &form.0 {
                    @if k != "confirm" { input type="hidden" name=(k) value=(v); }
                }
                input type="hidden" name="confirm" value="yes";
                button type="submit" class={ "act a-" (action.as_str()) } disabled[report.matched == 0] {
                    "Confirm: " (verb) " " (report.matched) " jobs"
                }
                " "
                a href={ (base) "/jobs" } { "Back without changing anything" }
            }
        }
    };
    Ok(view::page(
        &state,
        &visit,
        Section::Jobs,
        &format!("{verb} jobs"),
        body,
    ))
}

pub(super) async fn schedules(Extract(state): Extract<Shared>, visit: Visit) -> Page {
    let mut all = state
        .engine
        .across(&visit.viewer.tenants)
        .schedules()
        .await?;
    all.sort_by(|a, b| (&a.tenant, &a.spec.name).cmp(&(&b.tenant, &b.spec.name)));
    let base = &visit.base;
    let body = html! {
        @if all.is_empty() {
            p.empty { "No schedules." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Tenant" } th scope="col" { "When" }
                        th scope="col" { "Job" } th scope="col" { "State" }
                        th scope="col" { "Last run" } th scope="col" { "Next run" }
                    } }
                    tbody {
                        @for s in &all {
                            tr {
                                th scope="row" { a href={ (base) "/jobs?schedule=" (s.id) } { (s.spec.name) } }
                                td { (s.tenant) }
                                td { code { (s.spec.cron) } " " (s.spec.timezone) }
                                td { (s.spec.job.job_type) " in " (s.spec.job.queue) }
                                td { @if s.spec.paused { span.badge.paused { "paused" } } @else { "active" } }
                                td { (maybe_time(s.last_run_at)) }
                                td { (maybe_time(s.next_run_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(
        &state,
        &visit,
        Section::Schedules,
        "Schedules",
        body,
    ))
}

pub(super) async fn workflow(
    Extract(state): Extract<Shared>,
    visit: Visit,
    Path(id): Path<String>,
) -> Page {
    let id: WorkflowId = id
        .parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "No such workflow."))?;
    let workflow = state
        .engine
        .across(&visit.viewer.tenants)
        .workflow(id)
        .await?;
    let base = &visit.base;
    let title = format!(
        "Workflow {}",
        workflow.name.clone().unwrap_or_else(|| id.to_string())
    );
    let nodes = workflow.jobs.iter().chain(workflow.finalizer.as_ref());
    let body = html! {
        p.summary { "Status " strong { (workflow.status.as_str()) } " · tenant " (workflow.tenant) " · submitted " (time(workflow.created_at)) }
        (view::graph(base, &workflow))
        div.scroll {
            table {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "Waits for" } } }
                tbody {
                    @for node in nodes {
                        tr {
                            th scope="row" { code { (node.key) } }
                            td { a.id href=(job_path(base, node.id)) { (node.id) } }
                            td { (status(node.status)) }
                            td { (node.depends_on.join(", ")) }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(&state, &visit, Section::Jobs, &title, body))
}

pub(super) async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/dashboard.css"),
    )
}

pub(super) async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    )
}

/// An embedded asset: its links carry the crate's version, so it may be cached a day.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn not_found(_visit: Visit) -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "No such page.")
}
