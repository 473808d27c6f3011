//! `/healthz` (the process is alive), `/readyz` (its dependencies answer) and `/metrics`
//! (Prometheus) for every service, on a listener that is never public (the gateway's is its own
//! `ADMIN_ADDR`). `/readyz` names the dependency that is down in plain words; the driver's own
//! error text (hosts, ports, user names) goes to the log, never into an answer.

use async_trait::async_trait;
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A dependency whose reachability decides readiness.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// Short name shown in `/readyz`, e.g. `rabbitmq`.
    fn name(&self) -> &'static str;
    /// `Ok` when the dependency answers.
    async fn check(&self) -> Result<(), String>;
}

/// A readiness check from a name, the dependency and how to ask it, e.g.
/// `probe("event_bus", bus, |bus| async move { bus.check().await })`: the one adapter every seam
/// uses instead of a wrapper type each.
pub fn probe<T, F, Fut, E>(name: &'static str, target: Arc<T>, check: F) -> Arc<dyn ReadinessCheck>
where
    T: ?Sized + Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    Arc::new(Probe {
        name,
        target,
        check,
    })
}

struct Probe<T: ?Sized, F> {
    name: &'static str,
    target: Arc<T>,
    check: F,
}

#[async_trait]
impl<T, F, Fut, E> ReadinessCheck for Probe<T, F>
where
    T: ?Sized + Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    fn name(&self) -> &'static str {
        self.name
    }

    async fn check(&self) -> Result<(), String> {
        (self.check)(self.target.clone())
            .await
            .map_err(|e| e.to_string())
    }
}

/// Per-check deadline so a hung dependency makes `/readyz` fail fast instead of hanging.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// What `/readyz` says of a dependency that answered with an error (the error is logged).
const NOT_ANSWERING: &str = "not reachable or refusing requests (details in the service log)";
/// What `/readyz` says of a dependency that did not answer within [`CHECK_TIMEOUT`].
const TIMED_OUT: &str = "did not answer within 2 seconds";

#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
}

impl Health {
    pub fn new(checks: Vec<Arc<dyn ReadinessCheck>>) -> Self {
        // Every service builds its health endpoints at start-up: install the metrics recorder
        // here so nothing recorded before the first scrape is lost.
        crate::metrics::handle();
        Self {
            checks: Arc::new(checks),
        }
    }

    /// Runs every check concurrently; returns `(all ok, per-check report)`.
    pub async fn readiness(&self) -> (bool, serde_json::Value) {
        let results = futures::future::join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => {
                    tracing::warn!(dependency = check.name(), %error, "readiness check failed");
                    Err(NOT_ANSWERING)
                }
                Err(_) => {
                    tracing::warn!(dependency = check.name(), timeout = ?CHECK_TIMEOUT, "readiness check timed out");
                    Err(TIMED_OUT)
                }
            };
            (check.name(), outcome)
        }))
        .await;
        let ready = results.iter().all(|(_, r)| r.is_ok());
        let report: serde_json::Map<String, serde_json::Value> = results
            .into_iter()
            .map(|(name, outcome)| {
                let value = match outcome {
                    Ok(()) => json!({"status": "ok"}),
                    Err(reason) => json!({"status": "unavailable", "reason": reason}),
                };
                (name.to_owned(), value)
            })
            .collect();
        (ready, serde_json::Value::Object(report))
    }

    /// Router with `/healthz` and `/readyz`, to merge into a service's HTTP router.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        Router::new()
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(|| async { crate::metrics::render() }))
            .with_state(self)
    }
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    let (ready, checks) = health.readiness().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "unavailable" }, "checks": checks});
    (status, Json(body))
}

/// Serves `router` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

/// Serves `router` on `listener` (HTTP/1.1) until `shutdown` fires, like [`serve`], and closes a
/// connection whose request head is not complete `header_read_timeout` after the connection
/// opened or its previous response went out (so an idle kept-alive connection is closed after
/// that long too). `axum::serve` has no such timeout: a client that never finishes its headers
/// held a socket and a task for as long as it liked.
pub async fn serve_with_header_timeout(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let builder = builder.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection closed with an error");
                    }
                    return;
                }
                _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
