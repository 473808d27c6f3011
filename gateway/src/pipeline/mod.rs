//! How the gateway takes part in the event pipeline, and what it does with a job's data over time.
//!
//! - [`EventPublisher`]: an event the gateway produces goes to the outbox, the event store and
//!   (inline, best effort) the bus; the outbox [`relay`] covers a failed inline publish.
//! - [`EventStoreFeeder`]: consumes every job event from the gateway's own queue into the event
//!   store, then lets the data [`Lifecycle`] act on outcomes (drop the converted video, drop an
//!   MP3 that arrived after its job was deleted, schedule the job's expiry).
//! - [`JobUpdates`]: wakes live job streams (SSE) when an event of their job was stored here.
//! - [`Sweeper`]: expires finished jobs `RETENTION` after they finished; [`FileJanitor`] deletes
//!   a job's files for both.
//! - [`OrphanSweeper`]: deletes files no job accounts for (`ORPHAN_GRACE` after their upload).
//! - [`Watchdog`]: a job that made no progress for `JOB_STALL_TIMEOUT` is submitted again, a
//!   bounded number of times, then failed with a reason.
//!
//! Dependencies point one way: routes and startup use the pipeline, the pipeline uses the
//! [`crate::store`] seam, and the store knows nothing of either.

mod feeder;
mod janitor;
mod lifecycle;
mod orphans;
mod publisher;
mod relay;
mod sweeper;
mod watchdog;

pub use feeder::EventStoreFeeder;
pub use janitor::{DeleteReason, FileJanitor};
pub use lifecycle::Lifecycle;
pub use orphans::OrphanSweeper;
pub use publisher::{Delivery, EventPublisher};
pub use relay::{RELAY_LEASE, relay};
pub use sweeper::{CLAIM_LEASE, Sweeper, describe, expires_at};
pub use watchdog::{Verdict, Watchdog};

use platform::bus::Subscription;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Name of the gateway's durable queue: a quorum queue, which counts the deliveries whose
/// consumer died holding them.
pub const QUEUE: &str = "gateway.quorum";
/// The classic queue of earlier builds that [`QUEUE`] replaces (a queue's type cannot change).
pub const REPLACED_QUEUE: &str = "gateway";

/// The gateway's subscription: every job event. Bound to every routing key rather than to this
/// build's list of types, so an event type a newer build adds reaches this queue too (where the
/// bus parks it for re-drive) instead of being routed nowhere during a rolling deploy.
///
/// Its retries span hours, not the default minutes: this consumer writes the event store, the
/// system of record, and what fails here is the store itself (MongoDB away), not the event. An
/// outage of a few hours delays job states; only a longer one dead-letters events, and `gateway
/// dead-letters redrive` puts them back.
///
/// An event the gateway dies on more than `delivery_limit` times is given up by the broker and
/// stays in the dead-letter queue for operators; its job, left without progress, is failed by the
/// watchdog.
pub fn subscription(delivery_limit: u32) -> Subscription {
    Subscription::new(QUEUE, &["#"])
        .with_prefetch(16)
        .with_retry_delays(STORE_OUTAGE_RETRY_DELAYS.to_vec())
        .with_delivery_limit(delivery_limit)
        .replacing_queue(REPLACED_QUEUE)
}

/// Runs `round` every `interval` until `shutdown` (which also cuts a round short) and hands each
/// result to `report`: the loop of the retention sweeper, the orphan sweeper and the watchdog.
pub(crate) async fn every<T, Round>(
    interval: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
    mut round: impl FnMut() -> Round,
    report: impl Fn(T),
) where
    Round: std::future::Future<Output = T>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            result = round() => report(result),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// 1 s, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h: about 3 h 43 min in all.
const STORE_OUTAGE_RETRY_DELAYS: [Duration; 8] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(7200),
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_wait_out_hours_of_store_trouble_before_they_are_dead_lettered() {
        let waited: Duration = subscription(5).retry_delays.iter().sum();
        assert!(waited >= Duration::from_secs(3 * 3600), "{waited:?}");
    }
}
