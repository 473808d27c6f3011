//! `mp3converter` (what `cargo run --release` at the repository root starts): the whole service in
//! one process. Prints where it listens and a curl quick start, runs until SIGTERM/SIGINT.

use allinone::{AllInOne, Settings};
use anyhow::Context;

fn main() -> std::process::ExitCode {
    // One line per log record unless asked otherwise: the banner must not drown in pretty logs.
    // SAFETY: no other thread exists yet (the runtime is built below).
    if std::env::var_os("LOG_FORMAT").is_none() {
        unsafe { std::env::set_var("LOG_FORMAT", "compact") };
    }
    platform::runtime::exit_code("mp3converter", platform::runtime::run(run()))
}

async fn run() -> anyhow::Result<()> {
    platform::telemetry::init("mp3converter");
    let settings = Settings::from_env()?;
    let shutdown = platform::shutdown::on_signal();
    // Building waits for real backing services that are not up yet; Ctrl-C must still work.
    let built = tokio::select! {
        built = AllInOne::build(settings) => built,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let app = built.context("cannot start")?;
    println!("{}", app.banner());
    app.run_until_stopped(shutdown)
        .await
        .context("stopped on an error")
}
