//! The W3C trace context headers of a submit.

use axum::http::HeaderMap;

use crate::TraceContext;

/// The trace headers a submit reads (documentation for the OpenAPI document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct TraceHeaders {
    /// W3C trace context: the spans of the submitted jobs continue this trace (ignored
    /// when it cannot be read).
    traceparent: Option<String>,
    /// W3C trace state kept with the `traceparent`.
    tracestate: Option<String>,
}

/// The request's trace context, if it sends a valid one.
///
/// As the W3C specification asks of a receiver, a context that cannot be read is ignored,
/// not refused: the job starts a trace of its own. So are two `traceparent` headers. Several
/// `tracestate` headers are one list; one that cannot be read is dropped and the
/// `traceparent` kept.
pub(super) fn trace_context(headers: &HeaderMap) -> Option<TraceContext> {
    let mut parents = headers.get_all("traceparent").iter();
    let (Some(parent), None) = (parents.next(), parents.next()) else {
        return None;
    };
    let cx = TraceContext::parse(parent.to_str().ok()?).ok()?;
    let states: Option<Vec<&str>> = headers
        .get_all("tracestate")
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    match states {
        Some(states) if !states.is_empty() => {
            Some(cx.clone().with_tracestate(&states.join(",")).unwrap_or(cx))
        }
        _ => Some(cx),
    }
}

/// The trace context a submit continues. With `otel`, that is the request's span when
/// OpenTelemetry records it (a child of the request's `traceparent`, see
/// [`request_span`]), keeping the caller's `tracestate`; otherwise the headers' context.
pub(super) fn submitter(headers: &HeaderMap) -> Option<TraceContext> {
    let sent = trace_context(headers);
    #[cfg(feature = "otel")]
    if let Some(current) = TraceContext::current() {
        let state = sent
            .as_ref()
            .filter(|s| s.trace_id() == current.trace_id() && current.tracestate().is_none())
            .and_then(TraceContext::tracestate);
        return Some(match state {
            Some(state) => current.clone().with_tracestate(state).unwrap_or(current),
            None => current,
        });
    }
    sent
}

/// The span of one request, as `tower-http`'s default (`request`, at debug level, with
/// method, URI and version). With `otel`, a child of the request's `traceparent` unless
/// the host's own middleware already runs the request in a trace.
pub(super) fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    #[cfg(feature = "otel")]
    let outer = TraceContext::current();
    let span = tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
    );
    #[cfg(feature = "otel")]
    if outer.is_none()
        && let Some(cx) = trace_context(request.headers())
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        // Refused only when no OpenTelemetry layer records the span.
        let _ = span.set_parent(cx.to_otel_context());
    }
    span
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn reads_a_context_and_its_state() {
        let cx = trace_context(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ]))
        .unwrap();
        assert_eq!(cx.traceparent(), PARENT);
        assert_eq!(cx.tracestate(), Some("a=1,b=2"));
    }

    #[test]
    fn ignores_what_it_cannot_read() {
        assert_eq!(trace_context(&HeaderMap::new()), None);
        assert_eq!(trace_context(&headers(&[("traceparent", "00-bad")])), None);
        let twice = headers(&[("traceparent", PARENT), ("traceparent", PARENT)]);
        assert_eq!(trace_context(&twice), None);
        let bad_state = headers(&[("traceparent", PARENT), ("tracestate", "no value")]);
        let cx = trace_context(&bad_state).unwrap();
        assert_eq!((cx.traceparent(), cx.tracestate()), (PARENT, None));
        let mut opaque = headers(&[("traceparent", PARENT)]);
        opaque.append("tracestate", HeaderValue::from_bytes(b"k=\xff").unwrap());
        assert_eq!(trace_context(&opaque).unwrap().tracestate(), None);
    }
}
