//! The pipeline's events: one versioned envelope carried as JSON on the wire.
//!
//! Every step of a job publishes one of these; the job's state is the fold of them (see
//! [`crate::job`]). The routing key of an event on the broker is its [`JobEvent::event_type`].

use api::events as names;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the envelope and payload schema written by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// One event of a job, as published on the bus and kept in the event store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUIDv7: unique and ordered by creation time.
    pub event_id: Uuid,
    pub job_id: Uuid,
    /// Schema version of this envelope and its payload.
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    /// Name of the service that produced the event (`gateway`, `converter`, ...).
    pub producer: String,
    /// W3C trace context of the operation that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(flatten)]
    pub event: JobEvent,
}

impl Envelope {
    /// A new event for `job_id`, stamped now with a fresh UUIDv7.
    pub fn new(job_id: Uuid, producer: impl Into<String>, event: JobEvent) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            job_id,
            version: SCHEMA_VERSION,
            occurred_at: Utc::now(),
            producer: producer.into(),
            traceparent: None,
            event,
        }
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Envelope = serde_json::from_slice(bytes)?;
        if envelope.version > SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion(envelope.version));
        }
        Ok(envelope)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("event schema version {0} is newer than this service understands")]
    UnsupportedVersion(u16),
}

/// What happened, with its payload. Serialised as `event_type` + `payload` beside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum JobEvent {
    #[serde(rename = "job.submitted")]
    JobSubmitted(JobSubmitted),
    #[serde(rename = "conversion.started")]
    ConversionStarted(ConversionStarted),
    #[serde(rename = "conversion.progress")]
    ConversionProgress(ConversionProgress),
    #[serde(rename = "conversion.succeeded")]
    ConversionSucceeded(ConversionSucceeded),
    #[serde(rename = "conversion.failed")]
    ConversionFailed(ConversionFailed),
    #[serde(rename = "notification.sent")]
    NotificationSent(NotificationSent),
    #[serde(rename = "notification.failed")]
    NotificationFailed(NotificationFailed),
    #[serde(rename = "job.deleted")]
    JobDeleted(JobDeleted),
    #[serde(rename = "job.expired")]
    JobExpired(JobExpired),
}

impl JobEvent {
    /// Every event type, e.g. for binding a queue to all of them.
    pub const ALL_TYPES: [&'static str; 9] = names::JOB_EVENT_TYPES;

    /// The wire name of the event, also its routing key on the broker.
    pub fn event_type(&self) -> &'static str {
        match self {
            JobEvent::JobSubmitted(_) => "job.submitted",
            JobEvent::ConversionStarted(_) => "conversion.started",
            JobEvent::ConversionProgress(_) => "conversion.progress",
            JobEvent::ConversionSucceeded(_) => "conversion.succeeded",
            JobEvent::ConversionFailed(_) => "conversion.failed",
            JobEvent::NotificationSent(_) => "notification.sent",
            JobEvent::NotificationFailed(_) => "notification.failed",
            JobEvent::JobDeleted(_) => "job.deleted",
            JobEvent::JobExpired(_) => "job.expired",
        }
    }
}

// The quality options are part of the public REST contract (clients parse them too), so they
// are defined there once; events carry them in the same JSON form.
pub use api::quality::{CBR_BITRATES, Quality, QualityError};

/// A user uploaded a video; the converter should turn it into an MP3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSubmitted {
    pub owner_id: String,
    pub owner_email: String,
    /// GridFS id (hex ObjectId) of the video in the `videos` bucket.
    pub video_file_id: String,
    /// Sanitised original file name.
    pub original_filename: String,
    #[serde(default)]
    pub content_type: Option<String>,
    pub size_bytes: u64,
    /// `None`: no preference (V2, and MP3 sources may be passed through unchanged).
    #[serde(default)]
    pub quality: Option<Quality>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionStarted {
    /// 1 for the first delivery, more for retries.
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionProgress {
    /// 0..=100, from the decoded timestamps against the track's duration.
    pub percent: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionSucceeded {
    pub owner_id: String,
    pub owner_email: String,
    pub original_filename: String,
    /// GridFS id (hex ObjectId) of the MP3 in the `mp3s` bucket.
    pub mp3_file_id: String,
    pub mp3_size_bytes: u64,
    pub duration_seconds: f64,
    /// Average bitrate of the MP3 in kbps.
    pub bitrate_kbps: u32,
    /// True when the source MP3 frames were copied without re-encoding.
    #[serde(default)]
    pub passthrough: bool,
}

/// Why a job could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The input cannot be converted (no audio, unsupported, corrupt): retrying will not help.
    Unconvertible,
    /// A transient error persisted through every retry.
    RetriesExhausted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionFailed {
    pub owner_id: String,
    pub owner_email: String,
    pub original_filename: String,
    pub kind: FailureKind,
    /// Human-readable reason, e.g. "the file has no audio track".
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSent {
    pub recipient: String,
    /// Event id of the outcome that was announced.
    pub about_event_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub recipient: String,
    pub about_event_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDeleted {
    pub owner_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobExpired {
    pub owner_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_as_json_with_type_and_payload_beside_it() {
        let envelope = Envelope::new(
            Uuid::now_v7(),
            "converter",
            JobEvent::ConversionProgress(ConversionProgress { percent: 42 }),
        );
        let json: serde_json::Value = serde_json::from_slice(&envelope.to_json()).unwrap();
        assert_eq!(json["event_type"], "conversion.progress");
        assert_eq!(json["payload"]["percent"], 42);
        assert_eq!(json["version"], SCHEMA_VERSION);
        assert_eq!(json["producer"], "converter");
        let back = Envelope::from_json(&envelope.to_json()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.event_id.get_version_num(), 7);
    }

    #[test]
    fn newer_schema_versions_are_refused() {
        let mut envelope = Envelope::new(
            Uuid::now_v7(),
            "gateway",
            JobEvent::JobExpired(JobExpired {
                owner_id: "u".into(),
            }),
        );
        envelope.version = SCHEMA_VERSION + 1;
        let err = Envelope::from_json(&envelope.to_json()).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion(v) if v == SCHEMA_VERSION + 1));
    }

    #[test]
    fn every_event_type_is_listed() {
        for name in JobEvent::ALL_TYPES {
            assert_eq!(name.split('.').count(), 2, "{name}");
        }
        let event = JobEvent::JobDeleted(JobDeleted {
            owner_id: "x".into(),
        });
        assert!(JobEvent::ALL_TYPES.contains(&event.event_type()));
        // The serde tag is a literal of its own: it must stay the name `event_type` returns.
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], event.event_type());
    }
}
