//! The outbox relay: publishes the events whose inline publish failed, once the broker is back.
//!
//! The request that produced an event holds a short lease on its outbox entry while it publishes
//! it inline; when that fails it releases the entry and the relay publishes it. Leases keep the
//! relay (and other gateway replicas) from publishing an entry that is being published by someone
//! else, so each event goes out once (consumers dedupe on event id anyway, which covers a crash
//! between publishing and marking).

use crate::store::Outbox;
use backon::BackoffBuilder;
use platform::bus::EventBus;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long the relay holds an entry while publishing it: longer than a publish can take
/// (connect 5 s + confirm 10 s, twice), so no other relay publishes it meanwhile.
pub const RELAY_LEASE: Duration = Duration::from_secs(60);

/// Publishes pending outbox entries until `shutdown` fires. Wakes on `wake` (an inline publish
/// failed) or every `poll_interval`; backs off exponentially while the broker stays down.
pub async fn relay(
    outbox: Arc<dyn Outbox>,
    bus: Arc<dyn EventBus>,
    wake: Arc<Notify>,
    poll_interval: Duration,
    shutdown: CancellationToken,
) {
    let new_backoff = || {
        platform::retry::reconnect()
            .with_max_delay(Duration::from_secs(5))
            .build()
    };
    let mut backoff = new_backoff();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        // Claiming only takes a lease, so abandoning it on shutdown loses nothing.
        let claimed = tokio::select! {
            claimed = outbox.claim_next(RELAY_LEASE) => claimed,
            _ = shutdown.cancelled() => return,
        };
        let pause = match claimed {
            Ok(Some(event)) => {
                let published = tokio::select! {
                    result = bus.publish(&event) => result,
                    _ = shutdown.cancelled() => {
                        let _ = outbox.release(event.event_id).await;
                        return;
                    }
                };
                match published {
                    Ok(()) => {
                        backoff = new_backoff();
                        if let Err(e) = outbox.mark_published(event.event_id).await {
                            // The lease will expire and the event go out again: consumers dedupe.
                            tracing::warn!(event_id = %event.event_id, error = %e, "published but not marked");
                        }
                        tracing::info!(event_id = %event.event_id, job_id = %event.job_id, event_type = event.event_type(), "relayed an outbox event");
                        continue;
                    }
                    Err(e) => {
                        if let Err(release) = outbox.release(event.event_id).await {
                            tracing::warn!(error = %release, "could not release an outbox entry; its lease will expire");
                        }
                        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                        tracing::warn!(error = %e, ?delay, "outbox relay cannot publish; retrying");
                        delay
                    }
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(poll_interval) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            Err(e) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, ?delay, "outbox unreadable; retrying");
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
