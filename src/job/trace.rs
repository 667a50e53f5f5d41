//! W3C trace context kept with a job, so that a host's trace runs from the request that
//! submitted the job into the executor that runs it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest `tracestate` kept, in bytes (the size every vendor must propagate).
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Most list members a `tracestate` may have.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A [W3C trace context](https://www.w3.org/TR/trace-context/): the `traceparent` of the
/// span that submitted a job, and its `tracestate` when there was one.
///
/// The job keeps it for its whole life; every attempt's `job` span records its trace id
/// and, with the `otel` feature, is a child of it.
///
/// ```
/// use jobworks::TraceContext;
/// let cx: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
/// assert_eq!(cx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(cx.parent_id(), "00f067aa0ba902b7");
/// assert!(cx.sampled());
/// let cx = cx.with_tracestate("congo=t61rcWkgMzE")?;
/// assert_eq!(cx.tracestate(), Some("congo=t61rcWkgMzE"));
/// # Ok::<(), jobworks::ParseTraceError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Stored", into = "Stored")]
pub struct TraceContext {
    /// `00-{trace id}-{parent id}-{flags}`, lower-case hex, always version 00.
    parent: String,
    state: Option<String>,
}

/// Why a `traceparent` or `tracestate` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {header}: {reason}")]
pub struct ParseTraceError {
    header: &'static str,
    reason: &'static str,
}

impl ParseTraceError {
    fn parent(reason: &'static str) -> Self {
        ParseTraceError {
            header: "traceparent",
            reason,
        }
    }

    fn state(reason: &'static str) -> Self {
        ParseTraceError {
            header: "tracestate",
            reason,
        }
    }
}

impl TraceContext {
    /// Reads a `traceparent` header's value.
    ///
    /// Version `00` must be exactly `00-{32 hex}-{16 hex}-{2 hex}` in lower case, with
    /// neither id all zeros. A later version is read by its first four fields, as the
    /// specification asks, and kept as version `00`; version `ff` is refused.
    ///
    /// # Errors
    /// [`ParseTraceError`] saying what does not fit.
    pub fn parse(traceparent: &str) -> Result<Self, ParseTraceError> {
        let s = traceparent.trim_matches([' ', '\t']);
        let field = |range: std::ops::Range<usize>| s.get(range).filter(|f| is_lower_hex(f));
        let version = field(0..2).ok_or(ParseTraceError::parent("the version is not hex"))?;
        if version == "ff" {
            return Err(ParseTraceError::parent("version ff is not allowed"));
        }
        let fits = if version == "00" {
            s.len() == 55
        } else {
            s.len() == 55 || (s.len() > 55 && s.as_bytes()[55] == b'-')
        };
        if !fits || [2, 35, 52].iter().any(|&i| s.as_bytes()[i] != b'-') {
            return Err(ParseTraceError::parent(
                "must be version-traceid-parentid-flags",
            ));
        }
        let trace_id = field(3..35).ok_or(ParseTraceError::parent("the trace id is not hex"))?;
        let parent_id = field(36..52).ok_or(ParseTraceError::parent("the parent id is not hex"))?;
        let flags = field(53..55).ok_or(ParseTraceError::parent("the flags are not hex"))?;
        if trace_id.bytes().all(|b| b == b'0') {
            return Err(ParseTraceError::parent("the trace id is all zeros"));
        }
        if parent_id.bytes().all(|b| b == b'0') {
            return Err(ParseTraceError::parent("the parent id is all zeros"));
        }
        Ok(TraceContext {
            parent: format!("00-{trace_id}-{parent_id}-{flags}"),
            state: None,
        })
    }

    /// Adds a `tracestate` header's value (several headers joined by commas): at most 32
    /// `key=value` members and 512 bytes. Empty members are dropped; an empty value
    /// leaves the context without one.
    ///
    /// # Errors
    /// [`ParseTraceError`] when a member is not `key=value` of the allowed characters, or
    /// the value is too long.
    pub fn with_tracestate(mut self, tracestate: &str) -> Result<Self, ParseTraceError> {
        let members: Vec<&str> = tracestate
            .split(',')
            .map(|m| m.trim_matches([' ', '\t']))
            .filter(|m| !m.is_empty())
            .collect();
        if members.len() > MAX_TRACESTATE_MEMBERS {
            return Err(ParseTraceError::state("has more than 32 members"));
        }
        if !members.iter().all(|m| is_member(m)) {
            return Err(ParseTraceError::state("a member is not key=value"));
        }
        let state = members.join(",");
        if state.len() > MAX_TRACESTATE_LEN {
            return Err(ParseTraceError::state("is longer than 512 bytes"));
        }
        self.state = (!state.is_empty()).then_some(state);
        Ok(self)
    }

    /// The `traceparent` to send on: `00-{trace id}-{parent id}-{flags}`.
    pub fn traceparent(&self) -> &str {
        &self.parent
    }

    /// The `tracestate`, if one was given.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The trace's id: 32 lower-case hex digits.
    pub fn trace_id(&self) -> &str {
        &self.parent[3..35]
    }

    /// The submitting span's id: 16 lower-case hex digits.
    pub fn parent_id(&self) -> &str {
        &self.parent[36..52]
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.parent[53..55], 16).expect("checked at parse")
    }

    /// Whether the caller recorded its span (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags() & 1 == 1
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.parent)
            .field("tracestate", &self.state)
            .finish()
    }
}

/// Shows the `traceparent`.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parent)
    }
}

/// Reads a `traceparent` (see [`TraceContext::parse`]).
impl FromStr for TraceContext {
    type Err = ParseTraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The current span's context with the `otel` feature (and an OpenTelemetry layer that
/// records it); `None` without.
pub(crate) fn current() -> Option<TraceContext> {
    #[cfg(feature = "otel")]
    return TraceContext::current();
    #[cfg(not(feature = "otel"))]
    None
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `key=value` as the specification's list members: a key of lower-case letters, digits
/// and `_-*/` (with one `@` for a multi-tenant key), at most 256 bytes; a value of
/// printable ASCII without `,` and `=`, at most 256 bytes, not ending in a space.
fn is_member(member: &str) -> bool {
    let Some((key, value)) = member.split_once('=') else {
        return false;
    };
    let key_char = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let key_fits = !key.is_empty()
        && key.len() <= 256
        && key.bytes().filter(|&b| b == b'@').count() <= 1
        && key.bytes().all(|b| key_char(b) || b == b'@')
        && !key.starts_with('@')
        && !key.ends_with('@');
    let value_fits = !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && !value.ends_with(' ');
    key_fits && value_fits
}

/// How a context is kept in a store's row.
#[derive(Serialize, Deserialize)]
struct Stored {
    traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
}

impl TryFrom<Stored> for TraceContext {
    type Error = ParseTraceError;

    fn try_from(s: Stored) -> Result<Self, Self::Error> {
        let cx = TraceContext::parse(&s.traceparent)?;
        match s.tracestate {
            Some(state) => cx.with_tracestate(&state),
            None => Ok(cx),
        }
    }
}

impl From<TraceContext> for Stored {
    fn from(cx: TraceContext) -> Self {
        Stored {
            traceparent: cx.parent,
            tracestate: cx.state,
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::TraceContext;

    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    impl TraceContext {
        /// The context of the current `tracing` span as OpenTelemetry knows it, if it
        /// belongs to a trace (an `OpenTelemetryLayer` is installed and the span is
        /// recorded or has a remote parent).
        pub fn current() -> Option<Self> {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let cx = tracing::Span::current().context();
            Self::from_span_context(cx.span().span_context())
        }

        /// The context of an OpenTelemetry span, if it is valid.
        pub fn from_span_context(span: &SpanContext) -> Option<Self> {
            if !span.is_valid() {
                return None;
            }
            let parent = format!(
                "00-{}-{}-{:02x}",
                span.trace_id(),
                span.span_id(),
                span.trace_flags().to_u8()
            );
            let cx = TraceContext::parse(&parent).ok()?;
            let state = span.trace_state().header();
            Some(cx.clone().with_tracestate(&state).unwrap_or(cx))
        }

        /// The context as a remote OpenTelemetry parent.
        pub fn to_span_context(&self) -> SpanContext {
            let trace_id = TraceId::from_hex(self.trace_id()).expect("checked at parse");
            let span_id = SpanId::from_hex(self.parent_id()).expect("checked at parse");
            let state = self
                .tracestate()
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default();
            SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::new(self.flags()),
                true,
                state,
            )
        }

        /// An OpenTelemetry [`Context`](opentelemetry::Context) whose span is this remote
        /// parent: what a `tracing` span's `set_parent` takes.
        pub fn to_otel_context(&self) -> opentelemetry::Context {
            opentelemetry::Context::new().with_remote_span_context(self.to_span_context())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_version_00() {
        let cx = TraceContext::parse(GOOD).unwrap();
        assert_eq!(cx.traceparent(), GOOD);
        assert_eq!(cx.flags(), 1);
        assert!(cx.sampled());
        let unsampled = TraceContext::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        assert_eq!(TraceContext::parse(&format!(" {GOOD}\t")).unwrap(), cx);
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        let bad = [
            "",
            "00",
            &GOOD.to_uppercase(),
            &GOOD.replace(
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "00000000000000000000000000000000",
            ),
            &GOOD.replace("00f067aa0ba902b7", "0000000000000000"),
            &GOOD.replacen("00-", "ff-", 1),
            &format!("{GOOD}-"),
            &format!("{GOOD}x"),
            &GOOD.replace('-', "_"),
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for s in bad {
            assert!(TraceContext::parse(s).is_err(), "{s:?} was read");
        }
    }

    #[test]
    fn reads_later_versions_by_their_first_fields() {
        let later = GOOD.replacen("00-", "01-", 1);
        assert_eq!(TraceContext::parse(&later).unwrap().traceparent(), GOOD);
        let longer = format!("{later}-what-comes-next");
        assert_eq!(TraceContext::parse(&longer).unwrap().traceparent(), GOOD);
        assert!(TraceContext::parse(&format!("{later}x")).is_err());
    }

    #[test]
    fn tracestate_is_checked_and_bounded() {
        let cx = TraceContext::parse(GOOD).unwrap();
        let kept = cx
            .clone()
            .with_tracestate(" rojo=00f067aa0ba902b7 ,, congo=t61rcWkgMzE,t@v=x ")
            .unwrap();
        assert_eq!(
            kept.tracestate(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,t@v=x")
        );
        assert_eq!(
            cx.clone().with_tracestate(" , ").unwrap().tracestate(),
            None
        );
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let long = format!("k={}", "v".repeat(257));
        let wide = (0..3)
            .map(|i| format!("k{i}={}", "v".repeat(200)))
            .collect::<Vec<_>>()
            .join(",");
        for bad in [
            "novalue", "Upper=x", "k=a,b=", "k=a=b", "@k=x", &many, &long, &wide,
        ] {
            assert!(cx.clone().with_tracestate(bad).is_err(), "{bad:?} was kept");
        }
    }

    #[cfg(feature = "otel")]
    #[test]
    fn converts_to_and_from_opentelemetry() {
        let cx = TraceContext::parse(GOOD)
            .unwrap()
            .with_tracestate("congo=t61rcWkgMzE")
            .unwrap();
        let span = cx.to_span_context();
        assert!(span.is_valid() && span.is_remote() && span.is_sampled());
        assert_eq!(span.trace_state().header(), "congo=t61rcWkgMzE");
        assert_eq!(TraceContext::from_span_context(&span), Some(cx));
        let invalid = opentelemetry::trace::SpanContext::empty_context();
        assert_eq!(TraceContext::from_span_context(&invalid), None);
    }

    #[test]
    fn a_stored_context_reads_back() {
        let cx = TraceContext::parse(GOOD)
            .unwrap()
            .with_tracestate("congo=t61rcWkgMzE")
            .unwrap();
        let text = serde_json::to_string(&cx).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"traceparent":"{GOOD}","tracestate":"congo=t61rcWkgMzE"}}"#)
        );
        assert_eq!(serde_json::from_str::<TraceContext>(&text).unwrap(), cx);
        assert!(serde_json::from_str::<TraceContext>(r#"{"traceparent":"00-x"}"#).is_err());
    }
}
