//! The `mp3` binary: parses the command line and runs it (see the `cli` library).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help / --version.
    let cli = cli::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("the Tokio runtime starts");
    let code = runtime.block_on(cli::run(cli));
    if code == cli::EXIT_INTERRUPTED {
        // Leave at once: a prompt blocked on the terminal would keep the runtime's shutdown
        // waiting for its thread.
        std::process::exit(code.into());
    }
    ExitCode::from(code)
}
