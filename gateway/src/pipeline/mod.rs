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
//!
//! Dependencies point one way: routes and startup use the pipeline, the pipeline uses the
//! [`crate::store`] seam, and the store knows nothing of either.

mod feeder;
mod janitor;
mod lifecycle;
mod publisher;
mod relay;
mod sweeper;

pub use feeder::EventStoreFeeder;
pub use janitor::{DeleteReason, FileJanitor};
pub use lifecycle::Lifecycle;
pub use publisher::{Delivery, EventPublisher};
pub use relay::{RELAY_LEASE, relay};
pub use sweeper::{CLAIM_LEASE, Sweeper, describe, expires_at};

use platform::bus::Subscription;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Name of the gateway's durable queue.
pub const QUEUE: &str = "gateway";

/// The gateway's subscription: every job event. Bound to every routing key rather than to this
/// build's list of types, so an event type a newer build adds reaches this queue too (where the
/// bus parks it for re-drive) instead of being routed nowhere during a rolling deploy.
pub fn subscription() -> Subscription {
    Subscription::new(QUEUE, &["#"]).with_prefetch(16)
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
