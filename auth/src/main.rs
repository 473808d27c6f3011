//! The `auth` binary: `auth` (or `auth serve`) runs the service; `auth create-user EMAIL` adds an
//! account, reading its password from standard input.

use auth::{Application, Settings};
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "auth",
    version,
    about = "Accounts and tokens of the MP3 converter"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Create an account. The password is read from standard input (one line), so it stays out
    /// of the shell history and the process list: `auth create-user a@example.com < password.txt`.
    CreateUser { email: String },
}

fn main() -> ExitCode {
    // `auth healthcheck [/readyz]`: the container healthcheck (see platform::healthcheck).
    if let Some(code) =
        platform::healthcheck::run_if_requested(platform::config::defaults::AUTH_HTTP_ADDR)
    {
        return code;
    }
    platform::runtime::exit_code("auth", platform::runtime::run(run()))
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    platform::telemetry::init("auth");
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::CreateUser { email } => create_user(settings, &email).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let shutdown = platform::shutdown::on_signal();
    // Waiting for the database can take a while; a signal meanwhile ends the process cleanly.
    let application = tokio::select! {
        application = Application::connect(settings) => application?,
        () = shutdown.cancelled() => return Ok(()),
    };
    application.run_until_stopped(shutdown).await
}

async fn create_user(settings: Settings, email: &str) -> anyhow::Result<()> {
    let password = read_password()?;
    let user = auth::operators::create_user(&settings, email, password).await?;
    println!("created user {} ({})", user.id, user.email);
    Ok(())
}

fn read_password() -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (input is echoed): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line)? == 0 {
        anyhow::bail!("no password on standard input");
    }
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    line.clear();
    Ok(SecretString::from(password))
}
