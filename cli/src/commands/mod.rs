//! One module per group of subcommands; each returns the exit code or a [`crate::error::CliError`].

pub mod account;
pub mod convert;
pub mod jobs;
