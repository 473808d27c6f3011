//! The gateway binary: configuration from the environment, then serve until SIGTERM/SIGINT.

use gateway::{Application, Dependencies, Settings};

fn main() -> anyhow::Result<()> {
    // `gateway healthcheck [/readyz]`: the container healthcheck (see platform::healthcheck).
    platform::healthcheck::exit_if_requested(platform::config::defaults::GATEWAY_HTTP_ADDR);
    platform::runtime::run(serve())
}

async fn serve() -> anyhow::Result<()> {
    platform::telemetry::init("gateway");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            // One line naming the variable, not a backtrace.
            eprintln!("gateway: {e}");
            std::process::exit(2);
        }
    };
    let dependencies = Dependencies::from_settings(&settings).await?;
    let application = Application::build(settings, dependencies).await?;
    application
        .run_until_stopped(platform::shutdown::on_signal())
        .await
}
