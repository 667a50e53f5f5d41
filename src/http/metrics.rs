//! `GET /metrics`: the engine's metrics in the Prometheus text format (scope `operator`).

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

pub use metrics_exporter_prometheus::PrometheusHandle;

use super::{ApiError, ApiState, Principal, Scope};
use crate::{Error, Result};

/// The buckets of every `_seconds` histogram, from a millisecond to ten minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

/// How often the recorder's histograms are folded when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs a Prometheus recorder as the process's `metrics` recorder and answers its
/// handle, for [`JobsApi::metrics`](super::JobsApi::metrics). Later calls answer the same
/// handle. Histograms (`jobworks_submit_to_start_seconds`, `jobworks_run_duration_seconds`)
/// get buckets from 1 ms to 10 min. Called inside a Tokio runtime, it also keeps the
/// histograms folded every few seconds, so they stay small between scrapes.
///
/// A host that uses another recorder (OpenTelemetry, StatsD) installs that instead and
/// reads the names in [`observe`](crate::observe).
///
/// # Errors
/// [`Error::Invalid`] when another recorder was installed first.
pub fn install_prometheus() -> Result<PrometheusHandle> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|e| Error::invalid("metrics buckets", e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| Error::invalid("metrics recorder", e.to_string()))?;
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let upkeep = handle.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP).await;
                upkeep.run_upkeep();
            }
        });
    }
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The engine's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "metrics", operation_id = "metrics",
    responses(
        (status = 200, description = "Counters, gauges and histograms in the Prometheus text format",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 403, description = "The credential lacks the `operator` scope (`permission_denied`)", body = super::ErrorBody),
    ))]
pub(crate) async fn metrics(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Operator)?;
    let Some(handle) = &state.metrics else {
        return Err(ApiError::from_status(axum::http::StatusCode::NOT_FOUND));
    };
    handle.run_upkeep();
    let text = handle.render();
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use metrics_exporter_prometheus::PrometheusBuilder;

    use crate::store::QueueStats;
    use crate::{Job, JobType, NewJob, QueueName, TenantId};

    #[test]
    fn the_engines_metrics_render_with_their_labels() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(super::Matcher::Suffix("_seconds".into()), super::BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let tenant = TenantId::new("acme").unwrap();
        let mut job = Job::new_queued(
            tenant,
            NewJob::new(JobType::new("ECHO").unwrap(), 1.into()),
            3,
        );
        job.started_at = Some(job.created_at + chrono::Duration::milliseconds(30));
        let mut stats = BTreeMap::new();
        stats.insert(
            QueueName::default(),
            QueueStats {
                queued: 7,
                running: 2,
                ..QueueStats::default()
            },
        );
        let idle = QueueName::new("idle").unwrap();
        metrics::with_local_recorder(&recorder, || {
            crate::engine::observe::submitted([&job]);
            crate::engine::observe::started(&job);
            let done = crate::store::Finish::Completed { result: 1.into() };
            let later = job.created_at + chrono::Duration::milliseconds(80);
            crate::engine::observe::ended(&job, &done, later);
            crate::engine::observe::depths(&stats, &[QueueName::default(), idle]);
        });
        let text = handle.render();
        for line in [
            r#"jobworks_jobs_submitted_total{queue="default",type="ECHO"} 1"#,
            r#"jobworks_jobs_started_total{queue="default",type="ECHO"} 1"#,
            r#"jobworks_jobs_completed_total{queue="default",type="ECHO"} 1"#,
            r#"jobworks_submit_to_start_seconds_bucket{queue="default",type="ECHO",le="0.025"} 0"#,
            r#"jobworks_submit_to_start_seconds_bucket{queue="default",type="ECHO",le="0.05"} 1"#,
            r#"jobworks_run_duration_seconds_bucket{queue="default",type="ECHO",le="0.05"} 1"#,
            r#"jobworks_queue_depth{queue="default"} 7"#,
            r#"jobworks_jobs_running{queue="default"} 2"#,
            r#"jobworks_queue_depth{queue="idle"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
