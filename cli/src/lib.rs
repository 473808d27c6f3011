//! `mp3`: the command-line client of the video→MP3 service.
//!
//! [`client`] speaks the REST API (its bodies are the [`api`] crate's contract, shared with the
//! gateway), [`config`] remembers a token per server, [`session`] keeps
//! a valid token for a command (logging in again when the server refuses one), [`progress`]
//! draws the bars and prints results, and [`commands`] holds one module per group of
//! subcommands. `main.rs` only parses the command line and calls [`run`].

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod error;
pub mod progress;
pub mod session;

use crate::cli::{Cli, Command};
use crate::client::ApiClient;
use crate::config::TokenCache;
use crate::error::CliError;
use crate::progress::Ui;
use crate::session::{Credentials, Session};

/// Runs the command; returns the process exit code (0 ok, 1 failure, 2 usage,
/// [`EXIT_INTERRUPTED`] after Ctrl-C).
pub async fn run(cli: Cli) -> u8 {
    let ui = Ui::new(cli.global.json, cli.global.quiet);
    tokio::select! {
        result = execute(cli, &ui) => match result {
            Ok(code) => code,
            Err(error) => {
                ui.error(&error.to_string(), error.code(), None);
                error.exit_code()
            }
        },
        Ok(()) = tokio::signal::ctrl_c() => {
            let _ = ui.bars().clear();
            eprintln!(
                "interrupted: videos already uploaded keep converting on the server \
                 (see `mp3 jobs`, then `mp3 download ID`)"
            );
            // `main` leaves at once on this code (a prompt may still block its thread).
            EXIT_INTERRUPTED
        }
    }
}

/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

async fn execute(cli: Cli, ui: &Ui) -> Result<u8, CliError> {
    let global = cli.global;
    let client = ApiClient::new(&global.server).map_err(|e| CliError::Usage(e.to_string()))?;
    let cache = TokenCache::locate()?;
    let credentials = Credentials::gather(global.email, global.password_stdin)?;
    let session = Session::new(client, cache, credentials, ui.bars().clone());
    match cli.command {
        Command::Convert(args) => commands::convert::run(&session, ui, args).await,
        Command::Login => commands::account::login(&session, ui).await,
        Command::Signup => commands::account::signup(&session, ui).await,
        Command::Logout => commands::account::logout(&session, ui),
        Command::Jobs(args) => commands::jobs::list(&session, ui, args.limit).await,
        Command::Status(args) => commands::jobs::status(&session, ui, &args.id).await,
        Command::Download(args) => {
            commands::jobs::download(&session, ui, &args.id, args.output.as_deref()).await
        }
        Command::Rm(args) => commands::jobs::remove(&session, ui, &args.ids).await,
    }
}
