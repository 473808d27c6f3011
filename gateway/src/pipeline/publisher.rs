//! Publishing the events the gateway produces: outbox first, then store and bus.

use super::JobUpdates;
use crate::observability;
use crate::store::{EventStore, Outbox, StoreError};
use contracts::Envelope;
use platform::bus::EventBus;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a request waits for the broker before leaving the event to the relay.
const INLINE_PUBLISH_DEADLINE: Duration = Duration::from_secs(5);
/// The request's lease on its outbox entry: longer than the inline publish can take.
const INLINE_LEASE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct EventPublisher {
    pub outbox: Arc<dyn Outbox>,
    pub store: Arc<dyn EventStore>,
    pub bus: Arc<dyn EventBus>,
    /// Wakes the outbox relay.
    pub relay_wake: Arc<Notify>,
    pub updates: JobUpdates,
}

/// Whether the event reached the broker now or was left to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Published,
    Deferred,
}

impl EventPublisher {
    /// Durably accepts `event`: once this returns `Ok` the event will reach the bus, now or
    /// when the broker is back. `Err` only when the outbox itself could not be written.
    pub async fn publish(&self, event: &Envelope) -> Result<Delivery, StoreError> {
        self.outbox.add(event, INLINE_LEASE).await?;
        // Status pages should not wait for the round trip through the broker.
        match self.store.append(event).await {
            Ok(fresh) => {
                if fresh {
                    observability::event_stored(event.event_type());
                }
                self.updates.notify(event.job_id);
            }
            Err(e) => {
                tracing::warn!(error = %e, "event not yet in the store; the consumer will add it")
            }
        }
        let published =
            tokio::time::timeout(INLINE_PUBLISH_DEADLINE, self.bus.publish(event)).await;
        match published {
            Ok(Ok(())) => {
                if let Err(e) = self.outbox.mark_published(event.event_id).await {
                    tracing::warn!(event_id = %event.event_id, error = %e, "published but not marked; it may be sent twice");
                }
                Ok(Delivery::Published)
            }
            Ok(Err(e)) => {
                tracing::warn!(event_id = %event.event_id, error = %e, "broker unavailable; the outbox relay will publish");
                self.defer(event).await;
                Ok(Delivery::Deferred)
            }
            Err(_) => {
                tracing::warn!(event_id = %event.event_id, "broker too slow; the outbox relay will publish");
                self.defer(event).await;
                Ok(Delivery::Deferred)
            }
        }
    }

    async fn defer(&self, event: &Envelope) {
        if let Err(e) = self.outbox.release(event.event_id).await {
            tracing::warn!(error = %e, "could not release the outbox entry; the relay takes it when its lease ends");
        }
        self.relay_wake.notify_one();
    }
}
