//! The gateway: the public REST API of the video→MP3 service.
//!
//! It signs users up and in (through auth's gRPC API), verifies their tokens locally, streams
//! uploads into blob storage, announces each job with a `JobSubmitted` event (through a
//! transactional outbox, so a broker outage loses nothing), keeps every job event in an event
//! store whose fold is each job's state, and streams MP3s back to their owners.

pub mod auth_client;
pub mod backends;
pub mod circuit_breaker;
pub mod configuration;
pub mod error;
pub mod filenames;
pub mod observability;
pub mod pipeline;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod store;
pub mod token_verifier;
pub mod web;

pub use backends::Backends;
pub use configuration::Settings;
pub use startup::Application;
