//! The converter service: turns the audio of uploaded videos into MP3 files.
//!
//! [`transcode`] is the synchronous engine (decode with symphonia, encode with LAME); the
//! [`worker`] consumes conversion jobs and drives it.

pub mod transcode;
pub mod worker;

pub use transcode::{Limits, TranscodeError, TranscodeOptions, TranscodeReport, transcode};
