//! Runtime plumbing shared by the four services.
//!
//! Each backing service sits behind one seam here: [`bus::EventBus`] (RabbitMQ, or in-process in the
//! all-in-one mode) and [`blob::BlobStore`] (GridFS, or the local disk). Services compose these at
//! start-up; nothing above the seams knows which implementation it got.

pub mod blob;
pub mod bus;
pub mod config;
pub mod health;
pub mod healthcheck;
pub mod local_blob;
pub mod local_bus;
pub mod metrics;
pub mod mongo;
pub mod rabbit;
pub mod redrive;
pub mod retry;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

pub use config::{ConfigError, SecretUrl};
