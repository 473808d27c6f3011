//! Request observability: W3C trace context in and out, the access log (target `access`, one line
//! per request) and the gateway's own metrics.
//!
//! Metrics recorded here and elsewhere in the gateway (beside platform's `http_requests_total` and
//! `http_request_duration_seconds`):
//! - `uploads_total` [outcome: accepted, rejected, too_large, rate_limited, unavailable]
//! - `upload_bytes_total`: bytes of accepted videos
//! - `job_events_stored_total` [event_type]: events newly written to the event store
//! - `jobs_expired_total`, `retention_files_deleted_total` [bucket, reason]
//! - `circuit_breaker_transitions_total` [breaker, to]

use axum::body::HttpBody;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use platform::trace::TraceContext;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tower_http::request_id::RequestId;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

tokio::task_local! {
    /// The trace context of the request being served by this task.
    static CURRENT_TRACE: TraceContext;
}

/// The trace context of the request this code runs for, if any.
pub fn current_trace() -> Option<TraceContext> {
    CURRENT_TRACE.try_with(|trace| *trace).ok()
}

/// Runs `work` as part of `trace` (for work outside a request, and tests).
pub async fn in_trace<F: Future>(trace: TraceContext, work: F) -> F::Output {
    CURRENT_TRACE.scope(trace, work).await
}

/// The `traceparent` to hand to a downstream hop (an event, a gRPC call): a child of the
/// current request's context, or a new trace outside any request.
pub fn downstream_traceparent() -> String {
    current_trace()
        .map(|trace| trace.child())
        .unwrap_or_else(TraceContext::new_root)
        .to_traceparent()
}

/// Middleware: continues the caller's trace (or starts one), makes it available to the request's
/// span, its handlers ([`current_trace`]) and its downstream calls, and answers with the
/// gateway's own `traceparent`.
pub async fn trace_context(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    // The gateway's span: a child of the caller's, or the root of a new trace.
    let trace = TraceContext::continue_or_start(incoming).child();
    request.extensions_mut().insert(trace);
    let mut response = CURRENT_TRACE.scope(trace, next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&trace.to_traceparent()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

/// What the access log learns while the request is handled (the matched route, the caller).
#[derive(Clone, Default)]
pub struct RequestRecord(Arc<Mutex<Recorded>>);

#[derive(Default)]
struct Recorded {
    route: Option<String>,
    user_id: Option<String>,
}

impl RequestRecord {
    /// Notes the authenticated caller of the request whose extensions are given.
    pub fn note_user(extensions: &axum::http::Extensions, user_id: &str) {
        if let Some(record) = extensions.get::<RequestRecord>() {
            record.0.lock().expect("not poisoned").user_id = Some(user_id.to_owned());
        }
    }
}

/// Route-level middleware (a `route_layer`, where the matched path is known): notes the route.
pub async fn record_route(request: Request, next: Next) -> Response {
    if let (Some(record), Some(path)) = (
        request.extensions().get::<RequestRecord>(),
        request.extensions().get::<MatchedPath>(),
    ) {
        record.0.lock().expect("not poisoned").route = Some(path.as_str().to_owned());
    }
    next.run(request).await
}

/// Middleware: one `access` line per request, once its response head is ready (streamed bodies
/// may still be flowing). Never logs query strings, headers or bodies.
pub async fn access_log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let record = RequestRecord::default();
    request.extensions_mut().insert(record.clone());
    let method = request.method().clone();
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let request_bytes = content_length(request.headers());

    let response = next.run(request).await;

    let response_bytes =
        content_length(response.headers()).or_else(|| response.body().size_hint().exact());
    let recorded = record.0.lock().expect("not poisoned");
    tracing::info!(
        target: "access",
        request_id = %request_id,
        user_id = recorded.user_id.as_deref().unwrap_or("-"),
        method = %method,
        route = recorded.route.as_deref().unwrap_or("unmatched"),
        status = response.status().as_u16(),
        request_bytes = request_bytes.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        response_bytes = response_bytes.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        latency_ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    drop(recorded);
    response
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

const UPLOAD_OUTCOMES: [&str; 5] = [
    "accepted",
    "rejected",
    "too_large",
    "rate_limited",
    "unavailable",
];

/// Installs the process's metrics recorder before anything is counted (events may be stored
/// before the first HTTP request) and describes the gateway's own metrics.
pub fn install_metrics() {
    platform::metrics::handle();
    metrics::describe_counter!("uploads_total", "uploads answered, by outcome");
    metrics::describe_counter!(
        "upload_bytes_total",
        metrics::Unit::Bytes,
        "bytes of accepted videos"
    );
    metrics::describe_counter!(
        "job_events_stored_total",
        "job events newly written to the event store, by type"
    );
    metrics::describe_counter!(
        "jobs_expired_total",
        "jobs expired by the retention sweeper"
    );
    metrics::describe_counter!(
        "retention_files_deleted_total",
        "files deleted by the data lifecycle, by bucket and reason"
    );
    metrics::describe_counter!(
        "circuit_breaker_transitions_total",
        "circuit breaker state changes, by breaker and new state"
    );
    for outcome in UPLOAD_OUTCOMES {
        metrics::counter!("uploads_total", "outcome" => outcome).increment(0);
    }
}

/// Counts one upload by outcome.
pub fn upload_outcome(outcome: &'static str) {
    metrics::counter!("uploads_total", "outcome" => outcome).increment(1);
}

/// Counts the bytes of an accepted upload.
pub fn upload_bytes(bytes: u64) {
    metrics::counter!("upload_bytes_total").increment(bytes);
}

/// Counts an event newly written to the event store.
pub fn event_stored(event_type: &'static str) {
    metrics::counter!("job_events_stored_total", "event_type" => event_type).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn downstream_contexts_continue_the_current_trace() {
        let trace = TraceContext::new_root();
        let outgoing = CURRENT_TRACE
            .scope(trace, async { downstream_traceparent() })
            .await;
        let parsed = TraceContext::parse(&outgoing).unwrap();
        assert_eq!(parsed.trace_id, trace.trace_id);
        assert_ne!(parsed.span_id, trace.span_id);
        // Outside a request: a fresh trace every time.
        let a = TraceContext::parse(&downstream_traceparent()).unwrap();
        let b = TraceContext::parse(&downstream_traceparent()).unwrap();
        assert_ne!(a.trace_id, b.trace_id);
        assert!(current_trace().is_none());
    }
}
