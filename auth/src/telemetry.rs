//! Observability of the gRPC edge. [`GrpcTelemetryLayer`] runs every call inside a `grpc` span
//! carrying the method (`rpc`) and the W3C trace id (`trace_id`) from the caller's `traceparent`
//! metadata (a new trace when it is absent or malformed), so each of auth's log lines for a job
//! shares the trace id of the gateway's and the workers' lines; and it counts and times every
//! call. Nothing from the request or response bodies (passwords, tokens) is recorded.
//!
//! Metrics, rendered at `/metrics` on `HTTP_ADDR` (labels in brackets):
//! - `grpc_server_requests_total` [method, code]: finished calls by gRPC status (`OK`,
//!   `Unauthenticated`, `ResourceExhausted`, ...; `Cancelled` when the caller went away first).
//!   `method` is `auth.v1.Auth/Login`-style, or `unknown` for a method the server does not have.
//! - `grpc_server_request_duration_seconds` [method]: from the request to the end of the response.
//! - `auth_logins_total` [outcome = success | invalid | rate_limited | error]
//! - `auth_registrations_total` [outcome = success | invalid | taken | error]

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use platform::trace::TraceContext;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Code;
use tower::{Layer, Service};
use tracing::{Instrument, Span};

/// The gRPC metadata key (an HTTP/2 header) carrying the caller's trace context.
pub const TRACEPARENT: &str = "traceparent";

pub const GRPC_REQUESTS: &str = "grpc_server_requests_total";
pub const GRPC_DURATION: &str = "grpc_server_request_duration_seconds";
pub const LOGINS: &str = "auth_logins_total";
pub const REGISTRATIONS: &str = "auth_registrations_total";

const LOGIN_OUTCOMES: [&str; 4] = ["success", "invalid", "rate_limited", "error"];
const REGISTRATION_OUTCOMES: [&str; 4] = ["success", "invalid", "taken", "error"];

/// Longest method name kept in a log field; longer paths are not real methods.
const MAX_LOGGED_METHOD: usize = 128;

/// Installs the process's Prometheus recorder (before anything is recorded, or it would be lost)
/// and describes auth's metrics. The outcome counters start at zero, so a dashboard sees them
/// before the first login.
pub fn install_metrics() {
    platform::metrics::handle();
    metrics::describe_counter!(
        GRPC_REQUESTS,
        "gRPC calls finished, by method and status code"
    );
    metrics::describe_histogram!(
        GRPC_DURATION,
        metrics::Unit::Seconds,
        "time from a gRPC request to the end of its response"
    );
    metrics::describe_counter!(LOGINS, "login attempts, by outcome");
    metrics::describe_counter!(REGISTRATIONS, "registration attempts, by outcome");
    for outcome in LOGIN_OUTCOMES {
        metrics::counter!(LOGINS, "outcome" => outcome).increment(0);
    }
    for outcome in REGISTRATION_OUTCOMES {
        metrics::counter!(REGISTRATIONS, "outcome" => outcome).increment(0);
    }
}

/// Counts one login by its outcome.
pub fn record_login<T>(result: &Result<T, crate::error::AuthError>) {
    use crate::error::AuthError;
    let outcome = match result {
        Ok(_) => "success",
        Err(AuthError::InvalidCredentials | AuthError::InvalidArgument(_)) => "invalid",
        Err(AuthError::TooManyFailedLogins(_)) => "rate_limited",
        Err(_) => "error",
    };
    metrics::counter!(LOGINS, "outcome" => outcome).increment(1);
}

/// Counts one registration by its outcome.
pub fn record_registration<T>(result: &Result<T, crate::error::AuthError>) {
    use crate::error::AuthError;
    let outcome = match result {
        Ok(_) => "success",
        Err(AuthError::InvalidArgument(_)) => "invalid",
        Err(AuthError::EmailTaken) => "taken",
        Err(_) => "error",
    };
    metrics::counter!(REGISTRATIONS, "outcome" => outcome).increment(1);
}

/// Tower layer for the gRPC server: trace span and metrics per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTelemetryLayer;

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for GrpcTelemetry<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
    ResponseBody: Body + Unpin,
{
    type Response = http::Response<TelemetryBody<ResponseBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let trace = TraceContext::continue_or_start(
            request
                .headers()
                .get(TRACEPARENT)
                .and_then(|value| value.to_str().ok()),
        );
        let span = tracing::info_span!(
            "grpc",
            rpc = %truncate(&method, MAX_LOGGED_METHOD),
            trace_id = %trace.trace_id_hex(),
        );
        let mut call = Call {
            method,
            started: Instant::now(),
            span: span.clone(),
            recorded: false,
        };
        // The clone that was not polled ready stays behind for the next call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let future = span.in_scope(|| inner.call(request));
        Box::pin(
            async move {
                let response = match future.await {
                    Ok(response) => response,
                    Err(error) => {
                        call.finish(Code::Unknown);
                        return Err(error);
                    }
                };
                // An error answered before any message is "trailers-only": its status is in the
                // headers. Otherwise the status comes in the trailers, at the end of the body.
                if let Some(status) = response.headers().get("grpc-status") {
                    call.finish(Code::from_bytes(status.as_bytes()));
                }
                Ok(response.map(|inner| TelemetryBody { inner, call }))
            }
            .instrument(span),
        )
    }
}

/// The response body, watched for the trailers that carry the call's final status.
pub struct TelemetryBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for TelemetryBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or(Code::Unknown, |status| Code::from_bytes(status.as_bytes()));
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(Code::Internal),
            // A body that ends without trailers never told the client a status.
            Poll::Ready(None) => this.call.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One call in flight; recorded exactly once, when its status is known or when it is dropped
/// unfinished (the caller went away, or the deadline cut it off).
struct Call {
    method: String,
    started: Instant,
    span: Span,
    recorded: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        // Unknown paths would otherwise mint a time series each.
        let method = if code == Code::Unimplemented {
            "unknown".to_owned()
        } else {
            std::mem::take(&mut self.method)
        };
        let code = code_label(code);
        self.span.in_scope(|| {
            tracing::debug!(
                code = %code,
                elapsed_ms = elapsed.as_secs_f64() * 1000.0,
                "gRPC call finished"
            );
        });
        metrics::histogram!(GRPC_DURATION, "method" => method.clone())
            .record(elapsed.as_secs_f64());
        metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => code).increment(1);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The status as gRPC's own tooling names it (`OK`, `InvalidArgument`, ...).
fn code_label(code: Code) -> String {
    match code {
        Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_labelled_as_grpc_names_them() {
        assert_eq!(code_label(Code::Ok), "OK");
        assert_eq!(code_label(Code::Unauthenticated), "Unauthenticated");
        assert_eq!(code_label(Code::ResourceExhausted), "ResourceExhausted");
        assert_eq!(code_label(Code::from_bytes(b"16")), "Unauthenticated");
    }

    #[test]
    fn long_method_names_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("auth.v1.Auth/Login", 128), "auth.v1.Auth/Login");
        assert_eq!(truncate(&"é".repeat(100), 5), "éé");
    }
}
