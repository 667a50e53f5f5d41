//! The pieces every page is made of: the frame with its navigation, badges, times,
//! forms with their CSRF token, and the workflow graph drawn as SVG.

use std::collections::HashMap;

use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Action, State, Visit};
use crate::engine::Tenants;
use crate::job::{JobId, JobStatus};
use crate::workflow::{Workflow, WorkflowNode};

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Overview,
    Queues,
    Jobs,
    Failed,
    Schedules,
}

impl Section {
    const ALL: [(Section, &'static str, &'static str); 5] = [
        (Section::Overview, "Overview", "/"),
        (Section::Queues, "Queues", "/queues"),
        (Section::Jobs, "Jobs", "/jobs"),
        (Section::Failed, "Failed", "/failed"),
        (Section::Schedules, "Schedules", "/schedules"),
    ];
}

/// A whole page: head, navigation, who is looking, then `body` under an `h1` of `title`.
pub(super) fn page(
    state: &State,
    visit: &Visit,
    section: Section,
    title: &str,
    body: Markup,
) -> Html<String> {
    let base = &visit.base;
    let version = env!("CARGO_PKG_VERSION");
    let seen = match &visit.viewer.tenants {
        Tenants::All => "every tenant".to_owned(),
        Tenants::Only(set) if set.is_empty() => "no tenant".to_owned(),
        Tenants::Only(set) => set
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · jobworks" }
                // No icon to fetch (a browser would ask the host's root for one).
                link rel="icon" href="data:,";
                link rel="stylesheet" href={ (base) "/assets/dashboard.css?v=" (version) };
                script src={ (base) "/assets/dashboard.js?v=" (version) } defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href={ (base) "/" } { "jobworks" }
                    nav aria-label="Sections" {
                        ul {
                            @for (s, label, path) in Section::ALL {
                                li {
                                    a href={ (base) (path) }
                                        aria-current=[(s == section).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                    p.who {
                        (visit.viewer.name) " · " (seen)
                        @if state.read_only { " · " span.badge { "read only" } }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A page without the frame, for errors.
pub(super) fn bare(title: &str, message: &str) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · jobworks" }
            }
            body {
                main {
                    h1 { (title) }
                    p { (message) }
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A status as a badge: its word, with a class per status for the colour.
pub(super) fn status(status: JobStatus) -> Markup {
    html! { span class={ "status s-" (status.as_str()) } { (status.as_str()) } }
}

/// A time as `2026-12-02 10:04:05`, in a `time` element that carries it exactly.
pub(super) fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(crate::http::format_time(at)) { (at.format("%Y-%m-%d %H:%M:%S")) }
    }
}

/// An optional time, or a dash.
pub(super) fn maybe_time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { "—" },
    }
}

/// The path of a job's page.
pub(super) fn job_path(base: &str, id: JobId) -> String {
    format!("{base}/jobs/{id}")
}

/// A form that `POST`s `action` to `path` with the viewer's CSRF token, its button
/// labelled by the action's name; `hidden` fields go along.
pub(super) fn action_form(
    token: &str,
    path: &str,
    action: Action,
    hidden: &[(&str, &str)],
) -> Markup {
    html! {
        form.inline method="post" action=(path) {
            input type="hidden" name="csrf" value=(token);
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" class={ "act a-" (action.as_str()) } { (action.label()) }
        }
    }
}

/// A JSON value, pretty, in a scrolling block.
pub(super) fn json_block(label: &str, value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! {
        figure.json {
            figcaption { (label) }
            pre tabindex="0" { code { (text) } }
        }
    }
}

const NODE_W: f64 = 168.0;
const NODE_H: f64 = 44.0;
const GAP_X: f64 = 56.0;
const GAP_Y: f64 = 18.0;
const PAD: f64 = 8.0;

/// A workflow's graph as inline SVG: jobs in columns by depth (a job one column right of
/// its deepest parent, the finalizer last), edges from parents to children, each job a
/// link to its page, its status written under its key (legible without colour).
pub(super) fn graph(base: &str, workflow: &Workflow) -> Markup {
    let mut depth: HashMap<&str, usize> = HashMap::new();
    // Parents come before children in `jobs`, so one pass finds every depth.
    for node in &workflow.jobs {
        let d = node
            .depends_on
            .iter()
            .filter_map(|p| depth.get(p.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(&node.key, d);
    }
    let mut columns: Vec<Vec<&WorkflowNode>> = Vec::new();
    for node in &workflow.jobs {
        let d = depth[node.key.as_str()];
        if columns.len() <= d {
            columns.resize(d + 1, Vec::new());
        }
        columns[d].push(node);
    }
    if let Some(finalizer) = &workflow.finalizer {
        columns.push(vec![finalizer]);
    }
    let mut at: HashMap<&str, (f64, f64)> = HashMap::new();
    for (c, column) in columns.iter().enumerate() {
        for (r, node) in column.iter().enumerate() {
            let x = PAD + c as f64 * (NODE_W + GAP_X);
            let y = PAD + r as f64 * (NODE_H + GAP_Y);
            at.insert(&node.key, (x, y));
        }
    }
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0);
    let width = PAD * 2.0 + columns.len() as f64 * (NODE_W + GAP_X) - GAP_X;
    let height = PAD * 2.0 + rows as f64 * (NODE_H + GAP_Y) - GAP_Y;
    // The finalizer waits for every job; drawing it from the jobs nothing else waits for
    // says as much with fewer lines.
    let finalizer_parents: Vec<String> = workflow
        .jobs
        .iter()
        .filter(|n| !workflow.jobs.iter().any(|o| o.depends_on.contains(&n.key)))
        .map(|n| n.key.clone())
        .collect();
    let mut edges = String::new();
    let all = workflow.jobs.iter().chain(workflow.finalizer.as_ref());
    for node in all.clone() {
        let parents = if workflow
            .finalizer
            .as_ref()
            .is_some_and(|f| f.key == node.key)
        {
            &finalizer_parents
        } else {
            &node.depends_on
        };
        let (cx, cy) = at[node.key.as_str()];
        for parent in parents {
            let Some(&(px, py)) = at.get(parent.as_str()) else {
                continue;
            };
            let (x1, y1, x2, y2) = (px + NODE_W, py + NODE_H / 2.0, cx, cy + NODE_H / 2.0);
            let mid = (x1 + x2) / 2.0;
            edges.push_str(&format!(
                "<path class=\"edge\" d=\"M{x1:.0},{y1:.0} C{mid:.0},{y1:.0} {mid:.0},{y2:.0} {x2:.0},{y2:.0}\"/>"
            ));
        }
    }
    html! {
        figure.graph {
            svg role="img" aria-labelledby="graph-title" viewBox={ "0 0 " (width) " " (height) }
                width=(width) height=(height) xmlns="http://www.w3.org/2000/svg" {
                title #graph-title { "The jobs of the workflow and what each waits for" }
                defs {
                    marker #arrow viewBox="0 0 8 8" refX="8" refY="4" markerWidth="8" markerHeight="8" orient="auto" {
                        path d="M0,0 L8,4 L0,8 z" {}
                    }
                }
                (PreEscaped(edges))
                @for node in all {
                    @let (x, y) = at[node.key.as_str()];
                    a href=(job_path(base, node.id)) {
                        g class={ "node s-" (node.status.as_str()) } {
                            rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6" {}
                            text x=(x + 10.0) y=(y + 18.0) class="key" { (clip(&node.key, 20)) }
                            text x=(x + 10.0) y=(y + 35.0) class="word" { (node.status.as_str()) }
                        }
                    }
                }
            }
        }
    }
}

/// `text` cut to `max` characters with an ellipsis.
pub(super) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

const SPARK_W: f64 = 240.0;
const SPARK_H: f64 = 48.0;

/// A series as a sparkline: an inline SVG line over a filled area, the largest value at
/// the top, described for screen readers by `label`.
pub(super) fn sparkline(values: &[u64], label: &str, class: &str) -> Markup {
    let peak = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 {
        SPARK_W / (values.len() - 1) as f64
    } else {
        SPARK_W
    };
    let mut line = String::new();
    for (i, v) in values.iter().enumerate() {
        let x = i as f64 * step;
        let y = SPARK_H - 2.0 - (*v as f64 / peak) * (SPARK_H - 4.0);
        line.push_str(&format!("{x:.1},{y:.1} "));
    }
    let area = format!("0,{SPARK_H} {line}{SPARK_W},{SPARK_H}");
    html! {
        svg class={ "spark " (class) } role="img" aria-label=(label) viewBox={ "0 0 " (SPARK_W) " " (SPARK_H) }
            width=(SPARK_W) height=(SPARK_H) preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            polygon.area points=(area) {}
            polyline.line points=(line.trim_end()) {}
        }
    }
}
