//! W3C trace context in NATS headers: captured from the current span when an event is
//! written to the outbox, restored as the parent of the consumer's span.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's context as headers (`traceparent`, `tracestate`); empty without one.
pub fn current_headers() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut headers);
    }
    headers
}

/// Makes the span a child of the trace the headers carry, if any.
pub fn set_parent(span: &tracing::Span, headers: &HashMap<String, String>) {
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(headers);
        let _ = span.set_parent(parent);
    }
}

/// The trace id in a `traceparent` header (for logs and tests).
pub fn trace_id(headers: &HashMap<String, String>) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|tp| tp.split('-').nth(1))
        .map(str::to_owned)
}
