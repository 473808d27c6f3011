//! Readiness: the database answers. Reported on `/readyz` and through gRPC health
//! (`grpc.health.v1`, service `auth.v1.Auth`; the overall `""` status stays SERVING while the
//! process runs, so a liveness probe does not restart the pod over a database outage).

use crate::store::UserStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often the gRPC health status is refreshed.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// A probe slower than this counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps the gRPC health status of `service_name` in step with the database until `shutdown`,
/// then reports NOT_SERVING for it and for the server as a whole.
pub async fn report_grpc_health(
    reporter: HealthReporter,
    service_name: &'static str,
    users: Arc<dyn UserStore>,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let status = match tokio::time::timeout(PROBE_TIMEOUT, users.ping()).await {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(error)) => {
                tracing::warn!(%error, "database unreachable; reporting NOT_SERVING");
                ServingStatus::NotServing
            }
            Err(_) => {
                tracing::warn!("database probe timed out; reporting NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            reporter.set_service_status(service_name, status).await;
            last = Some(status);
        }
    }
    reporter
        .set_service_status(service_name, ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
