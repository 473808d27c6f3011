//! Integration tests of the auth service: each test starts `Application` on a fresh MySQL/MariaDB
//! database (from `DATABASE_URL`, see scripts/test.sh) and talks to it over real gRPC and HTTP.

mod helpers;

mod cli;
mod keys;
mod login;
mod operations;
mod rate_limit;
mod register;
mod tokens;
