//! Jobs as clients see them: `GET /jobs/{id}`, `GET /jobs`, the 202 answer of `POST /upload`.
//!
//! The gateway fills these field by field from its internal fold of the job's events, so a field
//! is public only when it is listed here. The owner's id is not (the caller is the owner).

use crate::lenient;
use crate::quality::Quality;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a job is in its life. A client that meets a status it does not know (a newer server)
/// reads [`JobStatus::Unknown`] and treats it as terminal: nothing it knows will follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Submitted,
    Converting,
    Succeeded,
    Failed,
    Deleted,
    Expired,
    /// A status this build does not know; never sent by the gateway of this build.
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    /// The job will not convert any further.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Submitted | JobStatus::Converting)
    }

    /// The wire name (`"converting"`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Submitted => "submitted",
            JobStatus::Converting => "converting",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Deleted => "deleted",
            JobStatus::Expired => "expired",
            JobStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job failed, for a client that words it differently (e.g. "try again later").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The input cannot be converted (no audio, unsupported, corrupt): retrying will not help.
    Unconvertible,
    /// A transient error persisted through every retry.
    RetriesExhausted,
}

/// Whether the owner was mailed about the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    Sent,
    Failed,
    #[serde(other)]
    Unknown,
}

/// The outcome mail: `{"status": "sent", "at": …}` or `{"status": "failed", "at": …, "reason": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub status: NotificationStatus,
    #[serde(default, deserialize_with = "lenient::time")]
    pub at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Absolute URLs of the job's resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLinks {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub events: String,
    /// The MP3; only present while there is one to download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<String>,
}

/// One job: `GET /jobs/{id}`, an item of `GET /jobs`, and the `job` of every SSE event.
///
/// Only `job_id` and `status` are required on read; everything else defaults, so an older or
/// newer server's job still parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Opaque to clients (a UUID today).
    pub job_id: String,
    pub status: JobStatus,
    /// The uploaded file's name, made safe.
    #[serde(default)]
    pub original_filename: Option<String>,
    /// The stored video, for `GET /download?fid=` while it is kept.
    #[serde(default)]
    pub video_file_id: Option<String>,
    /// The requested quality; `null` = the converter's default.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub quality: Option<Quality>,
    /// 0..=100.
    #[serde(default)]
    pub progress: u8,
    #[serde(default, deserialize_with = "lenient::time")]
    pub submitted_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The time of the job's latest event.
    #[serde(default, deserialize_with = "lenient::time")]
    pub updated_at: Option<DateTime<Utc>>,
    /// How many times a converter started on the job: more than 1 after a retry, which users
    /// and the reliability checks want to see.
    #[serde(default)]
    pub attempts: u32,
    /// How often the gateway's watchdog sent the job to the converter again because it made no
    /// progress (`job.resubmitted`).
    #[serde(default)]
    pub resubmissions: u32,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub failure_kind: Option<FailureKind>,
    /// The stored MP3, for `GET /download?fid=`.
    #[serde(default)]
    pub mp3_file_id: Option<String>,
    #[serde(default)]
    pub mp3_size_bytes: Option<u64>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    /// Average bitrate of the MP3.
    #[serde(default)]
    pub bitrate_kbps: Option<u32>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub notification: Option<Notification>,
    /// The requested quality in its familiar form (`V2`, `192 kbps`); `null` = default.
    #[serde(default)]
    pub quality_label: Option<String>,
    /// When the job's files are (or were) deleted: the retention period after it finished;
    /// `null` while it runs or once deleted by its owner.
    #[serde(default, deserialize_with = "lenient::time")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub links: JobLinks,
}

/// `GET /jobs?limit=&before=`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// The next (older) page; `null` on the last one.
    #[serde(default)]
    pub next: Option<String>,
}

/// The 202 answer of `POST /upload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadAccepted {
    pub job_id: String,
    #[serde(default)]
    pub video_file_id: String,
    /// Always `submitted`.
    #[serde(default = "submitted")]
    pub status: JobStatus,
    #[serde(default)]
    pub original_filename: String,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default)]
    pub content_type: Option<String>,
    /// The requested quality's label (`V0`, `192 kbps`), as `quality_label` of the job.
    #[serde(default)]
    pub quality: Option<String>,
    #[serde(default)]
    pub links: JobLinks,
}

fn submitted() -> JobStatus {
    JobStatus::Submitted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_statuses_read_as_unknown_and_terminal() {
        let status: JobStatus = serde_json::from_value(json!("archived")).unwrap();
        assert_eq!(status, JobStatus::Unknown);
        assert!(status.is_terminal());
        assert!(!JobStatus::Converting.is_terminal());
        assert_eq!(
            serde_json::to_value(JobStatus::Succeeded).unwrap(),
            json!(JobStatus::Succeeded.as_str())
        );
    }

    #[test]
    fn a_minimal_job_parses_and_odd_optional_fields_read_as_absent() {
        let job: JobView = serde_json::from_value(json!({
            "job_id": "j", "status": "failed", "new_field": 1,
            "quality": {"mode": "lossless"}, "failure_kind": "cosmic_rays",
            "submitted_at": "", "finished_at": "2025-01-02T04:04:05+01:00",
            "notification": {"status": "bounced", "at": "2025-01-02T03:04:06Z"}
        }))
        .unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(job.progress, 0);
        assert_eq!(job.quality, None);
        assert_eq!(job.failure_kind, None);
        assert_eq!(job.submitted_at, None);
        assert_eq!(
            job.finished_at.unwrap().to_rfc3339(),
            "2025-01-02T03:04:05+00:00"
        );
        assert_eq!(
            job.notification.unwrap().status,
            NotificationStatus::Unknown
        );
        assert!(serde_json::from_value::<JobView>(json!({"status": "failed"})).is_err());
    }

    #[test]
    fn links_without_a_download_omit_it() {
        let links = JobLinks {
            status: "s".into(),
            events: "e".into(),
            download: None,
        };
        assert_eq!(
            serde_json::to_value(links).unwrap(),
            json!({"status": "s", "events": "e"})
        );
        let sent = Notification {
            status: NotificationStatus::Sent,
            at: None,
            reason: None,
        };
        assert_eq!(
            serde_json::to_value(sent).unwrap(),
            json!({"status": "sent", "at": null})
        );
    }
}
