//! W3C trace context (`traceparent`, `tracestate`) in and out: the parent of a request's
//! spans when the caller sent one, and the context handed to upstream MCP servers.
//!
//! Every function here does nothing, and costs next to nothing, unless trace export is on
//! ([`super::exporting`]): without it there is no trace to continue or to hand on.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C header carrying the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor trace state.
pub const TRACESTATE: &str = "tracestate";

/// A span's context as W3C trace context values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The `traceparent` value.
    pub traceparent: String,
    /// The `tracestate` value, when there is one.
    pub tracestate: Option<String>,
}

/// Make the context in `headers` (`traceparent`, `tracestate`) the parent of `span`. A
/// missing or malformed `traceparent` leaves `span` a root, as the specification asks.
pub fn continue_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !super::exporting() || !headers.contains_key(TRACEPARENT) {
        return;
    }
    set_parent(span, &Headers(headers));
}

/// Make `context` the parent of `span` (a context read from a request's `_meta`).
pub fn continue_from(span: &tracing::Span, context: &TraceContext) {
    if !super::exporting() {
        return;
    }
    let mut carrier = HashMap::new();
    carrier.insert(TRACEPARENT.to_owned(), context.traceparent.clone());
    if let Some(state) = &context.tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.clone());
    }
    set_parent(span, &carrier);
}

fn set_parent(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        // Fails only for a span no exporter sees, which then has no parent to set.
        let _ = span.set_parent(parent);
    }
}

/// The context of `span` to hand on to another service, or `None` when trace export is off
/// or the span is not exported.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if !super::exporting() || span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    let traceparent = carrier.remove(TRACEPARENT)?;
    let tracestate = carrier.remove(TRACESTATE).filter(|state| !state.is_empty());
    Some(TraceContext {
        traceparent,
        tracestate,
    })
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
