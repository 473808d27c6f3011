//! Integration tests of the gateway against real auth, MongoDB-wire and RabbitMQ servers.
//! Run with `scripts/test.sh -p gateway`.

mod accounts;
mod big_upload;
mod download;
mod health;
mod helpers;
mod jobs;
mod outbox;
mod resilience;
mod upload;
