//! Integration tests of the gateway against real auth, MongoDB-wire and RabbitMQ servers.
//! Run with `scripts/test.sh -p gateway`.

mod accounts;
mod auth_outage;
mod big_upload;
mod dead_letters;
mod download;
mod form_limits;
mod health;
mod helpers;
mod jobs;
mod observability;
mod orphans;
mod outbox;
mod rate_limits;
mod resilience;
mod retention;
mod sse_limits;
mod sse_load;
mod store_contract;
mod timeouts;
mod upload;
mod watchdog;
