//! Expiring finished jobs `RETENTION` after they finished.

use super::{DeleteReason, EventPublisher, FileJanitor};
use crate::store::{EventStore, ExpiryClaim, RetentionLedger};
use chrono::{DateTime, Utc};
use contracts::events::JobExpired;
use contracts::{Envelope, JobEvent, JobState, JobStatus};
use platform::trace::TraceContext;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        super::every(
            interval,
            &shutdown,
            || self.sweep_once(),
            |sweep| match sweep {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "retention sweep expired jobs"),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "retention sweep failed; retrying next interval"
                ),
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
