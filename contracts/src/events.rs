//! The pipeline's events: one envelope carried as JSON on the wire, each event type versioned on
//! its own.
//!
//! Every step of a job publishes one of these; the job's state is the fold of them (see
//! [`crate::job`]). The routing key of an event on the broker is its [`JobEvent::event_type`].
//!
//! Schema evolution, per event type (no global number): each payload type states its
//! [`Versioned::VERSION`], and the envelope's `version` is the version of *its* event's payload.
//! Decoding ([`Envelope::from_json`]) reads the envelope with the payload as plain JSON, runs the
//! upcasters of [`upcast`] from the stored version up to the current one, and only then types the
//! payload; so a reader accepts every older version of a type. What a reader cannot know, an
//! event type it has never heard of or a version newer than its own, is a [`DecodeError`] of its
//! own kind: a newer build will read it, so consumers park it for re-drive instead of dropping it.

pub mod upcast;

use api::events as names;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upcast::Upcaster;
use uuid::Uuid;

/// One event type's payload schema, and the version of it this build writes. Bump `VERSION` when
/// the payload changes shape, and add the upcaster from the previous version in [`upcast`].
pub trait Versioned {
    const VERSION: u16;
}

/// One event of a job, as published on the bus and kept in the event store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEnvelope")]
pub struct Envelope {
    /// UUIDv7: unique and ordered by creation time.
    pub event_id: Uuid,
    pub job_id: Uuid,
    /// Schema version of this event's payload, counted per event type (it was one global number
    /// before per-type versions; every type was then at 1, so stored events read the same). Once
    /// decoded, it is this build's version of the type: the payload has been upcast to it.
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
    /// A new event for `job_id`, stamped now with a fresh UUIDv7 and its type's schema version.
    pub fn new(job_id: Uuid, producer: impl Into<String>, event: JobEvent) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            job_id,
            version: event.schema_version(),
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

    /// Decodes an event written by this build or an older one, upcasting its payload.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        Schema::CURRENT.decode(bytes)
    }
}

/// Why an event could not be decoded, and so what its reader should do with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Broken JSON, a missing or mistyped field, a version no upcaster leads from: no build will
    /// read it better, so it is a permanent failure (dead-letter it).
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Written by a newer build: this one must not guess at it, a newer one will read it.
    #[error("event {event_type} has schema version {version}, newer than this build knows")]
    NewerVersion { event_type: String, version: u16 },
    /// An event type this build has never heard of, presumably added by a newer build.
    #[error("unknown event type {0:?}, presumably from a newer build")]
    UnknownType(String),
}

impl DecodeError {
    /// True when a newer build can read the event: keep it (park it) for re-drive, never drop it.
    pub fn is_from_newer_build(&self) -> bool {
        !matches!(self, DecodeError::Malformed(_))
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::NewerVersion { .. } => "newer_version",
            DecodeError::UnknownType(_) => "unknown_type",
        }
    }
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        DecodeError::Malformed(e.to_string())
    }
}

/// The envelope as read from the wire, its payload not yet typed: the first step of decoding.
#[derive(Deserialize)]
struct RawEnvelope {
    event_id: Uuid,
    job_id: Uuid,
    version: u16,
    occurred_at: DateTime<Utc>,
    producer: String,
    #[serde(default)]
    traceparent: Option<String>,
    event_type: String,
    payload: serde_json::Value,
}

// Serde reads envelopes through the same upcasting path as `from_json`, so no reader can bypass it.
impl TryFrom<RawEnvelope> for Envelope {
    type Error = DecodeError;

    fn try_from(raw: RawEnvelope) -> Result<Self, DecodeError> {
        Schema::CURRENT.decode_raw(raw)
    }
}

/// What a reader knows of the event schema: each type's current version and the upcasters that
/// lead to it. This build's is [`Schema::CURRENT`]; tests build others to exercise upcasting.
pub(crate) struct Schema<'a> {
    pub current_version: fn(&str) -> Option<u16>,
    pub upcasters: &'a [Upcaster],
}

impl Schema<'static> {
    pub const CURRENT: Schema<'static> = Schema {
        current_version: JobEvent::current_version,
        upcasters: upcast::UPCASTERS,
    };
}

impl Schema<'_> {
    pub fn decode(&self, bytes: &[u8]) -> Result<Envelope, DecodeError> {
        self.decode_raw(serde_json::from_slice(bytes)?)
    }

    fn decode_raw(&self, raw: RawEnvelope) -> Result<Envelope, DecodeError> {
        let current = (self.current_version)(&raw.event_type)
            .ok_or_else(|| DecodeError::UnknownType(raw.event_type.clone()))?;
        if raw.version > current {
            return Err(DecodeError::NewerVersion {
                event_type: raw.event_type,
                version: raw.version,
            });
        }
        let payload = upcast::upcast(
            self.upcasters,
            &raw.event_type,
            raw.version,
            current,
            raw.payload,
        )?;
        // The serde tags of `JobEvent` stay the one place that maps a name to a payload type.
        let mut tagged = serde_json::Map::new();
        tagged.insert("event_type".into(), raw.event_type.into());
        tagged.insert("payload".into(), payload);
        let event: JobEvent = serde_json::from_value(tagged.into())?;
        Ok(Envelope {
            event_id: raw.event_id,
            job_id: raw.job_id,
            version: current,
            occurred_at: raw.occurred_at,
            producer: raw.producer,
            traceparent: raw.traceparent,
            event,
        })
    }
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
    #[serde(rename = "job.resubmitted")]
    JobResubmitted(JobResubmitted),
}

impl JobEvent {
    /// Every event type, e.g. for binding a queue to all of them.
    pub const ALL_TYPES: [&'static str; 10] = names::JOB_EVENT_TYPES;

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
            JobEvent::JobResubmitted(_) => "job.resubmitted",
        }
    }

    /// The schema version of this event's payload type, written into its envelope.
    pub fn schema_version(&self) -> u16 {
        match self {
            JobEvent::JobSubmitted(_) => JobSubmitted::VERSION,
            JobEvent::ConversionStarted(_) => ConversionStarted::VERSION,
            JobEvent::ConversionProgress(_) => ConversionProgress::VERSION,
            JobEvent::ConversionSucceeded(_) => ConversionSucceeded::VERSION,
            JobEvent::ConversionFailed(_) => ConversionFailed::VERSION,
            JobEvent::NotificationSent(_) => NotificationSent::VERSION,
            JobEvent::NotificationFailed(_) => NotificationFailed::VERSION,
            JobEvent::JobDeleted(_) => JobDeleted::VERSION,
            JobEvent::JobExpired(_) => JobExpired::VERSION,
            JobEvent::JobResubmitted(_) => JobResubmitted::VERSION,
        }
    }

    /// This build's schema version of the event type named `event_type`; `None` for a type it
    /// does not know.
    pub fn current_version(event_type: &str) -> Option<u16> {
        Some(match event_type {
            names::JOB_SUBMITTED => JobSubmitted::VERSION,
            names::CONVERSION_STARTED => ConversionStarted::VERSION,
            names::CONVERSION_PROGRESS => ConversionProgress::VERSION,
            names::CONVERSION_SUCCEEDED => ConversionSucceeded::VERSION,
            names::CONVERSION_FAILED => ConversionFailed::VERSION,
            names::NOTIFICATION_SENT => NotificationSent::VERSION,
            names::NOTIFICATION_FAILED => NotificationFailed::VERSION,
            names::JOB_DELETED => JobDeleted::VERSION,
            names::JOB_EXPIRED => JobExpired::VERSION,
            names::JOB_RESUBMITTED => JobResubmitted::VERSION,
            _ => return None,
        })
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

impl Versioned for JobSubmitted {
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionStarted {
    /// 1 for the first delivery, more for retries.
    pub attempt: u32,
}

impl Versioned for ConversionStarted {
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionProgress {
    /// 0..=100, from the decoded timestamps against the track's duration.
    pub percent: u8,
}

impl Versioned for ConversionProgress {
    const VERSION: u16 = 1;
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

impl Versioned for ConversionSucceeded {
    const VERSION: u16 = 1;
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

impl Versioned for ConversionFailed {
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSent {
    pub recipient: String,
    /// Event id of the outcome that was announced.
    pub about_event_id: Uuid,
}

impl Versioned for NotificationSent {
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub recipient: String,
    pub about_event_id: Uuid,
    pub reason: String,
}

impl Versioned for NotificationFailed {
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDeleted {
    pub owner_id: String,
}

impl Versioned for JobDeleted {
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobExpired {
    pub owner_id: String,
}

impl Versioned for JobExpired {
    const VERSION: u16 = 1;
}

/// The gateway's watchdog saw no event of an unfinished job for too long and published its
/// `job.submitted` again (the same event, so the converter's outcome ids stay the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResubmitted {
    /// 1 for the first re-submission.
    pub resubmission: u32,
    /// Why, for people: "no progress for 30 minutes".
    pub reason: String,
}

impl Versioned for JobResubmitted {
    const VERSION: u16 = 1;
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
        assert_eq!(json["version"], 1);
        assert_eq!(json["producer"], "converter");
        let back = Envelope::from_json(&envelope.to_json()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.event_id.get_version_num(), 7);
    }

    /// A `job.expired` as this build and the one before per-type versions both write it.
    const STORED_V1: &str = r#"{"event_id":"01900000-0000-7000-8000-000000000001","job_id":"01900000-0000-7000-8000-000000000002","version":1,"occurred_at":"2026-01-02T03:04:05Z","producer":"gateway","event_type":"job.expired","payload":{"owner_id":"u"}}"#;

    #[test]
    fn a_stored_version_1_event_reads_and_writes_back_byte_for_byte() {
        let envelope = Envelope::from_json(STORED_V1.as_bytes()).unwrap();
        assert_eq!(envelope.version, 1);
        assert_eq!(envelope.event_type(), "job.expired");
        assert_eq!(envelope.to_json(), STORED_V1.as_bytes());
    }

    fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut json: serde_json::Value = serde_json::from_str(STORED_V1).unwrap();
        json[field] = value;
        serde_json::to_vec(&json).unwrap()
    }

    #[test]
    fn a_newer_version_of_a_known_type_is_told_apart() {
        let err = Envelope::from_json(&with("version", 2.into())).unwrap_err();
        assert_eq!(
            err,
            DecodeError::NewerVersion {
                event_type: "job.expired".into(),
                version: 2
            }
        );
        assert!(err.is_from_newer_build());
    }

    #[test]
    fn an_unknown_type_is_told_apart() {
        let err = Envelope::from_json(&with("event_type", "job.renamed".into())).unwrap_err();
        assert_eq!(err, DecodeError::UnknownType("job.renamed".into()));
        assert!(err.is_from_newer_build());
    }

    #[test]
    fn broken_or_incomplete_events_are_malformed() {
        let missing_field = with("payload", serde_json::json!({"owner": "u"}));
        let no_event_id =
            STORED_V1.replace(r#""event_id":"01900000-0000-7000-8000-000000000001","#, "");
        let unreadable_version_0 = with("version", 0.into());
        for bytes in [
            b"{not json".to_vec(),
            missing_field,
            no_event_id.into_bytes(),
            unreadable_version_0,
        ] {
            let err = Envelope::from_json(&bytes).unwrap_err();
            assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
            assert!(!err.is_from_newer_build());
        }
    }

    #[test]
    fn serde_reads_envelopes_through_the_same_checks() {
        let envelope: Envelope = serde_json::from_str(STORED_V1).unwrap();
        assert_eq!(envelope, Envelope::from_json(STORED_V1.as_bytes()).unwrap());
        assert!(serde_json::from_slice::<Envelope>(&with("version", 9.into())).is_err());
    }

    #[test]
    fn older_payloads_are_upcast_to_the_current_version_before_typing() {
        // A build in which `conversion.progress` went from a fraction (v1) to a percentage (v2).
        fn current_version(event_type: &str) -> Option<u16> {
            match event_type {
                "conversion.progress" => Some(2),
                other => JobEvent::current_version(other),
            }
        }
        let upcasters = [upcast::Upcaster {
            event_type: "conversion.progress",
            from_version: 1,
            upcast: |payload| {
                let fraction = payload["fraction"].as_f64().ok_or("no fraction")?;
                Ok(serde_json::json!({"percent": (fraction * 100.0).round() as u8}))
            },
        }];
        let schema = Schema {
            current_version,
            upcasters: &upcasters,
        };
        let mut json: serde_json::Value = serde_json::from_str(STORED_V1).unwrap();
        json["event_type"] = "conversion.progress".into();
        json["payload"] = serde_json::json!({"fraction": 0.42});
        let envelope = schema.decode(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(
            envelope.event,
            JobEvent::ConversionProgress(ConversionProgress { percent: 42 })
        );
        assert_eq!(
            envelope.version, 2,
            "decoded events carry the version they now have"
        );
        // Version 2 is read as it is; version 3 is from a newer build still.
        json["version"] = 2.into();
        json["payload"] = serde_json::json!({"percent": 7});
        assert!(schema.decode(&serde_json::to_vec(&json).unwrap()).is_ok());
        json["version"] = 3.into();
        let err = schema
            .decode(&serde_json::to_vec(&json).unwrap())
            .unwrap_err();
        assert!(matches!(err, DecodeError::NewerVersion { version: 3, .. }));
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
        for name in JobEvent::ALL_TYPES {
            assert!(
                JobEvent::current_version(name).is_some(),
                "{name} has no version"
            );
        }
        assert_eq!(
            JobEvent::current_version(event.event_type()),
            Some(event.schema_version())
        );
        // The serde tag is a literal of its own: it must stay the name `event_type` returns.
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], event.event_type());
    }
}
