//! The gateway's consumer: every job event into the event store, then the job watch (when the
//! job last moved, for the watchdog) and the data lifecycle.

use super::{JobUpdates, Lifecycle};
use crate::observability;
use crate::store::{EventStore, JobWatch};
use async_trait::async_trait;
use contracts::{Envelope, JobEvent};
use platform::bus::{Delivered, EventHandler, Outcome};
use std::sync::Arc;

/// Appends every consumed event to the event store, then runs the data lifecycle.
pub struct EventStoreFeeder {
    pub store: Arc<dyn EventStore>,
    pub updates: JobUpdates,
    pub lifecycle: Arc<Lifecycle>,
    pub watch: Arc<dyn JobWatch>,
}

/// Whether `event` ends its job's conversion (nothing more is expected of the converter).
fn ends_the_job(event: &Envelope) -> bool {
    matches!(
        event.event,
        JobEvent::ConversionSucceeded(_)
            | JobEvent::ConversionFailed(_)
            | JobEvent::JobDeleted(_)
            | JobEvent::JobExpired(_)
    )
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
        let watched = if ends_the_job(event) {
            self.watch.finish(event.job_id).await
        } else {
            self.watch.touch(event.job_id, event.occurred_at).await
        };
        if let Err(e) = watched {
            return Outcome::Retry(format!("stored, but the job watch failed: {e}"));
        }
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
