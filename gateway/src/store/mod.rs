//! The gateway's persistence seam: the event store (every job event; a job's state is their fold),
//! the transactional outbox (events accepted but maybe not yet published), the retention
//! ledger (finished jobs waiting to expire) and the job watch (when each unfinished job last
//! moved, for the watchdog), each a trait with two adapters:
//!
//! - [`mongo`]: MongoDB (database `JOBS_DATABASE`, collections `events`, `outbox`, `retention`,
//!   `watchdog`),
//!   for deployments with several gateway replicas;
//! - [`local`]: JSON-lines files in one directory, for the all-in-one mode (one process).
//!
//! Stored events are read through [`readable_event`], which upcasts older schema versions (as the
//! bus does) and skips, without failing the job, an event this build cannot read.
//!
//! [`memory::MemoryRetentionLedger`] keeps the ledger in memory (tests, and a gateway without a
//! ledger of its own); [`memory::MemoryJobWatch`] is the job watch of the all-in-one mode (one
//! process; after a restart its replay re-sends unfinished jobs, whose events fill it again). The contract every adapter meets is tested once, against each of them
//! (`gateway/tests/api/store_contract.rs`).

pub mod local;
pub mod memory;
pub mod mongo;

pub use local::{LocalEventStore, LocalOutbox, LocalRetentionLedger};
pub use memory::{MemoryJobWatch, MemoryRetentionLedger};
pub use mongo::{MongoEventStore, MongoJobWatch, MongoOutbox, MongoRetentionLedger};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::events::DecodeError;
use contracts::{Envelope, JobEvent, JobState};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt stored event {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

/// One page of an owner's jobs, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPage {
    pub limit: u32,
    /// Only jobs submitted before this one (job ids are UUIDv7, ordered by creation time).
    pub before: Option<Uuid>,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores `event`; `Ok(false)` when an event with its id was already stored.
    async fn append(&self, event: &Envelope) -> Result<bool, StoreError>;

    /// Every stored event of `job_id`, in `(occurred_at, event_id)` order.
    async fn events_of_job(&self, job_id: Uuid) -> Result<Vec<Envelope>, StoreError>;

    /// The stored events of `job_id` that occurred at or after `since`, in `(occurred_at,
    /// event_id)` order: what a live job stream reads past its cursor instead of the whole
    /// history. (Adapters may return a little more, e.g. the rest of `since`'s millisecond.)
    async fn events_of_job_since(
        &self,
        job_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let mut events = self.events_of_job(job_id).await?;
        events.retain(|event| event.occurred_at >= since);
        Ok(events)
    }

    /// Ids of the jobs `owner_id` submitted, newest first.
    async fn jobs_of_owner(&self, owner_id: &str, page: JobPage) -> Result<Vec<Uuid>, StoreError>;

    /// The events of several jobs at once (for listings).
    async fn events_of_jobs(&self, job_ids: &[Uuid]) -> Result<Vec<Envelope>, StoreError> {
        let mut all = Vec::new();
        for job_id in job_ids {
            all.extend(self.events_of_job(*job_id).await?);
        }
        Ok(all)
    }

    /// Ids of every job with a stored `JobSubmitted`, oldest first: what the all-in-one mode
    /// walks at start-up to finish the jobs its in-process bus forgot in a restart.
    async fn submitted_jobs(&self) -> Result<Vec<Uuid>, StoreError>;

    /// Readies the store once it answers (the MongoDB adapters create their indexes);
    /// idempotent, retried at start-up until it succeeds.
    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Readiness: `Ok` when the store answers.
    async fn check(&self) -> Result<(), StoreError>;

    /// The job's current state, `None` when no event of it is stored.
    async fn job_state(&self, job_id: Uuid) -> Result<Option<JobState>, StoreError> {
        let events = self.events_of_job(job_id).await?;
        Ok(JobState::fold(job_id, &events))
    }
}

/// A stored event as the event store's readers take it: decoded and upcast by
/// [`Envelope::from_json`], or `None` when this build cannot read it, so that one event never
/// hides a whole job. An event a newer build wrote (a newer version of its type, or a type this
/// build does not know: a newer replica in a rolling deploy, or a roll-back) is skipped with a
/// warning; it stays stored and folds again once a build that reads it runs. A malformed one is
/// skipped with an error. Both count in `stored_events_skipped_total{reason}`.
pub fn readable_event(id: &str, decoded: Result<Envelope, DecodeError>) -> Option<Envelope> {
    let error = match decoded {
        Ok(event) => return Some(event),
        Err(error) => error,
    };
    if error.is_from_newer_build() {
        tracing::warn!(event_id = id, %error, "skipping a stored event from a newer build");
    } else {
        tracing::error!(event_id = id, %error, "skipping an unreadable stored event");
    }
    metrics::counter!("stored_events_skipped_total", "reason" => error.kind()).increment(1);
    None
}

/// The owner named by an event, for the owner index (progress events name none).
pub fn owner_of(event: &JobEvent) -> Option<&str> {
    match event {
        JobEvent::JobSubmitted(e) => Some(&e.owner_id),
        JobEvent::ConversionSucceeded(e) => Some(&e.owner_id),
        JobEvent::ConversionFailed(e) => Some(&e.owner_id),
        JobEvent::JobDeleted(e) => Some(&e.owner_id),
        JobEvent::JobExpired(e) => Some(&e.owner_id),
        JobEvent::ConversionStarted(_)
        | JobEvent::ConversionProgress(_)
        | JobEvent::NotificationSent(_)
        | JobEvent::NotificationFailed(_)
        | JobEvent::JobResubmitted(_) => None,
    }
}

/// A job that reached `succeeded` or `failed`.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedJob {
    pub job_id: Uuid,
    pub owner_id: String,
    pub finished_at: DateTime<Utc>,
    pub mp3_file_id: Option<String>,
}

/// A due job, leased to one sweeper.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiryClaim {
    pub job_id: Uuid,
    pub owner_id: String,
    pub mp3_file_id: Option<String>,
    /// Id of the job's `JobExpired` event, fixed when the job finished.
    pub expiry_event_id: Uuid,
}

/// The finished jobs waiting to expire.
#[async_trait]
pub trait RetentionLedger: Send + Sync + 'static {
    /// Readies the store once it answers (the MongoDB adapters create their indexes);
    /// idempotent, retried at start-up until it succeeds.
    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Records a finished job (idempotent: the first record wins, a later one may only add the
    /// MP3 id).
    async fn record_finished(&self, job: &FinishedJob) -> Result<(), StoreError>;

    /// Leases, for `lease`, one job that finished at or before `cutoff`, is not expired yet and
    /// is not leased by another sweeper.
    async fn claim_due(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ExpiryClaim>, StoreError>;

    /// Gives a claimed job back at once (its expiry failed half-way; any sweeper may retry).
    async fn release(&self, job_id: Uuid) -> Result<(), StoreError>;

    /// The job's expiry is complete; it is never claimed again.
    async fn complete(&self, job_id: Uuid) -> Result<(), StoreError>;

    /// The job whose MP3 had this file id (the file itself may be gone).
    async fn job_of_mp3(&self, mp3_file_id: &str) -> Result<Option<Uuid>, StoreError>;
}

/// An unfinished job that has not moved for too long, leased to one watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalledJob {
    pub job_id: Uuid,
}

/// When each unfinished job last moved: what the watchdog looks at to find the jobs nothing
/// happens to any more (a lost or dead-lettered submission, a converter that never answers).
#[async_trait]
pub trait JobWatch: Send + Sync + 'static {
    /// Readies the store once it answers (indexes); idempotent, retried at start-up.
    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The job moved at `at` (an event of it was stored); starts watching it if needed. A
    /// finished job stays finished: a late event never makes it watched again.
    async fn touch(&self, job_id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// The job reached an outcome (or is gone): it is never claimed again.
    async fn finish(&self, job_id: Uuid) -> Result<(), StoreError>;

    /// Leases, for `lease`, one unfinished job that last moved at or before `cutoff` and is not
    /// leased by another watchdog.
    async fn claim_stalled(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<StalledJob>, StoreError>;

    /// Gives a claimed job back at once.
    async fn release(&self, job_id: Uuid) -> Result<(), StoreError>;
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Readies the store once it answers (the MongoDB adapters create their indexes);
    /// idempotent, retried at start-up until it succeeds.
    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Records `event` as pending, leased to the caller for `lease` (the relay leaves it alone
    /// meanwhile). Adding the same event twice is a no-op.
    async fn add(&self, event: &Envelope, lease: Duration) -> Result<(), StoreError>;

    /// The event reached the broker.
    async fn mark_published(&self, event_id: Uuid) -> Result<(), StoreError>;

    /// Ends the caller's lease at once: the relay should publish the event.
    async fn release(&self, event_id: Uuid) -> Result<(), StoreError>;

    /// Leases the oldest pending event whose lease has expired, for `lease`.
    async fn claim_next(&self, lease: Duration) -> Result<Option<Envelope>, StoreError>;

    /// How many events still wait for publication.
    async fn pending(&self) -> Result<u64, StoreError>;
}

/// The time `offset` from now (saturating: a huge lease never overflows).
pub(crate) fn later(offset: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(offset)
        .ok()
        .and_then(|offset| Utc::now().checked_add_signed(offset))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
