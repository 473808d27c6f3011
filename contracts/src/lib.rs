//! Contracts shared by every service: auth's gRPC API and the pipeline's versioned job events,
//! plus the fold that turns a job's events into its current state.

pub mod claims;
pub mod events;
pub mod job;

/// Generated gRPC code for the auth service (`auth.v1`).
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("auth.v1");

        /// Encoded file descriptor set, served by gRPC reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/auth_descriptor.bin"));
    }
}

pub use events::{Envelope, JobEvent, Quality};
pub use job::{JobState, JobStatus};
