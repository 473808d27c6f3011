//! A job's current state as the fold of its events.
//!
//! The fold is order-insensitive where it matters: events are applied in `(occurred_at, event_id)`
//! order, duplicates (same event id) count once, and a terminal state is never reopened by a late
//! start or progress event.

use crate::events::{Envelope, FailureKind, JobEvent, Quality};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Submitted,
    Converting,
    Succeeded,
    Failed,
    Deleted,
    Expired,
}

impl JobStatus {
    /// No further conversion events can change a job in this state.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Submitted | JobStatus::Converting)
    }

    /// Relative weight used to keep the most advanced status whatever the arrival order.
    fn rank(self) -> u8 {
        match self {
            JobStatus::Submitted => 0,
            JobStatus::Converting => 1,
            JobStatus::Succeeded | JobStatus::Failed => 2,
            JobStatus::Deleted | JobStatus::Expired => 3,
        }
    }
}

/// Notification outcome as seen by the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NotificationState {
    Sent { at: DateTime<Utc> },
    Failed { at: DateTime<Utc>, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub job_id: Uuid,
    pub status: JobStatus,
    pub owner_id: Option<String>,
    pub original_filename: Option<String>,
    pub video_file_id: Option<String>,
    pub quality: Option<Quality>,
    /// 0..=100.
    pub progress: u8,
    pub submitted_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    /// How often the gateway's watchdog sent the job to the converter again (`job.resubmitted`).
    #[serde(default)]
    pub resubmissions: u32,
    pub failure_reason: Option<String>,
    pub failure_kind: Option<FailureKind>,
    pub mp3_file_id: Option<String>,
    pub mp3_size_bytes: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub bitrate_kbps: Option<u32>,
    pub notification: Option<NotificationState>,
}

impl JobState {
    pub fn empty(job_id: Uuid) -> Self {
        Self {
            job_id,
            status: JobStatus::Submitted,
            owner_id: None,
            original_filename: None,
            video_file_id: None,
            quality: None,
            progress: 0,
            submitted_at: None,
            started_at: None,
            finished_at: None,
            updated_at: None,
            attempts: 0,
            resubmissions: 0,
            failure_reason: None,
            failure_kind: None,
            mp3_file_id: None,
            mp3_size_bytes: None,
            duration_seconds: None,
            bitrate_kbps: None,
            notification: None,
        }
    }

    /// Folds `events` (any order, duplicates allowed) into the job's state.
    /// Returns `None` when there are no events for the job.
    pub fn fold<'a>(job_id: Uuid, events: impl IntoIterator<Item = &'a Envelope>) -> Option<Self> {
        let mut seen = HashSet::new();
        let mut ordered: Vec<&Envelope> = events
            .into_iter()
            .filter(|e| e.job_id == job_id && seen.insert(e.event_id))
            .collect();
        if ordered.is_empty() {
            return None;
        }
        ordered.sort_by_key(|e| (e.occurred_at, e.event_id));
        let mut state = Self::empty(job_id);
        for envelope in ordered {
            state.apply(envelope);
        }
        Some(state)
    }

    fn advance(&mut self, to: JobStatus) -> bool {
        if to.rank() > self.status.rank() || (to == self.status && !to.is_terminal()) {
            self.status = to;
            true
        } else {
            false
        }
    }

    /// Applies one event. Callers should apply in `(occurred_at, event_id)` order; [`Self::fold`] does.
    pub fn apply(&mut self, envelope: &Envelope) {
        let at = envelope.occurred_at;
        self.updated_at = Some(self.updated_at.map_or(at, |u| u.max(at)));
        match &envelope.event {
            JobEvent::JobSubmitted(e) => {
                self.owner_id = Some(e.owner_id.clone());
                self.original_filename = Some(e.original_filename.clone());
                self.video_file_id = Some(e.video_file_id.clone());
                self.quality = e.quality;
                self.submitted_at = Some(at);
            }
            JobEvent::ConversionStarted(e) => {
                self.attempts = self.attempts.max(e.attempt);
                if self.advance(JobStatus::Converting) {
                    self.started_at.get_or_insert(at);
                }
            }
            JobEvent::ConversionProgress(e) => {
                if self.advance(JobStatus::Converting) {
                    self.started_at.get_or_insert(at);
                    self.progress = self.progress.max(e.percent.min(100));
                }
            }
            JobEvent::ConversionSucceeded(e) => {
                if self.advance(JobStatus::Succeeded) {
                    self.progress = 100;
                    self.finished_at = Some(at);
                    self.mp3_file_id = Some(e.mp3_file_id.clone());
                    self.mp3_size_bytes = Some(e.mp3_size_bytes);
                    self.duration_seconds = Some(e.duration_seconds);
                    self.bitrate_kbps = Some(e.bitrate_kbps);
                }
                self.owner_id.get_or_insert_with(|| e.owner_id.clone());
                self.original_filename
                    .get_or_insert_with(|| e.original_filename.clone());
            }
            JobEvent::ConversionFailed(e) => {
                if self.advance(JobStatus::Failed) {
                    self.finished_at = Some(at);
                    self.failure_reason = Some(e.reason.clone());
                    self.failure_kind = Some(e.kind);
                }
                self.owner_id.get_or_insert_with(|| e.owner_id.clone());
                self.original_filename
                    .get_or_insert_with(|| e.original_filename.clone());
            }
            JobEvent::NotificationSent(_) => {
                self.notification = Some(NotificationState::Sent { at });
            }
            JobEvent::NotificationFailed(e) => {
                if !matches!(self.notification, Some(NotificationState::Sent { .. })) {
                    self.notification = Some(NotificationState::Failed {
                        at,
                        reason: e.reason.clone(),
                    });
                }
            }
            JobEvent::JobDeleted(e) => {
                self.advance(JobStatus::Deleted);
                self.owner_id.get_or_insert_with(|| e.owner_id.clone());
            }
            JobEvent::JobExpired(e) => {
                self.advance(JobStatus::Expired);
                self.owner_id.get_or_insert_with(|| e.owner_id.clone());
            }
            JobEvent::JobResubmitted(e) => {
                self.resubmissions = self.resubmissions.max(e.resubmission);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use chrono::Duration;

    fn at(job: Uuid, seconds: i64, event: JobEvent) -> Envelope {
        let mut e = Envelope::new(job, "test", event);
        e.occurred_at = DateTime::<Utc>::from_timestamp(1_700_000_000 + seconds, 0).unwrap();
        e
    }

    fn submitted() -> JobEvent {
        JobEvent::JobSubmitted(JobSubmitted {
            owner_id: "user-1".into(),
            owner_email: "a@example.com".into(),
            video_file_id: "v1".into(),
            original_filename: "clip.mp4".into(),
            content_type: Some("video/mp4".into()),
            size_bytes: 10,
            quality: None,
        })
    }

    fn succeeded() -> JobEvent {
        JobEvent::ConversionSucceeded(ConversionSucceeded {
            owner_id: "user-1".into(),
            owner_email: "a@example.com".into(),
            original_filename: "clip.mp4".into(),
            mp3_file_id: "m1".into(),
            mp3_size_bytes: 1000,
            duration_seconds: 3.5,
            bitrate_kbps: 190,
            passthrough: false,
        })
    }

    #[test]
    fn no_events_means_no_job() {
        assert!(JobState::fold(Uuid::now_v7(), []).is_none());
    }

    #[test]
    fn the_happy_path_folds_to_succeeded() {
        let job = Uuid::now_v7();
        let events = [
            at(job, 0, submitted()),
            at(
                job,
                1,
                JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
            ),
            at(
                job,
                2,
                JobEvent::ConversionProgress(ConversionProgress { percent: 40 }),
            ),
            at(job, 3, succeeded()),
        ];
        let state = JobState::fold(job, &events).unwrap();
        assert_eq!(state.status, JobStatus::Succeeded);
        assert_eq!(state.progress, 100);
        assert_eq!(state.mp3_file_id.as_deref(), Some("m1"));
        assert_eq!(state.owner_id.as_deref(), Some("user-1"));
        assert_eq!(state.attempts, 1);
        assert!(state.started_at.unwrap() < state.finished_at.unwrap());
    }

    #[test]
    fn late_progress_does_not_reopen_a_finished_job() {
        let job = Uuid::now_v7();
        let events = [
            at(job, 0, submitted()),
            at(job, 3, succeeded()),
            at(
                job,
                9,
                JobEvent::ConversionProgress(ConversionProgress { percent: 10 }),
            ),
            at(
                job,
                10,
                JobEvent::ConversionStarted(ConversionStarted { attempt: 2 }),
            ),
        ];
        let state = JobState::fold(job, &events).unwrap();
        assert_eq!(state.status, JobStatus::Succeeded);
        assert_eq!(state.progress, 100);
    }

    #[test]
    fn arrival_order_and_duplicates_do_not_matter() {
        let job = Uuid::now_v7();
        let s = at(job, 0, submitted());
        let p = at(
            job,
            2,
            JobEvent::ConversionProgress(ConversionProgress { percent: 70 }),
        );
        let f = at(
            job,
            4,
            JobEvent::ConversionFailed(ConversionFailed {
                owner_id: "user-1".into(),
                owner_email: "a@example.com".into(),
                original_filename: "clip.mp4".into(),
                kind: FailureKind::Unconvertible,
                reason: "the file has no audio track".into(),
            }),
        );
        let in_order = JobState::fold(job, [&s, &p, &f]).unwrap();
        let shuffled = JobState::fold(job, [&f, &p, &s, &p, &f]).unwrap();
        assert_eq!(in_order, shuffled);
        assert_eq!(shuffled.status, JobStatus::Failed);
        assert_eq!(
            shuffled.failure_reason.as_deref(),
            Some("the file has no audio track")
        );
    }

    #[test]
    fn progress_never_goes_backwards_and_deletion_wins() {
        let job = Uuid::now_v7();
        let events = [
            at(job, 0, submitted()),
            at(
                job,
                1,
                JobEvent::ConversionProgress(ConversionProgress { percent: 60 }),
            ),
            at(
                job,
                2,
                JobEvent::ConversionProgress(ConversionProgress { percent: 30 }),
            ),
        ];
        let state = JobState::fold(job, &events).unwrap();
        assert_eq!((state.status, state.progress), (JobStatus::Converting, 60));

        let mut with_delete = events.to_vec();
        with_delete.push(at(job, 5, succeeded()));
        with_delete.push(at(
            job,
            6,
            JobEvent::JobDeleted(JobDeleted {
                owner_id: "user-1".into(),
            }),
        ));
        with_delete.push(at(job, 7, succeeded()));
        let state = JobState::fold(job, &with_delete).unwrap();
        assert_eq!(state.status, JobStatus::Deleted);
        let _ = Duration::seconds(0);
    }
}
