//! The public REST contract, written once: the JSON bodies the gateway sends and its clients
//! (the CLI, the tests) read, the SSE event names, and the quality options with the parser both
//! sides apply, so a client refuses exactly what the server refuses.
//!
//! Only serde types live here (no gRPC, no runtime), so a client depends on this crate without
//! pulling in the services. The server builds these types field by field from its internal
//! state; nothing internal reaches the JSON by accident.
//!
//! Readers are lenient where a newer server may say more: unknown fields are ignored, an
//! unknown [`JobStatus`] is [`JobStatus::Unknown`], and a field of a shape this build does not
//! understand reads as absent instead of failing the whole body.

pub mod account;
pub mod error;
pub mod events;
pub mod job;
mod lenient;
pub mod quality;

pub use account::{Account, LoginToken};
pub use error::ErrorBody;
pub use job::{
    FailureKind, JobLinks, JobList, JobStatus, JobView, Notification, NotificationStatus,
    UploadAccepted,
};
pub use quality::{CBR_BITRATES, Quality, QualityError};
