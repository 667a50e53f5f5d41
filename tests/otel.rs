//! Trace context through OpenTelemetry: a job's spans continue the trace it was submitted
//! under, from a `traceparent` header or from the submitting span.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use jobworks::http::{JobsApi, Principal, StaticCredentials};
use jobworks::{Engine, Job, JobContext, JobError, JobId, NewJob, RetryPolicy, TenantId, from_fn};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Value, json};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const WAIT: Duration = Duration::from_secs(10);

/// One exporter for the process: the subscriber is global, so that spans of the engine's
/// tasks on any thread reach it. Tests tell their spans apart by trace id.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("jobworks-test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        exporter
    })
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

/// An engine whose `FLAKY` jobs fail their first attempt and answer with the trace
/// context the executor saw.
fn engine() -> Engine {
    exporter();
    let calls = Arc::new(AtomicU32::new(0));
    let engine = Engine::builder()
        .retry_policy(
            RetryPolicy::default()
                .base(Duration::from_millis(1))
                .cap(Duration::from_millis(5)),
        )
        .executor(
            "FLAKY",
            from_fn(move |ctx: JobContext, _: Value| {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Err(JobError::retry("not yet"));
                    }
                    let seen = ctx.trace().map(|cx| (cx.traceparent(), cx.tracestate()));
                    Ok::<_, JobError>(json!(seen))
                }
            }),
        )
        .executor(
            "ECHO",
            from_fn(|_: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .build()
        .unwrap();
    engine.start().unwrap();
    engine
}

/// Serves the engine's JSON API on a loopback port, for the bearer token `acme`.
async fn serve(engine: &Engine) -> String {
    let credentials = StaticCredentials::new().bearer("acme", Principal::new(acme(), "a"));
    let app = axum::Router::new().nest("/v1", JobsApi::new(engine.clone(), credentials).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(jobworks::http::Server::new().serve(listener, app));
    base
}

async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> Value {
    let mut request = reqwest::Client::new().post(url).bearer_auth("acme");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.json(&body).send().await.unwrap();
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

/// Submits `body` over HTTP with `headers`, and waits until the job is terminal.
async fn run(engine: &Engine, url: &str, headers: &[(&str, &str)], body: Value) -> Job {
    let view = post(url, headers, body).await;
    let id: JobId = view["id"].as_str().unwrap().parse().unwrap();
    engine.wait_until_terminal(&acme(), id, WAIT).await.unwrap()
}

/// The finished spans named `name` of `trace`, once there are `n` of them.
async fn spans(name: &str, trace: TraceId, n: usize) -> Vec<SpanData> {
    let deadline = Instant::now() + WAIT;
    loop {
        let spans: Vec<SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.name == name && s.span_context.trace_id() == trace)
            .collect();
        if spans.len() >= n || Instant::now() > deadline {
            assert_eq!(spans.len(), n, "{name} spans of {trace}");
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The caller's span → the API's request span → each attempt's job span, all one trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_on_submit_parents_every_attempt() {
    let engine = engine();
    let base = serve(&engine).await;
    let headers = [("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")];
    let done = run(
        &engine,
        &format!("{base}/jobs"),
        &headers,
        json!({"type": "FLAKY"}),
    )
    .await;

    let trace = TraceId::from_hex(&PARENT[3..35]).unwrap();
    let request = spans("request", trace, 1).await.remove(0);
    assert_eq!(
        request.parent_span_id,
        SpanId::from_hex(&PARENT[36..52]).unwrap()
    );
    assert!(request.parent_span_is_remote);
    assert_eq!(attribute(&request, "method").as_deref(), Some("POST"));

    // The job keeps the request span's context and the caller's trace state; the
    // executor sees both.
    let kept = done.trace.clone().unwrap();
    assert_eq!(kept.trace_id(), &PARENT[3..35]);
    assert_eq!(kept.parent_id(), request.span_context.span_id().to_string());
    assert_eq!(kept.tracestate(), Some("congo=t61rcWkgMzE"));
    assert_eq!(
        done.result,
        Some(json!([kept.traceparent(), "congo=t61rcWkgMzE"]))
    );

    let jobs = spans("job", trace, 2).await;
    for span in &jobs {
        assert_eq!(span.parent_span_id, request.span_context.span_id());
        assert_eq!(
            attribute(span, "trace_id").as_deref(),
            Some(kept.trace_id())
        );
        assert_eq!(attribute(span, "type").as_deref(), Some("FLAKY"));
        assert_eq!(attribute(span, "id"), Some(done.id.to_string()));
    }
    let mut attempts: Vec<String> = jobs
        .iter()
        .filter_map(|s| attribute(s, "attempt"))
        .collect();
    attempts.sort();
    assert_eq!(attempts, ["1", "2"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_submit_traces_every_job() {
    let engine = engine();
    let base = serve(&engine).await;
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let body = json!({"jobs": [
        {"key": "a", "type": "ECHO"},
        {"key": "b", "type": "ECHO", "depends_on": ["a"]},
    ]});
    post(
        &format!("{base}/workflows"),
        &[("traceparent", parent)],
        body,
    )
    .await;
    let trace = TraceId::from_hex(&parent[3..35]).unwrap();
    let request = spans("request", trace, 1).await.remove(0);
    let jobs = spans("job", trace, 2).await;
    assert!(
        jobs.iter()
            .all(|s| s.parent_span_id == request.span_context.span_id())
    );
    engine.shutdown().await;
}

/// A host whose own middleware already traces its requests keeps its trace: the API's
/// span and the job's are children of the host's span, not of the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_span_around_the_api_wins_over_the_header() {
    let engine = engine();
    let credentials = StaticCredentials::new().bearer("acme", Principal::new(acme(), "a"));
    let api = JobsApi::new(engine.clone(), credentials).router();
    let app = axum::Router::new()
        .nest("/v1", api)
        .layer(axum::middleware::from_fn(
            |request: axum::extract::Request, next: axum::middleware::Next| {
                next.run(request).instrument(tracing::info_span!("host"))
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(jobworks::http::Server::new().serve(listener, app));

    let parent = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01";
    let done = run(
        &engine,
        &format!("{base}/jobs"),
        &[("traceparent", parent)],
        json!({"type": "ECHO"}),
    )
    .await;
    let kept = done.trace.expect("the API's request span");
    assert_ne!(kept.trace_id(), &parent[3..35]);
    let trace = TraceId::from_hex(kept.trace_id()).unwrap();
    let host = spans("host", trace, 1).await.remove(0);
    let request = spans("request", trace, 1).await.remove(0);
    assert_eq!(request.parent_span_id, host.span_context.span_id());
    let jobs = spans("job", trace, 1).await;
    assert_eq!(jobs[0].parent_span_id, request.span_context.span_id());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_inside_a_span_continues_it() {
    let engine = engine();
    let (job, request) = async {
        let job = engine
            .submit(&acme(), NewJob::new("ECHO".parse().unwrap(), json!(1)))
            .await
            .unwrap()
            .job;
        let cx = tracing::Span::current().context();
        (job, cx.span().span_context().clone())
    }
    .instrument(tracing::info_span!("request"))
    .await;
    assert!(request.is_valid());
    let kept = job.trace.as_ref().expect("taken from the current span");
    assert_eq!(kept.trace_id(), request.trace_id().to_string());
    assert_eq!(kept.parent_id(), request.span_id().to_string());
    let jobs = spans("job", request.trace_id(), 1).await;
    assert_eq!(jobs[0].parent_span_id, request.span_id());

    // A context the caller names wins over the current span's.
    let named: jobworks::TraceContext = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-00"
        .parse()
        .unwrap();
    let job = engine
        .submit(
            &acme(),
            NewJob::new("ECHO".parse().unwrap(), json!(2)).trace(named.clone()),
        )
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap()
        .job;
    assert_eq!(job.trace, Some(named));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_traceparent_starts_a_trace_of_its_own() {
    let engine = engine();
    let base = serve(&engine).await;
    let bad = PARENT.replace("-01", "-0x");
    let done = run(
        &engine,
        &format!("{base}/jobs"),
        &[("traceparent", bad.as_str())],
        json!({"type": "ECHO"}),
    )
    .await;
    // It continues the request's span instead, in a trace of its own.
    let kept = done.trace.expect("the request span's context");
    assert_ne!(kept.trace_id(), &PARENT[3..35]);
    let trace = TraceId::from_hex(kept.trace_id()).unwrap();
    let request = spans("request", trace, 1).await.remove(0);
    assert_eq!(request.parent_span_id, SpanId::INVALID);
    let jobs = spans("job", trace, 1).await;
    assert_eq!(jobs[0].parent_span_id, request.span_context.span_id());
    engine.shutdown().await;
}
