//! Data lifecycle: what is kept, and for how long.
//!
//! - The source video goes once its MP3 exists (unless `KEEP_VIDEOS`): the event-store consumer
//!   deletes it when it stores `conversion.succeeded` ([`Lifecycle`]).
//! - A conversion that finishes after its job was deleted (or expired) must not leave its MP3
//!   behind: the same consumer deletes it ([`Lifecycle`]).
//! - A finished job expires `RETENTION` after it finished: the [`Sweeper`] deletes its files and
//!   records `JobExpired` (through the outbox, so it is never lost). The job's events stay, so its
//!   status reads `expired` and a download answers 410 Gone.
//!
//! Several gateway replicas may sweep at once: a job's expiry is claimed in the
//! [`RetentionLedger`] with a conditional update (a lease), deletes are idempotent, and the
//! `JobExpired` event id is fixed when the job finishes, so even a sweeper that crashed half-way
//! and was taken over publishes the same event (deduplicated by id everywhere).

use crate::event_store::{EventStore, StoreError};
use crate::pipeline::EventPublisher;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};
use platform::blob::{BlobError, BlobStore, Bucket};
use platform::trace::TraceContext;
use proto::events::JobExpired;
use proto::{Envelope, JobEvent, JobState, JobStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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

const PENDING: &str = "pending";
const DONE: &str = "done";

fn bson_time(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

fn later(offset: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(offset)
        .ok()
        .and_then(|offset| Utc::now().checked_add_signed(offset))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The ledger in MongoDB: collection `retention` beside the event store, one document per
/// finished job (`_id` = job id).
#[derive(Clone)]
pub struct MongoRetentionLedger {
    jobs: Collection<Document>,
}

impl MongoRetentionLedger {
    pub fn new(client: &mongodb::Client, database: &str) -> Self {
        Self {
            jobs: client.database(database).collection("retention"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.jobs
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! {"state": 1, "finished_at": 1})
                    .options(IndexOptions::builder().name("due".to_owned()).build())
                    .build(),
                IndexModel::builder()
                    .keys(doc! {"mp3_file_id": 1})
                    .options(IndexOptions::builder().name("by_mp3".to_owned()).build())
                    .build(),
            ])
            .await?;
        Ok(())
    }

    fn claim_of(document: &Document) -> Result<ExpiryClaim, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: document.get_str("_id").unwrap_or("?").to_owned(),
            reason,
        };
        let uuid = |key: &str| {
            document
                .get_str(key)
                .map_err(|e| corrupt(e.to_string()))
                .and_then(|raw| Uuid::parse_str(raw).map_err(|e| corrupt(e.to_string())))
        };
        Ok(ExpiryClaim {
            job_id: uuid("_id")?,
            owner_id: document.get_str("owner_id").unwrap_or_default().to_owned(),
            mp3_file_id: document.get_str("mp3_file_id").ok().map(str::to_owned),
            expiry_event_id: uuid("expiry_event_id")?,
        })
    }
}

#[async_trait]
impl RetentionLedger for MongoRetentionLedger {
    async fn record_finished(&self, job: &FinishedJob) -> Result<(), StoreError> {
        let document = doc! {
            "_id": job.job_id.to_string(),
            "owner_id": &job.owner_id,
            "finished_at": bson_time(job.finished_at),
            "mp3_file_id": job.mp3_file_id.as_deref(),
            "expiry_event_id": Uuid::now_v7().to_string(),
            "state": PENDING,
            "claimed_until": bson::DateTime::from_millis(0),
            "claims": 0_i32,
        };
        match self.jobs.insert_one(document).await {
            Ok(_) => Ok(()),
            Err(e) if crate::event_store::is_duplicate_key(&e) => {
                if let Some(mp3) = &job.mp3_file_id {
                    self.jobs
                        .update_one(
                            doc! {"_id": job.job_id.to_string(), "mp3_file_id": null},
                            doc! {"$set": {"mp3_file_id": mp3}},
                        )
                        .await?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn claim_due(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ExpiryClaim>, StoreError> {
        // The conditional update is the claim: of several sweepers, one matches.
        let claimed = self
            .jobs
            .find_one_and_update(
                doc! {
                    "state": PENDING,
                    "finished_at": {"$lte": bson_time(cutoff)},
                    "claimed_until": {"$lte": bson_time(Utc::now())},
                },
                doc! {"$set": {"claimed_until": bson_time(later(lease))}, "$inc": {"claims": 1}},
            )
            .sort(doc! {"finished_at": 1})
            .return_document(ReturnDocument::After)
            .await?;
        claimed.as_ref().map(Self::claim_of).transpose()
    }

    async fn release(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.jobs
            .update_one(
                doc! {"_id": job_id.to_string(), "state": PENDING},
                doc! {"$set": {"claimed_until": bson::DateTime::from_millis(0)}},
            )
            .await?;
        Ok(())
    }

    async fn complete(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.jobs
            .update_one(
                doc! {"_id": job_id.to_string()},
                doc! {"$set": {"state": DONE, "done_at": bson_time(Utc::now())}},
            )
            .await?;
        Ok(())
    }

    async fn job_of_mp3(&self, mp3_file_id: &str) -> Result<Option<Uuid>, StoreError> {
        let found = self
            .jobs
            .find_one(doc! {"mp3_file_id": mp3_file_id})
            .projection(doc! {"_id": 1})
            .await?;
        Ok(found
            .as_ref()
            .and_then(|d| d.get_str("_id").ok())
            .and_then(|id| Uuid::parse_str(id).ok()))
    }
}

/// The ledger in memory, for a single-process mode without MongoDB (and for tests): it forgets
/// everything on restart, so jobs finished before a restart never expire.
#[derive(Default)]
pub struct MemoryRetentionLedger {
    jobs: Mutex<HashMap<Uuid, MemoryEntry>>,
}

struct MemoryEntry {
    job: FinishedJob,
    expiry_event_id: Uuid,
    claimed_until: DateTime<Utc>,
    done: bool,
}

#[async_trait]
impl RetentionLedger for MemoryRetentionLedger {
    async fn record_finished(&self, job: &FinishedJob) -> Result<(), StoreError> {
        let mut jobs = self.jobs.lock().expect("not poisoned");
        let entry = jobs.entry(job.job_id).or_insert_with(|| MemoryEntry {
            job: job.clone(),
            expiry_event_id: Uuid::now_v7(),
            claimed_until: DateTime::<Utc>::MIN_UTC,
            done: false,
        });
        if entry.job.mp3_file_id.is_none() {
            entry.job.mp3_file_id.clone_from(&job.mp3_file_id);
        }
        Ok(())
    }

    async fn claim_due(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ExpiryClaim>, StoreError> {
        let now = Utc::now();
        let mut jobs = self.jobs.lock().expect("not poisoned");
        let due = jobs
            .values_mut()
            .filter(|e| !e.done && e.job.finished_at <= cutoff && e.claimed_until <= now)
            .min_by_key(|e| e.job.finished_at);
        Ok(due.map(|entry| {
            entry.claimed_until = later(lease);
            ExpiryClaim {
                job_id: entry.job.job_id,
                owner_id: entry.job.owner_id.clone(),
                mp3_file_id: entry.job.mp3_file_id.clone(),
                expiry_event_id: entry.expiry_event_id,
            }
        }))
    }

    async fn release(&self, job_id: Uuid) -> Result<(), StoreError> {
        if let Some(entry) = self.jobs.lock().expect("not poisoned").get_mut(&job_id) {
            entry.claimed_until = DateTime::<Utc>::MIN_UTC;
        }
        Ok(())
    }

    async fn complete(&self, job_id: Uuid) -> Result<(), StoreError> {
        if let Some(entry) = self.jobs.lock().expect("not poisoned").get_mut(&job_id) {
            entry.done = true;
        }
        Ok(())
    }

    async fn job_of_mp3(&self, mp3_file_id: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .jobs
            .lock()
            .expect("not poisoned")
            .values()
            .find(|e| e.job.mp3_file_id.as_deref() == Some(mp3_file_id))
            .map(|e| e.job.job_id))
    }
}

/// Why files are deleted (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The MP3 exists; the source is no longer needed.
    Converted,
    /// The owner deleted the job.
    Deleted,
    /// The job outlived `RETENTION`.
    Expired,
    /// A conversion finished after its job was deleted or expired.
    Orphaned,
}

impl DeleteReason {
    fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Converted => "converted",
            DeleteReason::Deleted => "deleted",
            DeleteReason::Expired => "expired",
            DeleteReason::Orphaned => "orphaned",
        }
    }
}

/// At most this many files of one job are looked up by metadata (normally one or two).
const MAX_FILES_PER_JOB: usize = 16;

/// Deletes a job's files, idempotently: the ids it knows and any file whose metadata names the
/// job (one stored while its event was still on the way). The blob store removes chunks with
/// their file.
#[derive(Clone)]
pub struct FileJanitor {
    blobs: Arc<dyn BlobStore>,
}

impl FileJanitor {
    pub fn new(blobs: Arc<dyn BlobStore>) -> Self {
        Self { blobs }
    }

    /// Deletes every video of the job; returns how many files were removed.
    pub async fn delete_videos(
        &self,
        job_id: Uuid,
        known: &[Option<&str>],
        reason: DeleteReason,
    ) -> Result<u32, BlobError> {
        self.delete_all(Bucket::Videos, job_id, known, reason).await
    }

    /// Deletes every MP3 of the job; returns how many files were removed.
    pub async fn delete_mp3s(
        &self,
        job_id: Uuid,
        known: &[Option<&str>],
        reason: DeleteReason,
    ) -> Result<u32, BlobError> {
        self.delete_all(Bucket::Mp3s, job_id, known, reason).await
    }

    async fn delete_one(
        &self,
        bucket: Bucket,
        file_id: &str,
        reason: DeleteReason,
    ) -> Result<bool, BlobError> {
        match self.blobs.delete(bucket, file_id).await {
            Ok(true) => {
                metrics::counter!(
                    "retention_files_deleted_total",
                    "bucket" => bucket.database(),
                    "reason" => reason.as_str()
                )
                .increment(1);
                Ok(true)
            }
            Ok(false) | Err(BlobError::NotFound) | Err(BlobError::InvalidId(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete_all(
        &self,
        bucket: Bucket,
        job_id: Uuid,
        known: &[Option<&str>],
        reason: DeleteReason,
    ) -> Result<u32, BlobError> {
        let mut removed = 0;
        for file_id in known.iter().flatten() {
            removed += u32::from(self.delete_one(bucket, file_id, reason).await?);
        }
        let job = job_id.to_string();
        let mut last = None;
        for _ in 0..MAX_FILES_PER_JOB {
            let Some(file) = self.blobs.find_by_metadata(bucket, "job_id", &job).await? else {
                break;
            };
            if last.as_ref() == Some(&file.id) {
                // Deleting it did not make it disappear: do not spin.
                return Err(BlobError::Unavailable(format!(
                    "file {} of job {job} survives deletion",
                    file.id
                )));
            }
            removed += u32::from(self.delete_one(bucket, &file.id, reason).await?);
            last = Some(file.id);
        }
        if removed > 0 {
            tracing::info!(%job_id, bucket = bucket.database(), removed, reason = reason.as_str(), "deleted job files");
        }
        Ok(removed)
    }
}

/// What happens to a job's files when its outcome is stored (see the module doc).
pub struct Lifecycle {
    pub store: Arc<dyn EventStore>,
    pub ledger: Arc<dyn RetentionLedger>,
    pub janitor: FileJanitor,
    pub keep_videos: bool,
}

impl Lifecycle {
    /// Runs after `event` was stored (also on redelivery: every step is idempotent).
    pub async fn after_stored(&self, event: &Envelope) -> Result<(), String> {
        let (owner_id, mp3_file_id) = match &event.event {
            JobEvent::ConversionSucceeded(e) => (&e.owner_id, Some(e.mp3_file_id.as_str())),
            JobEvent::ConversionFailed(e) => (&e.owner_id, None),
            _ => return Ok(()),
        };
        let job_id = event.job_id;
        let job = self
            .store
            .job_state(job_id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| JobState::empty(job_id));
        let blob_error = |e: BlobError| e.to_string();
        if matches!(job.status, JobStatus::Deleted | JobStatus::Expired) {
            // The conversion ended after the job was deleted or expired: nothing of it may stay.
            self.janitor
                .delete_mp3s(
                    job_id,
                    &[mp3_file_id, job.mp3_file_id.as_deref()],
                    DeleteReason::Orphaned,
                )
                .await
                .map_err(blob_error)?;
            self.janitor
                .delete_videos(
                    job_id,
                    &[job.video_file_id.as_deref()],
                    DeleteReason::Orphaned,
                )
                .await
                .map_err(blob_error)?;
            return Ok(());
        }
        self.ledger
            .record_finished(&FinishedJob {
                job_id,
                owner_id: owner_id.clone(),
                finished_at: job.finished_at.unwrap_or(event.occurred_at),
                mp3_file_id: mp3_file_id.map(str::to_owned),
            })
            .await
            .map_err(|e| e.to_string())?;
        if mp3_file_id.is_some() && !self.keep_videos {
            self.janitor
                .delete_videos(
                    job_id,
                    &[job.video_file_id.as_deref()],
                    DeleteReason::Converted,
                )
                .await
                .map_err(blob_error)?;
        }
        Ok(())
    }
}

/// When a job finished `at` expires.
pub fn expires_at(finished_at: DateTime<Utc>, retention: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|retention| finished_at.checked_add_signed(retention))
}

/// `RETENTION` for people: "7 days", "36 hours", "2 seconds".
pub fn describe(retention: Duration) -> String {
    let seconds = retention.as_secs();
    let (amount, unit) = match seconds {
        0 => return format!("{} ms", retention.as_millis()),
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{amount} {unit}{}", if amount == 1 { "" } else { "s" })
}

/// How long a sweeper holds a claimed job: far longer than deleting its files and publishing
/// one event take, so no other replica takes it over while it works.
pub const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// Most jobs expired in one sweep; the next sweep continues.
const MAX_PER_SWEEP: usize = 500;

/// Expires jobs `retention` after they finished.
pub struct Sweeper {
    pub ledger: Arc<dyn RetentionLedger>,
    pub store: Arc<dyn EventStore>,
    pub janitor: FileJanitor,
    pub publisher: EventPublisher,
    pub retention: Duration,
}

impl Sweeper {
    /// Expires every due job; returns how many `JobExpired` events it recorded.
    pub async fn sweep_once(&self) -> anyhow::Result<usize> {
        let cutoff = chrono::Duration::from_std(self.retention)
            .ok()
            .and_then(|retention| Utc::now().checked_sub_signed(retention))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut expired = 0;
        for _ in 0..MAX_PER_SWEEP {
            let Some(claim) = self.ledger.claim_due(cutoff, CLAIM_LEASE).await? else {
                break;
            };
            match self.expire(&claim).await {
                Ok(published) => expired += usize::from(published),
                Err(e) => {
                    // Give it back so the next sweep (here or on another replica) retries.
                    if let Err(release) = self.ledger.release(claim.job_id).await {
                        tracing::warn!(job_id = %claim.job_id, error = %release, "could not release an expiry claim; its lease will end");
                    }
                    return Err(e.context(format!("expiring job {}", claim.job_id)));
                }
            }
        }
        Ok(expired)
    }

    /// Deletes the job's files and records `JobExpired` (unless it is deleted or expired
    /// already); `Ok(true)` when the event was recorded.
    async fn expire(&self, claim: &ExpiryClaim) -> anyhow::Result<bool> {
        let job_id = claim.job_id;
        let events = self.store.events_of_job(job_id).await?;
        let job = JobState::fold(job_id, &events).unwrap_or_else(|| JobState::empty(job_id));
        if job.status == JobStatus::Expired {
            self.ledger.complete(job_id).await?;
            return Ok(false);
        }
        self.janitor
            .delete_mp3s(
                job_id,
                &[job.mp3_file_id.as_deref(), claim.mp3_file_id.as_deref()],
                DeleteReason::Expired,
            )
            .await?;
        self.janitor
            .delete_videos(
                job_id,
                &[job.video_file_id.as_deref()],
                DeleteReason::Expired,
            )
            .await?;
        let published = job.status != JobStatus::Deleted;
        if published {
            // Continue the job's own trace, so its whole life shares one trace id.
            let trace = events
                .iter()
                .find_map(|e| e.traceparent.as_deref().and_then(TraceContext::parse))
                .map(|trace| trace.child())
                .unwrap_or_else(TraceContext::new_root);
            let owner_id = job
                .owner_id
                .clone()
                .unwrap_or_else(|| claim.owner_id.clone());
            let mut event = Envelope::new(
                job_id,
                "gateway",
                JobEvent::JobExpired(JobExpired { owner_id }),
            )
            .with_traceparent(Some(trace.to_traceparent()));
            event.event_id = claim.expiry_event_id;
            self.publisher.publish(&event).await?;
            metrics::counter!("jobs_expired_total").increment(1);
            tracing::info!(%job_id, "job expired");
        }
        self.ledger.complete(job_id).await?;
        Ok(published)
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            let sweep = tokio::select! {
                result = self.sweep_once() => result,
                _ = shutdown.cancelled() => return,
            };
            match sweep {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "retention sweep expired jobs"),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "retention sweep failed; retrying next interval"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(job_id: Uuid, seconds_ago: i64) -> FinishedJob {
        FinishedJob {
            job_id,
            owner_id: "user-1".into(),
            finished_at: Utc::now() - chrono::Duration::seconds(seconds_ago),
            mp3_file_id: None,
        }
    }

    #[tokio::test]
    async fn the_memory_ledger_claims_each_due_job_once_per_lease() {
        let ledger = MemoryRetentionLedger::default();
        let (old, fresh) = (Uuid::now_v7(), Uuid::now_v7());
        ledger.record_finished(&finished(old, 100)).await.unwrap();
        ledger.record_finished(&finished(fresh, 1)).await.unwrap();
        let mut with_mp3 = finished(old, 100);
        with_mp3.mp3_file_id = Some("m1".into());
        ledger.record_finished(&with_mp3).await.unwrap();

        let cutoff = Utc::now() - chrono::Duration::seconds(10);
        let claim = ledger
            .claim_due(cutoff, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.job_id, old);
        assert_eq!(claim.mp3_file_id.as_deref(), Some("m1"));
        // Leased: nobody else gets it; the fresh job is not due.
        assert!(
            ledger
                .claim_due(cutoff, Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        // Released: claimable again, with the same event id.
        ledger.release(old).await.unwrap();
        let again = ledger
            .claim_due(cutoff, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.expiry_event_id, claim.expiry_event_id);
        ledger.complete(old).await.unwrap();
        ledger.release(old).await.unwrap();
        assert!(
            ledger
                .claim_due(Utc::now(), Duration::from_secs(60))
                .await
                .unwrap()
                .is_some_and(|c| c.job_id == fresh)
        );
        assert_eq!(ledger.job_of_mp3("m1").await.unwrap(), Some(old));
        assert_eq!(ledger.job_of_mp3("m2").await.unwrap(), None);
    }

    #[test]
    fn retention_reads_naturally() {
        assert_eq!(describe(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(describe(Duration::from_secs(86_400)), "1 day");
        assert_eq!(describe(Duration::from_secs(36 * 3_600)), "36 hours");
        assert_eq!(describe(Duration::from_secs(90)), "90 seconds");
        assert_eq!(describe(Duration::from_secs(120)), "2 minutes");
        assert_eq!(describe(Duration::from_millis(500)), "500 ms");
    }

    #[test]
    fn expiry_is_finish_plus_retention() {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            expires_at(at, Duration::from_secs(2)).unwrap(),
            DateTime::<Utc>::from_timestamp(1_700_000_002, 0).unwrap()
        );
    }
}
