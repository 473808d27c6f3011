//! The auth service: registers accounts (argon2id password hashes in MySQL, or in SQLite for the
//! all-in-one mode), exchanges credentials for EdDSA-signed JWTs, validates them and publishes the
//! public keys that let other services validate them locally. Served over gRPC (`auth.v1.Auth`,
//! with health and reflection), plus `/healthz`, `/readyz` and `/metrics` over HTTP.

pub mod account_service;
pub mod backends;
pub mod configuration;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod health;
pub mod keys;
pub mod login_limiter;
pub mod operators;
pub mod passwords;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token_issuer;

pub use backends::Backends;
pub use configuration::Settings;
pub use startup::Application;
