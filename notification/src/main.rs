//! The notification worker: `Settings` from the environment, then run until SIGTERM/SIGINT.

use notification::{Application, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `notification healthcheck [/readyz]`: the container healthcheck (see platform::healthcheck).
    if let Some(code) =
        platform::healthcheck::run_if_requested(platform::config::defaults::NOTIFICATION_HTTP_ADDR)
    {
        return code;
    }
    // `notification redrive-parked`: after an upgrade, re-drives the events this service's consumer
    // parked because an older build could not read them (see platform::redrive).
    if let Some(code) = platform::redrive::run_if_requested(notification::startup::QUEUE, || {
        platform::config::string_or("AMQP_URL", platform::config::defaults::AMQP_URL)
    }) {
        return code;
    }
    platform::runtime::exit_code("notification", platform::runtime::run(serve()))
}

async fn serve() -> anyhow::Result<()> {
    platform::telemetry::init("notification");
    let settings = Settings::from_env()?;
    let application = Application::connect(settings).await?;
    application
        .run_until_stopped(platform::shutdown::on_signal())
        .await
}
