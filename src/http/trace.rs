//! Trace spans of the HTTP surface: the request's server span continues the caller's W3C
//! trace context, and each GraphQL operation (over HTTP or on a WebSocket) gets a span of its
//! own, named by its type and name as the client wrote them. The document, its arguments and
//! the variables never reach a span: they may hold tokens, secrets and tool arguments.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Request, Response, Value};
use futures_util::Stream;
use tracing::Span;
use tracing::field::Empty;

use crate::telemetry::{self, propagation};

/// The span of one HTTP request. With trace export on, it follows the OpenTelemetry
/// conventions for HTTP servers and continues the caller's `traceparent`; otherwise it is the
/// plain `http` span of the log.
pub(super) fn request_span<B>(request: &http::Request<B>) -> Span {
    // The route template, not the path: begin links carry a flow id.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    if !telemetry::exporting() {
        return tracing::info_span!("http", method = %request.method(), route = %route);
    }
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        route = %route,
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    propagation::continue_from_headers(&span, request.headers());
    span
}

/// Record the status of the response on the request's span.
pub(super) fn record_status(status: http::StatusCode, span: &Span) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one GraphQL operation: `graphql.operation.type` and `graphql.operation.name`
/// (OpenTelemetry's GraphQL conventions), read from the document only while traces are
/// exported. Disabled otherwise.
pub(crate) fn operation_span(request: &Request) -> Span {
    if !telemetry::exporting() {
        return Span::none();
    }
    let (kind, name) = operation_of(request);
    let summary = match &name {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_owned(),
    };
    tracing::info_span!(
        target: telemetry::SPANS,
        "graphql.operation",
        otel.name = %summary,
        graphql.operation.type = kind,
        graphql.operation.name = name.as_deref(),
        graphql.error.codes = Empty,
        otel.status_code = Empty,
    )
}

/// The type and name of the operation the request runs. The name is the client's (an
/// identifier by the grammar), never anything from the selection.
fn operation_of(request: &Request) -> (&'static str, Option<String>) {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return ("invalid", None);
    };
    let chosen = match &document.operations {
        // An anonymous operation, the only one of its document.
        DocumentOperations::Single(operation) => Some((None, &operation.node)),
        DocumentOperations::Multiple(operations) => match request.operation_name.as_deref() {
            Some(wanted) => operations
                .iter()
                .find(|(name, _)| name.as_str() == wanted)
                .map(|(name, operation)| (Some(name.to_string()), &operation.node)),
            None if operations.len() == 1 => operations
                .iter()
                .next()
                .map(|(name, operation)| (Some(name.to_string()), &operation.node)),
            None => None,
        },
    };
    match chosen {
        Some((name, operation)) => {
            let kind = match operation.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            };
            (kind, name.filter(|name| is_name(name)))
        }
        None => ("unknown", None),
    }
}

/// A GraphQL name: `[_A-Za-z][_0-9A-Za-z]*`, at most 128 characters.
fn is_name(name: &str) -> bool {
    name.len() <= 128
        && name
            .chars()
            .enumerate()
            .all(|(at, c)| c == '_' || c.is_ascii_alphabetic() || (at > 0 && c.is_ascii_digit()))
}

/// Record the outcome of an operation: the codes of its errors (as `finish` assigns them).
pub(crate) fn record_response(span: &Span, response: &Response) {
    if span.is_disabled() || response.errors.is_empty() {
        return;
    }
    let mut codes: Vec<&str> = response
        .errors
        .iter()
        .map(
            |error| match error.extensions.as_ref().and_then(|e| e.get("code")) {
                Some(Value::String(code)) => code.as_str(),
                _ => "BAD_USER_INPUT",
            },
        )
        .collect();
    codes.sort_unstable();
    codes.dedup();
    span.record("graphql.error.codes", codes.join(",").as_str());
    span.record("otel.status_code", "ERROR");
}

/// A stream polled inside a span: the responses of one WebSocket operation.
pub(crate) struct InSpan<S> {
    inner: S,
    span: Span,
}

impl<S> InSpan<S> {
    pub(crate) fn new(inner: S, span: Span) -> Self {
        InSpan { inner, span }
    }
}

impl<S: Stream<Item = Response> + Unpin> Stream for InSpan<S> {
    type Item = Response;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(response)) = &polled {
            record_response(&this.span, response);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_by_type_and_client_name_only() {
        let cases = [
            ("{ workspaces { id } }", None, ("query", None)),
            (
                "mutation CallTool($a: JSON) { callMcpTool(serverId: \"s\", name: \"echo\", arguments: $a) { isError } }",
                None,
                ("mutation", Some("CallTool")),
            ),
            (
                "query A { a } subscription B { b }",
                Some("B"),
                ("subscription", Some("B")),
            ),
            ("query A { a } query B { b }", Some("C"), ("unknown", None)),
            ("{ unbalanced", None, ("invalid", None)),
        ];
        for (query, name, expected) in cases {
            let mut request = Request::new(query);
            if let Some(name) = name {
                request = request.operation_name(name);
            }
            let (kind, name) = operation_of(&request);
            assert_eq!((kind, name.as_deref()), expected, "{query}");
        }
    }
}
