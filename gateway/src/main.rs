//! The gateway binary: configuration from the environment, then serve until SIGTERM/SIGINT.

use gateway::{Application, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `gateway healthcheck [/readyz]`: the container healthcheck (see platform::healthcheck),
    // against the internal listener: the public one serves no health endpoints.
    if let Some(code) = platform::healthcheck::run_if_requested_on(
        "ADMIN_ADDR",
        platform::config::defaults::GATEWAY_ADMIN_ADDR,
    ) {
        return code;
    }
    // `gateway redrive-parked`: after an upgrade, re-drives the events this service's consumer
    // parked because an older build could not read them (see platform::redrive).
    if let Some(code) = platform::redrive::run_if_requested(gateway::pipeline::QUEUE, || {
        platform::config::string_or("AMQP_URL", platform::config::defaults::AMQP_URL)
    }) {
        return code;
    }
    platform::runtime::exit_code("gateway", platform::runtime::run(serve()))
}

async fn serve() -> anyhow::Result<()> {
    platform::telemetry::init("gateway");
    let settings = Settings::from_env()?;
    let application = Application::connect(settings).await?;
    application
        .run_until_stopped(platform::shutdown::on_signal())
        .await
}
