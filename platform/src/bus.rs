//! The event bus seam: publish job events durably, consume them with at-least-once delivery.
//!
//! [`crate::rabbit::RabbitBus`] implements it on RabbitMQ (topic exchange, a durable queue per
//! service, delayed retry queues, a dead-letter queue, a parking queue per service for events a
//! newer build wrote). Handlers must be idempotent: a delivery can arrive more than once
//! (redelivery after a crash or a broker reconnect, or a re-drive of parked events).
//!
//! A subscription with a delivery limit ([`Subscription::with_delivery_limit`]) survives poison
//! messages: the broker itself counts the deliveries whose consumer died holding them (killed,
//! out of memory, aborted), across restarts and replicas, and past the limit gives the message up;
//! the handler hears of it once ([`EventHandler::abandoned`]) to end the work it stood for.

use async_trait::async_trait;
use contracts::Envelope;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    #[error("event was not confirmed by the broker: {0}")]
    NotConfirmed(String),
}

/// What a consuming service listens to.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Durable queue name, one per consuming service (e.g. `converter`).
    pub queue: String,
    /// Event types (routing keys) bound to the queue.
    pub event_types: Vec<String>,
    /// At most this many unacknowledged deliveries at once.
    pub prefetch: u16,
    /// Delays before redelivery after each transient failure; after the last one the delivery is
    /// dead-lettered. Attempts in all = `retry_delays.len() + 1`.
    pub retry_delays: Vec<Duration>,
    /// When set, the broker gives a message up when more than this many of its deliveries came
    /// back neither acknowledged nor rejected (the consumer died or lost its channel holding it),
    /// and [`EventHandler::abandoned`] is called. On RabbitMQ this makes the queue a quorum queue.
    pub delivery_limit: Option<u32>,
    /// A queue of an earlier build this subscription's queue replaces (changing a queue's type
    /// needs a new name): its messages are moved over and it is deleted once empty and unused.
    pub replaces_queue: Option<String>,
}

impl Subscription {
    pub fn new(queue: impl Into<String>, event_types: &[&str]) -> Self {
        Self {
            queue: queue.into(),
            event_types: event_types.iter().map(|t| t.to_string()).collect(),
            prefetch: 1,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            delivery_limit: None,
            replaces_queue: None,
        }
    }

    /// See [`Subscription::delivery_limit`]; at least 1.
    pub fn with_delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = Some(limit.max(1));
        self
    }

    /// See [`Subscription::replaces_queue`].
    pub fn replacing_queue(mut self, queue: impl Into<String>) -> Self {
        self.replaces_queue = Some(queue.into());
        self
    }

    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    pub fn with_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.retry_delays = delays;
        self
    }

    pub fn max_attempts(&self) -> u32 {
        self.retry_delays.len() as u32 + 1
    }
}

/// One delivered event.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub envelope: Envelope,
    /// 1 on first delivery, incremented by each retry.
    pub attempt: u32,
    /// The broker flagged this as a redelivery (e.g. after a consumer crashed holding it).
    pub redelivered: bool,
}

/// The handler's verdict on a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed (or deliberately ignored): acknowledge.
    Done,
    /// A transient failure: redeliver after the next retry delay, or dead-letter when attempts are
    /// exhausted (after calling [`EventHandler::exhausted`]).
    Retry(String),
    /// Not now, and not a failure: someone else is doing the same work (another replica converting
    /// the same job). Redeliver after the first retry delay with the attempt not counted.
    Defer(String),
}

#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, delivery: &Delivered) -> Outcome;

    /// Called once when a delivery failed its last attempt, before it goes to the dead-letter
    /// queue: the place to publish a failure event.
    async fn exhausted(&self, _delivery: &Delivered, _last_error: &str) {}

    /// Called once when the broker gave a delivery up after `deliveries` deliveries whose consumer
    /// died holding it (see [`Subscription::delivery_limit`]): the place to end the work with a
    /// failure. An `Err` (e.g. the failure event could not be published) has it called again later.
    async fn abandoned(&self, delivery: &Delivered, deliveries: u32) -> Result<(), String> {
        tracing::error!(
            job_id = %delivery.envelope.job_id, deliveries,
            "the broker gave a delivery up: its consumer died holding it every time"
        );
        Ok(())
    }
}

/// The automatic re-drive of a service's dead letters: a message dead-lettered from the
/// service's queue goes back into it once it has waited `cool_down` (the outage that killed it is
/// likely over), at most `max_redrives` times; after that it stays in the dead-letter queue for
/// operators (`<service> dead-letters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRedrive {
    pub cool_down: Duration,
    /// 0 disables the automatic re-drive.
    pub max_redrives: u32,
}

impl AutoRedrive {
    /// Re-drives every `min(cool_down, 1 min)` until `shutdown`; errors are logged and retried at
    /// the next round (the broker may be the thing that is down).
    pub async fn run(self, bus: Arc<dyn EventBus>, queue: String, shutdown: CancellationToken) {
        if self.max_redrives == 0 {
            return;
        }
        let interval = self
            .cool_down
            .min(Duration::from_secs(60))
            .max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            let round = tokio::select! {
                moved = bus.auto_redrive_dead_letters(&queue, self) => moved,
                _ = shutdown.cancelled() => return,
            };
            match round {
                Ok(0) => {}
                Ok(moved) => {
                    metrics::counter!("events_redriven_total", "queue" => queue.clone())
                        .increment(moved);
                    tracing::warn!(%queue, moved, "dead letters re-driven automatically");
                }
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "automatic re-drive failed; retrying next round")
                }
            }
        }
    }
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes and returns once the bus has durably accepted the event.
    async fn publish(&self, event: &Envelope) -> Result<(), BusError>;

    /// Consumes `subscription` until `shutdown` fires, reconnecting by itself. In-flight
    /// deliveries finish before it returns; unacknowledged ones go back to the queue.
    async fn consume(
        &self,
        subscription: Subscription,
        handler: Arc<dyn EventHandler>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError>;

    /// Readiness: `Ok` when the bus is reachable.
    async fn check(&self) -> Result<(), BusError>;

    /// Moves the dead letters that died in `queue` back into it, as `policy` allows (see
    /// [`AutoRedrive`]); returns how many moved. A bus that keeps no dead letters has none.
    async fn auto_redrive_dead_letters(
        &self,
        queue: &str,
        policy: AutoRedrive,
    ) -> Result<u64, BusError> {
        let _ = (queue, policy);
        Ok(0)
    }
}
