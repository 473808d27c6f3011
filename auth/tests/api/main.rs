//! Integration tests of the auth service: each test starts `Application` on a fresh MySQL/MariaDB
//! database (from `DATABASE_URL`, see scripts/test.sh) or a fresh SQLite file, and talks to it
//! over real gRPC and HTTP. Tests of store-dependent behaviour run on both backends
//! (`NAME::mysql`, `NAME::sqlite`).

mod helpers;

mod cli;
mod keys;
mod login;
mod operations;
mod rate_limit;
mod register;
mod telemetry;
mod tokens;
