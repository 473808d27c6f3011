//! The notification worker: `Settings` from the environment, then run until SIGTERM/SIGINT.

use notification::{Application, Settings};

fn main() -> anyhow::Result<()> {
    platform::runtime::run(serve())
}

async fn serve() -> anyhow::Result<()> {
    platform::telemetry::init("notification");
    let settings = Settings::from_env().unwrap_or_else(|e| {
        // One line naming the variable, not a backtrace.
        eprintln!("notification: {e}");
        std::process::exit(2);
    });
    let application = Application::build_with_rabbitmq(settings).await?;
    application
        .run_until_stopped(platform::shutdown::on_signal())
        .await
}
