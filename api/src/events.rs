//! `GET /jobs/{id}/events`: the Server-Sent Events of one job.
//!
//! Each SSE message is named after the pipeline event it reports (these names are also the
//! routing keys on the broker) and carries a [`JobEventMessage`]; the stream ends once the job
//! is terminal. A message named [`ERROR`] carries an [`crate::ErrorBody`] instead: the server
//! cannot go on for now and the client should reconnect with `Last-Event-ID`.

use crate::job::JobView;
use serde::{Deserialize, Serialize};

pub const JOB_SUBMITTED: &str = "job.submitted";
pub const CONVERSION_STARTED: &str = "conversion.started";
pub const CONVERSION_PROGRESS: &str = "conversion.progress";
pub const CONVERSION_SUCCEEDED: &str = "conversion.succeeded";
pub const CONVERSION_FAILED: &str = "conversion.failed";
pub const NOTIFICATION_SENT: &str = "notification.sent";
pub const NOTIFICATION_FAILED: &str = "notification.failed";
pub const JOB_DELETED: &str = "job.deleted";
pub const JOB_EXPIRED: &str = "job.expired";
/// The gateway's watchdog sent a job that made no progress to the converter again.
pub const JOB_RESUBMITTED: &str = "job.resubmitted";

/// Every name a job event may have.
pub const JOB_EVENT_TYPES: [&str; 10] = [
    JOB_SUBMITTED,
    CONVERSION_STARTED,
    CONVERSION_PROGRESS,
    CONVERSION_SUCCEEDED,
    CONVERSION_FAILED,
    NOTIFICATION_SENT,
    NOTIFICATION_FAILED,
    JOB_DELETED,
    JOB_EXPIRED,
    JOB_RESUBMITTED,
];

/// The name of the message that reports a server-side interruption.
pub const ERROR: &str = "error";

/// The data of a job event message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEventMessage {
    /// The event as the pipeline recorded it (`event_id`, `event_type`, `occurred_at`,
    /// `payload`, ...); kept as plain JSON because its payloads belong to the pipeline's
    /// versioned schema, not to this contract.
    #[serde(default)]
    pub event: serde_json::Value,
    /// The job's state after this event.
    pub job: JobView,
}
