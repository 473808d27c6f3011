//! Prometheus metrics: one recorder per process, rendered at `/metrics` by the health router, and
//! an axum middleware that counts and times HTTP requests by route and status.
//!
//! Metric names used across services (labels in brackets):
//! - `http_requests_total` [service, method, route, status], `http_request_duration_seconds`
//! - `events_published_total` [event_type, outcome], `events_consumed_total` [queue, event_type, outcome]
//! - `event_retries_total` [queue], `events_dead_lettered_total` [queue], `events_parked_total`
//!   [queue, reason] (events from a newer build, set aside for re-drive)
//! - service-specific ones (jobs, conversions, emails, uploads) are documented where recorded.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 300.0,
                ],
            )
            .expect("valid buckets")
            .set_buckets_for_metric(
                Matcher::Full("conversion_speed_ratio".into()),
                &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
            )
            .expect("valid buckets");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by a test harness): keep ours renderable.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Renders the current metrics in the Prometheus text format.
pub fn render() -> String {
    handle().render()
}

/// Axum middleware recording `http_requests_total` and `http_request_duration_seconds`.
/// The route label is the matched route template (`/jobs/{id}`), never the raw path.
pub async fn track_http(request: Request, next: Next) -> Response {
    handle();
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
