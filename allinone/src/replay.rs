//! Finishing at start-up what the last run left unfinished.
//!
//! The in-process bus keeps nothing across a restart, but the event store keeps every event: a
//! job whose fold is still `submitted` or `converting` gets its `JobSubmitted` published again,
//! and a finished job with no notification outcome gets its outcome event published again. Both
//! keep their event ids, and every consumer is idempotent on them: the converter re-announces a
//! job it had already converted instead of converting it again, and the sent log mails each
//! outcome once.

use contracts::{Envelope, JobEvent, JobState, JobStatus};
use gateway::store::{EventStore, StoreError};
use platform::bus::EventBus;

/// What the replay published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Jobs sent to the converter again.
    pub conversions: usize,
    /// Outcomes sent to the notification service again.
    pub notifications: usize,
}

/// The event to publish again for a job in this state, if any.
pub fn unfinished_step<'a>(job: &JobState, events: &'a [Envelope]) -> Option<&'a Envelope> {
    match job.status {
        JobStatus::Submitted | JobStatus::Converting => events
            .iter()
            .find(|e| matches!(e.event, JobEvent::JobSubmitted(_))),
        JobStatus::Succeeded | JobStatus::Failed if job.notification.is_none() => {
            // The first outcome in fold order is the one that decided the job's state.
            events.iter().find(|e| {
                matches!(
                    e.event,
                    JobEvent::ConversionSucceeded(_) | JobEvent::ConversionFailed(_)
                )
            })
        }
        _ => None,
    }
}

/// Publishes the next step of every unfinished job in `store` on `bus`.
pub async fn resume_unfinished(
    store: &dyn EventStore,
    bus: &dyn EventBus,
) -> Result<Resumed, StoreError> {
    let mut resumed = Resumed::default();
    for job_id in store.submitted_jobs().await? {
        let events = store.events_of_job(job_id).await?;
        let Some(job) = JobState::fold(job_id, &events) else {
            continue;
        };
        let Some(event) = unfinished_step(&job, &events) else {
            continue;
        };
        bus.publish(event)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        tracing::info!(%job_id, status = ?job.status, event_type = event.event_type(), "resuming a job left unfinished by the last run");
        match event.event {
            JobEvent::JobSubmitted(_) => resumed.conversions += 1,
            _ => resumed.notifications += 1,
        }
    }
    Ok(resumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::events::{
        ConversionFailed, ConversionStarted, ConversionSucceeded, FailureKind, JobDeleted,
        JobSubmitted, NotificationSent,
    };
    use uuid::Uuid;

    fn submitted(job_id: Uuid) -> Envelope {
        Envelope::new(
            job_id,
            "gateway",
            JobEvent::JobSubmitted(JobSubmitted {
                owner_id: "1".into(),
                owner_email: "a@example.com".into(),
                video_file_id: "65f0c0ffee0000000000beef".into(),
                original_filename: "a.mp4".into(),
                content_type: None,
                size_bytes: 1,
                quality: None,
            }),
        )
    }

    fn succeeded(job_id: Uuid) -> Envelope {
        Envelope::new(
            job_id,
            "converter",
            JobEvent::ConversionSucceeded(ConversionSucceeded {
                owner_id: "1".into(),
                owner_email: "a@example.com".into(),
                original_filename: "a.mp4".into(),
                mp3_file_id: "65f0c0ffee0000000000beef".into(),
                mp3_size_bytes: 1,
                duration_seconds: 1.0,
                bitrate_kbps: 128,
                passthrough: false,
            }),
        )
    }

    fn failed(job_id: Uuid) -> Envelope {
        Envelope::new(
            job_id,
            "converter",
            JobEvent::ConversionFailed(ConversionFailed {
                owner_id: "1".into(),
                owner_email: "a@example.com".into(),
                original_filename: "a.mp4".into(),
                kind: FailureKind::Unconvertible,
                reason: "no audio".into(),
            }),
        )
    }

    fn step(events: &[Envelope]) -> Option<Uuid> {
        let job = JobState::fold(events[0].job_id, events).unwrap();
        unfinished_step(&job, events).map(|e| e.event_id)
    }

    #[test]
    fn each_unfinished_state_resumes_with_its_next_step() {
        let job = Uuid::now_v7();
        let submit = submitted(job);
        assert_eq!(step(std::slice::from_ref(&submit)), Some(submit.event_id));

        let started = Envelope::new(
            job,
            "converter",
            JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
        );
        assert_eq!(
            step(&[submit.clone(), started.clone()]),
            Some(submit.event_id),
            "converting: converted again (the converter notices a stored MP3)"
        );

        let success = succeeded(job);
        let late_failure = failed(job);
        assert_eq!(
            step(&[
                submit.clone(),
                started.clone(),
                success.clone(),
                late_failure
            ]),
            Some(success.event_id),
            "the outcome that decided the state is announced"
        );
        let failure = failed(job);
        assert_eq!(
            step(&[submit.clone(), failure.clone()]),
            Some(failure.event_id)
        );

        let sent = Envelope::new(
            job,
            "notification",
            JobEvent::NotificationSent(NotificationSent {
                recipient: "a@example.com".into(),
                about_event_id: success.event_id,
            }),
        );
        assert_eq!(step(&[submit.clone(), success, sent]), None, "done");
        let deleted = Envelope::new(
            job,
            "gateway",
            JobEvent::JobDeleted(JobDeleted {
                owner_id: "1".into(),
            }),
        );
        assert_eq!(step(&[submit, deleted]), None, "deleted jobs stay deleted");
    }
}
