//! Data lifecycle: what is kept, and for how long.
//!
//! - The source video goes once its MP3 exists (unless `KEEP_VIDEOS`): the event-store consumer
//!   deletes it when it stores `conversion.succeeded` ([`Lifecycle`]).
//! - A conversion that finishes after its job was deleted (or expired) must not leave its MP3
//!   behind: the same consumer deletes it ([`Lifecycle`]).
//! - Two converters that both converted a job (a redelivery while the first still ran) announce
//!   the same success event id; the store keeps the first, and the second's MP3 is deleted.
//! - A finished job expires `RETENTION` after it finished: the [`Sweeper`] deletes its files and
//!   records `JobExpired` (through the outbox, so it is never lost). The job's events stay, so its
//!   status reads `expired` and a download answers 410 Gone.
//!
//! Several gateway replicas may sweep at once: a job's expiry is claimed in the
//! [`RetentionLedger`] with a conditional update (a lease), deletes are idempotent, and the
//! `JobExpired` event id is fixed when the job finishes, so even a sweeper that crashed half-way
//! and was taken over publishes the same event (deduplicated by id everywhere).

use super::{DeleteReason, FileJanitor};
use crate::store::{EventStore, FinishedJob, RetentionLedger};
use contracts::{Envelope, JobEvent, JobState, JobStatus};
use platform::blob::BlobError;
use std::sync::Arc;

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
        if let Some(duplicate) = mp3_file_id
            && job
                .mp3_file_id
                .as_deref()
                .is_some_and(|kept| kept != duplicate)
        {
            // The same success announced for another MP3: a second conversion of the job.
            if self
                .janitor
                .delete_mp3(duplicate, DeleteReason::Duplicate)
                .await
                .map_err(blob_error)?
            {
                tracing::info!(%job_id, mp3 = duplicate, "deleted the MP3 of a second conversion");
            }
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
