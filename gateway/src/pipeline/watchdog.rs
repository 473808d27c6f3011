//! The watchdog: no accepted job stays unfinished. A job whose last event is older than
//! `JOB_STALL_TIMEOUT` (its submission lost or dead-lettered, a converter that never answers) is
//! sent to the converter again, at most `JOB_MAX_RESUBMISSIONS` times, each recorded as
//! `job.resubmitted`; after that it fails with a reason, which its owner is mailed like any
//! failure.
//!
//! Several replicas may watch at once: a stalled job is claimed in the [`JobWatch`] with a
//! conditional update (a lease), and the events it records have ids derived from the job's
//! submission, so a watchdog that crashed half-way and was taken over records the same ones.

use super::{EventPublisher, describe};
use crate::store::{EventStore, JobWatch, StalledJob};
use chrono::Utc;
use contracts::events::{ConversionFailed, FailureKind, JobResubmitted, JobSubmitted};
use contracts::{Envelope, JobEvent, JobState};
use platform::bus::EventBus;
use platform::trace::TraceContext;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a watchdog holds a claimed job: far longer than re-publishing takes.
const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// Most stalled jobs handled in one round; the next round continues.
const MAX_PER_ROUND: usize = 200;

/// What the watchdog did to one stalled job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Sent to the converter again (the how-manieth time).
    Resubmitted(u32),
    /// Failed with this reason.
    Failed(String),
    /// Finished (or unknown) after all: nothing to do.
    NotStalled,
}

pub struct Watchdog {
    pub watch: Arc<dyn JobWatch>,
    pub store: Arc<dyn EventStore>,
    pub bus: Arc<dyn EventBus>,
    pub publisher: EventPublisher,
    /// `JOB_STALL_TIMEOUT`.
    pub stall_timeout: Duration,
    /// `JOB_MAX_RESUBMISSIONS`.
    pub max_resubmissions: u32,
}

impl Watchdog {
    /// Handles every job stalled now; returns what was done to each.
    pub async fn watch_once(&self) -> anyhow::Result<Vec<(Uuid, Verdict)>> {
        let cutoff = chrono::Duration::from_std(self.stall_timeout)
            .ok()
            .and_then(|timeout| Utc::now().checked_sub_signed(timeout))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let mut handled = Vec::new();
        for _ in 0..MAX_PER_ROUND {
            let Some(StalledJob { job_id }) = self.watch.claim_stalled(cutoff, CLAIM_LEASE).await?
            else {
                break;
            };
            match self.handle(job_id).await {
                Ok(verdict) => handled.push((job_id, verdict)),
                Err(e) => {
                    if let Err(release) = self.watch.release(job_id).await {
                        tracing::warn!(%job_id, error = %release, "could not release a watchdog claim; its lease will end");
                    }
                    return Err(e.context(format!("watching job {job_id}")));
                }
            }
        }
        Ok(handled)
    }

    async fn handle(&self, job_id: Uuid) -> anyhow::Result<Verdict> {
        let events = self.store.events_of_job(job_id).await?;
        let submission = events.iter().find_map(|event| match &event.event {
            JobEvent::JobSubmitted(submitted) => Some((event, submitted)),
            _ => None,
        });
        let (Some(job), Some((submitted_event, submitted))) =
            (JobState::fold(job_id, &events), submission)
        else {
            // Nothing was accepted under this id: nothing to re-submit or fail.
            self.watch.finish(job_id).await?;
            return Ok(Verdict::NotStalled);
        };
        if job.status.is_terminal() {
            self.watch.finish(job_id).await?;
            return Ok(Verdict::NotStalled);
        }
        let trace = events
            .iter()
            .find_map(|e| e.traceparent.as_deref().and_then(TraceContext::parse))
            .map(|trace| trace.child())
            .unwrap_or_else(TraceContext::new_root);
        let quiet_for = describe(self.stall_timeout);
        if job.resubmissions < self.max_resubmissions {
            let resubmission = job.resubmissions + 1;
            // The same event: the converter's outcome ids derive from its id.
            self.bus.publish(submitted_event).await?;
            let mut record = Envelope::new(
                job_id,
                "gateway",
                JobEvent::JobResubmitted(JobResubmitted {
                    resubmission,
                    reason: format!("no progress for {quiet_for}"),
                }),
            )
            .with_traceparent(Some(trace.to_traceparent()));
            record.event_id = Uuid::new_v5(
                &submitted_event.event_id,
                format!("job.resubmitted/{resubmission}").as_bytes(),
            );
            self.publisher.publish(&record).await?;
            // Its own clock restarts now, whatever the bus does with the record.
            self.watch.touch(job_id, Utc::now()).await?;
            self.watch.release(job_id).await?;
            metrics::counter!("jobs_watchdog_total", "action" => "resubmitted").increment(1);
            tracing::warn!(%job_id, resubmission, "job made no progress; submitted again");
            return Ok(Verdict::Resubmitted(resubmission));
        }
        let reason = give_up_reason(&quiet_for, job.resubmissions);
        let mut failure = Envelope::new(
            job_id,
            "gateway",
            JobEvent::ConversionFailed(failed(submitted, &reason)),
        )
        .with_traceparent(Some(trace.to_traceparent()));
        failure.event_id = Uuid::new_v5(&submitted_event.event_id, b"conversion.failed/stalled");
        self.publisher.publish(&failure).await?;
        self.watch.finish(job_id).await?;
        metrics::counter!("jobs_watchdog_total", "action" => "failed").increment(1);
        tracing::error!(%job_id, %reason, "job made no progress; failed");
        Ok(Verdict::Failed(reason))
    }

    /// Watches every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        super::every(
            interval,
            &shutdown,
            || self.watch_once(),
            |round| {
                if let Err(e) = round {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "watchdog round failed; retrying next interval"
                    );
                }
            },
        )
        .await
    }
}

/// "no progress for 30 minutes; gave up after 2 re-submissions".
fn give_up_reason(quiet_for: &str, resubmissions: u32) -> String {
    match resubmissions {
        0 => format!("no progress for {quiet_for}; gave up"),
        1 => format!("no progress for {quiet_for}; gave up after 1 re-submission"),
        n => format!("no progress for {quiet_for}; gave up after {n} re-submissions"),
    }
}

fn failed(submitted: &JobSubmitted, reason: &str) -> ConversionFailed {
    ConversionFailed {
        owner_id: submitted.owner_id.clone(),
        owner_email: submitted.owner_email.clone(),
        original_filename: submitted.original_filename.clone(),
        kind: FailureKind::RetriesExhausted,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_says_how_long_and_how_often() {
        assert_eq!(
            give_up_reason("30 minutes", 2),
            "no progress for 30 minutes; gave up after 2 re-submissions"
        );
        assert_eq!(
            give_up_reason("1 hour", 1),
            "no progress for 1 hour; gave up after 1 re-submission"
        );
        assert_eq!(
            give_up_reason("2 seconds", 0),
            "no progress for 2 seconds; gave up"
        );
    }
}
