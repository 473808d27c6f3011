//! [`PublishOnce`]: the in-process bus, publishing each event id at most once per run.
//!
//! After a restart two parts may announce the same event: the outbox relay (an upload accepted
//! just before a crash) and the start-up replay (every unfinished job). Consumers deduplicate
//! by event id, but the converter would convert twice if both deliveries ran at the same time.
//! Within one process the in-process bus delivers every publish (its queues retry internally),
//! so a second publish of an id adds nothing and is dropped here.

use async_trait::async_trait;
use contracts::Envelope;
use platform::bus::{BusError, EventBus, EventHandler, Subscription};
use platform::local_bus::InProcessBus;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct PublishOnce {
    inner: Arc<InProcessBus>,
    published: Mutex<HashSet<Uuid>>,
}

impl PublishOnce {
    pub fn new(inner: Arc<InProcessBus>) -> Self {
        Self {
            inner,
            published: Mutex::new(HashSet::new()),
        }
    }
}

#[async_trait]
impl EventBus for PublishOnce {
    async fn publish(&self, event: &Envelope) -> Result<(), BusError> {
        let fresh = self
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(event.event_id);
        if !fresh {
            tracing::debug!(event_id = %event.event_id, event_type = event.event_type(), "already published in this run; not again");
            return Ok(());
        }
        self.inner.publish(event).await
    }

    async fn consume(
        &self,
        subscription: Subscription,
        handler: Arc<dyn EventHandler>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        self.inner.consume(subscription, handler, shutdown).await
    }

    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::JobEvent;
    use contracts::events::ConversionStarted;
    use platform::bus::{Delivered, Outcome};
    use std::time::Duration;

    struct Count(Mutex<Vec<Uuid>>);

    #[async_trait]
    impl EventHandler for Count {
        async fn handle(&self, delivery: &Delivered) -> Outcome {
            self.0.lock().unwrap().push(delivery.envelope.event_id);
            Outcome::Done
        }
    }

    #[tokio::test]
    async fn a_second_publish_of_an_event_id_is_not_delivered() {
        let inner = Arc::new(InProcessBus::new());
        let subscription = Subscription::new("q", &["conversion.started"]);
        inner.declare(&subscription);
        let bus = PublishOnce::new(inner);
        let event = Envelope::new(
            Uuid::now_v7(),
            "test",
            JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
        );
        let other = Envelope::new(
            event.job_id,
            "test",
            JobEvent::ConversionStarted(ConversionStarted { attempt: 2 }),
        );
        for published in [&event, &event, &other] {
            bus.publish(published).await.unwrap();
        }
        let handler = Arc::new(Count(Mutex::default()));
        let shutdown = CancellationToken::new();
        let consumer = {
            let (handler, shutdown) = (handler.clone(), shutdown.clone());
            let bus = Arc::new(bus);
            tokio::spawn(async move { bus.consume(subscription, handler, shutdown).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        shutdown.cancel();
        consumer.await.unwrap().unwrap();
        assert_eq!(*handler.0.lock().unwrap(), [event.event_id, other.event_id]);
    }
}
