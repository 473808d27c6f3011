//! `mp3converter` (what `cargo run --release` at the repository root starts): the whole service in
//! one process. Prints where it listens and a curl quick start, runs until SIGTERM/SIGINT.

use mp3converter::{AllInOne, Settings};

fn main() -> anyhow::Result<()> {
    // One line per log record unless asked otherwise: the banner must not drown in pretty logs.
    // SAFETY: no other thread exists yet (the runtime is built below).
    if std::env::var_os("LOG_FORMAT").is_none() {
        unsafe { std::env::set_var("LOG_FORMAT", "compact") };
    }
    platform::runtime::run(run())
}

async fn run() -> anyhow::Result<()> {
    platform::telemetry::init("mp3converter");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let shutdown = platform::shutdown::on_signal();
    // Building waits for real backing services that are not up yet; Ctrl-C must still work.
    let built = tokio::select! {
        built = AllInOne::build(settings) => built,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let app = match built {
        Ok(app) => app,
        Err(e) => {
            // One readable line (with its causes), not a backtrace.
            eprintln!("mp3converter cannot start: {e:#}");
            std::process::exit(1);
        }
    };
    println!("{}", app.banner());
    if let Err(e) = app.run_until_stopped(shutdown).await {
        eprintln!("mp3converter stopped on an error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
