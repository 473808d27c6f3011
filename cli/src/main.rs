//! The `mp3` binary: parses the command line and runs it (see the `mp3_cli` library).

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help / --version.
    let cli = mp3_cli::cli::Cli::parse();
    ExitCode::from(mp3_cli::run(cli).await)
}
