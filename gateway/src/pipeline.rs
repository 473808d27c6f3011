//! How the gateway takes part in the event pipeline.
//!
//! - [`EventPublisher`]: an event the gateway produces goes to the outbox, the event store and
//!   (inline, best effort) the bus; the outbox relay covers a failed inline publish.
//! - [`EventStoreFeeder`]: consumes every job event from the gateway's own queue into the event
//!   store, then lets the data [`Lifecycle`] act on outcomes (drop the converted video, drop an
//!   MP3 that arrived after its job was deleted, schedule the job's expiry).
//! - [`JobUpdates`]: wakes live job streams (SSE) when an event of their job was stored here.

use crate::event_store::{EventStore, StoreError};
use crate::observability;
use crate::outbox::Outbox;
use crate::retention::Lifecycle;
use async_trait::async_trait;
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use proto::{Envelope, JobEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

/// Name of the gateway's durable queue.
pub const QUEUE: &str = "gateway";

/// The gateway's subscription: every job event.
pub fn subscription() -> Subscription {
    Subscription::new(QUEUE, &JobEvent::ALL_TYPES).with_prefetch(16)
}

/// Wake-ups for live job streams: the id of each job whose events changed in this process.
#[derive(Clone)]
pub struct JobUpdates {
    sender: broadcast::Sender<Uuid>,
}

impl Default for JobUpdates {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
        }
    }
}

impl JobUpdates {
    pub fn notify(&self, job_id: Uuid) {
        // No receiver is fine: nobody is watching.
        let _ = self.sender.send(job_id);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.sender.subscribe()
    }
}

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

/// Appends every consumed event to the event store, then runs the data lifecycle.
pub struct EventStoreFeeder {
    pub store: Arc<dyn EventStore>,
    pub updates: JobUpdates,
    pub lifecycle: Arc<Lifecycle>,
}

#[async_trait]
impl EventHandler for EventStoreFeeder {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        let event = &delivery.envelope;
        match self.store.append(event).await {
            Ok(fresh) => {
                if fresh {
                    tracing::debug!(event_id = %event.event_id, job_id = %event.job_id, event_type = event.event_type(), "stored event");
                    observability::event_stored(event.event_type());
                    self.updates.notify(event.job_id);
                }
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        }
        // Also on redelivery (`fresh` false): a previous attempt may have failed right here.
        match self.lifecycle.after_stored(event).await {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Retry(format!("stored, but the data lifecycle failed: {e}")),
        }
    }

    async fn exhausted(&self, delivery: &Delivered, last_error: &str) {
        tracing::error!(
            event_id = %delivery.envelope.event_id,
            job_id = %delivery.envelope.job_id,
            error = last_error,
            "could not store an event; it goes to the dead-letter queue"
        );
    }
}
