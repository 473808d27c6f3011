//! In-process implementation of the [`EventBus`] seam, for the all-in-one mode.
//!
//! Same semantics as the RabbitMQ bus within one process: topic routing (`*` one word, `#` any),
//! a queue per subscription that buffers events until its consumer attaches, delayed retries and a
//! dead-letter list. It keeps nothing across restarts: the all-in-one mode replays unfinished jobs
//! from its event store at start-up instead.
//!
//! It has no parking queue because it never decodes: it carries typed envelopes between the
//! components of one process, one build, so no event can be newer than its consumer. (What an
//! older or newer build left in the all-in-one mode's event store is handled by the store.)

use crate::bus::{BusError, Delivered, EventBus, EventHandler, Outcome, Subscription};
use async_trait::async_trait;
use contracts::Envelope;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One delivery waiting in a queue.
struct Message {
    envelope: Envelope,
    attempt: u32,
}

struct Queue {
    patterns: Vec<String>,
    sender: mpsc::UnboundedSender<Message>,
    /// Taken by the consumer when it attaches.
    receiver: Option<mpsc::UnboundedReceiver<Message>>,
}

#[derive(Default)]
pub struct InProcessBus {
    queues: Mutex<HashMap<String, Queue>>,
    dead_letters: Arc<Mutex<Vec<Envelope>>>,
}

/// AMQP topic matching: words split on `.`, `*` matches one word, `#` zero or more.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn matches(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.first(), key.first()) {
            (None, None) => true,
            (Some(&"#"), _) => {
                matches(&pattern[1..], key) || (!key.is_empty() && matches(pattern, &key[1..]))
            }
            (Some(&"*"), Some(_)) => matches(&pattern[1..], &key[1..]),
            (Some(p), Some(k)) if p == k => matches(&pattern[1..], &key[1..]),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    matches(&pattern, &key)
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates the subscription's queue so events published before its consumer starts wait in it.
    pub fn declare(&self, subscription: &Subscription) {
        let mut queues = self.queues.lock().expect("not poisoned");
        let queue = queues.entry(subscription.queue.clone()).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            Queue {
                patterns: Vec::new(),
                sender,
                receiver: Some(receiver),
            }
        });
        for pattern in &subscription.event_types {
            if !queue.patterns.contains(pattern) {
                queue.patterns.push(pattern.clone());
            }
        }
    }

    /// Events that exhausted their retries or could not be handled.
    pub fn dead_letters(&self) -> Vec<Envelope> {
        self.dead_letters.lock().expect("not poisoned").clone()
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: &Envelope) -> Result<(), BusError> {
        metrics::counter!("events_published_total", "event_type" => event.event_type(), "outcome" => "ok").increment(1);
        let queues = self.queues.lock().expect("not poisoned");
        for queue in queues.values() {
            if queue
                .patterns
                .iter()
                .any(|p| topic_matches(p, event.event_type()))
            {
                // A closed receiver means its consumer has stopped for good (shutdown).
                let _ = queue.sender.send(Message {
                    envelope: event.clone(),
                    attempt: 1,
                });
            }
        }
        Ok(())
    }

    async fn consume(
        &self,
        subscription: Subscription,
        handler: Arc<dyn EventHandler>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        self.declare(&subscription);
        let (mut receiver, sender) = {
            let mut queues = self.queues.lock().expect("not poisoned");
            let queue = queues.get_mut(&subscription.queue).expect("declared above");
            let receiver = queue.receiver.take().ok_or_else(|| {
                BusError::Unavailable(format!(
                    "queue {} already has a consumer in this process",
                    subscription.queue
                ))
            })?;
            (receiver, queue.sender.clone())
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(
            subscription.prefetch.max(1) as usize
        ));
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("never closed"),
                _ = shutdown.cancelled() => break,
            };
            let message = tokio::select! {
                message = receiver.recv() => match message {
                    Some(message) => message,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let handler = handler.clone();
            let sender = sender.clone();
            let delays = subscription.retry_delays.clone();
            let dead_letters = self.dead_letters.clone();
            let queue_name = subscription.queue.clone();
            in_flight.spawn(async move {
                let delivered = Delivered {
                    envelope: message.envelope,
                    attempt: message.attempt,
                    redelivered: message.attempt > 1,
                };
                let span = crate::trace::event_span(&delivered.envelope, &queue_name);
                let outcome = handler.handle(&delivered).instrument(span).await;
                let label = match outcome {
                    Outcome::Done => "done",
                    Outcome::Retry(_) => "retry",
                    Outcome::Defer(_) => "deferred",
                };
                metrics::counter!("events_consumed_total", "queue" => queue_name.clone(), "event_type" => delivered.envelope.event_type(), "outcome" => label).increment(1);
                drop(permit);
                if let Outcome::Defer(reason) = &outcome {
                    // Someone else does the same work: back after the first delay, not counted.
                    let delay = delays.first().copied().unwrap_or(std::time::Duration::from_secs(1));
                    tracing::info!(job_id = %delivered.envelope.job_id, ?delay, %reason, "deferred");
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = sender.send(Message {
                            envelope: delivered.envelope,
                            attempt: delivered.attempt,
                        });
                    });
                } else if let Outcome::Retry(reason) = outcome {
                    match delays.get(delivered.attempt as usize - 1).copied() {
                        Some(delay) => {
                            tracing::warn!(job_id = %delivered.envelope.job_id, attempt = delivered.attempt, ?delay, %reason, "transient failure; retry scheduled");
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = sender.send(Message {
                                    envelope: delivered.envelope,
                                    attempt: delivered.attempt + 1,
                                });
                            });
                        }
                        None => {
                            tracing::error!(job_id = %delivered.envelope.job_id, %reason, "retries exhausted; dead-lettering");
                            handler.exhausted(&delivered, &reason).await;
                            metrics::counter!("events_dead_lettered_total", "queue" => queue_name).increment(1);
                            dead_letters.lock().expect("not poisoned").push(delivered.envelope);
                        }
                    }
                }
            });
            // Reap finished deliveries so the set stays small.
            while in_flight.try_join_next().is_some() {}
        }
        while in_flight.join_next().await.is_some() {}
        // Put the receiver back so a later consumer (after a restart of the component) resumes.
        if let Some(queue) = self
            .queues
            .lock()
            .expect("not poisoned")
            .get_mut(&subscription.queue)
        {
            queue.receiver = Some(receiver);
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::events::{ConversionProgress, JobEvent};
    use std::time::Duration;

    #[test]
    fn topics_match_like_rabbitmq() {
        assert!(topic_matches("conversion.*", "conversion.succeeded"));
        assert!(!topic_matches("conversion.*", "job.submitted"));
        assert!(topic_matches("#", "job.submitted"));
        assert!(topic_matches("job.#", "job.submitted"));
        assert!(topic_matches("job.submitted", "job.submitted"));
        assert!(!topic_matches("job.submitted", "job.deleted"));
        assert!(!topic_matches("*", "job.deleted"));
    }

    struct FailTwice(Mutex<Vec<u32>>);

    #[async_trait]
    impl EventHandler for FailTwice {
        async fn handle(&self, delivery: &Delivered) -> Outcome {
            self.0.lock().unwrap().push(delivery.attempt);
            if delivery.attempt < 3 {
                Outcome::Retry("not yet".into())
            } else {
                Outcome::Done
            }
        }
    }

    #[tokio::test]
    async fn events_wait_for_their_consumer_and_are_retried_after_a_delay() {
        let bus = Arc::new(InProcessBus::new());
        let subscription = Subscription::new("svc", &["conversion.*"])
            .with_retry_delays(vec![Duration::from_millis(10), Duration::from_millis(10)]);
        bus.declare(&subscription);
        let event = Envelope::new(
            uuid::Uuid::now_v7(),
            "test",
            JobEvent::ConversionProgress(ConversionProgress { percent: 1 }),
        );
        bus.publish(&event).await.unwrap();
        let handler = Arc::new(FailTwice(Mutex::default()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (bus, handler, shutdown) = (bus.clone(), handler.clone(), shutdown.clone());
            async move { bus.consume(subscription, handler, shutdown).await }
        });
        for _ in 0..100 {
            if handler.0.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(*handler.0.lock().unwrap(), vec![1, 2, 3]);
        assert!(bus.dead_letters().is_empty());
    }
}
