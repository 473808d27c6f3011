//! The worker's settings, from environment variables.

use platform::SecretUrl;
use platform::config::{self, ConfigError, defaults};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `AMQP_URL`.
    pub amqp_url: SecretUrl,
    /// `MONGODB_URI`.
    pub mongodb_uri: SecretUrl,
    /// `HTTP_ADDR`: health endpoints.
    pub http_addr: SocketAddr,
    /// `CONVERTER_CONCURRENCY`: jobs converted at once (the consumer prefetch). Default: cores.
    pub concurrency: u16,
    /// `CONVERTER_RETRY_DELAYS`: delays before each retry of a transient failure, e.g. `5s,30s,2m`.
    pub retry_delays: Vec<Duration>,
    /// `CONVERTER_TEMP_DIR`: where videos and MP3s are spilled while converting. Default: the
    /// system temp dir.
    pub temp_dir: Option<PathBuf>,
}

/// Default retry schedule: four retries over about ten minutes.
pub const DEFAULT_RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
        let concurrency: u16 = config::or_default("CONVERTER_CONCURRENCY", cores)?;
        if concurrency == 0 {
            return Err(ConfigError::new(
                "CONVERTER_CONCURRENCY",
                "0",
                "must be at least 1",
            ));
        }
        Ok(Self {
            amqp_url: config::secret_url_or("AMQP_URL", defaults::AMQP_URL),
            mongodb_uri: config::secret_url_or("MONGODB_URI", defaults::MONGODB_URI),
            http_addr: config::or_default(
                "HTTP_ADDR",
                defaults::CONVERTER_HTTP_ADDR
                    .parse()
                    .expect("valid default"),
            )?,
            concurrency,
            retry_delays: config::duration_list_or(
                "CONVERTER_RETRY_DELAYS",
                &DEFAULT_RETRY_DELAYS,
            )?,
            temp_dir: config::optional("CONVERTER_TEMP_DIR")?,
        })
    }

    /// Settings for tests: ephemeral port, short retries.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(amqp_url: &str, mongodb_uri: &str) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            mongodb_uri: mongodb_uri.into(),
            http_addr: "127.0.0.1:0".parse().expect("valid address"),
            concurrency: 2,
            retry_delays: vec![Duration::from_millis(200), Duration::from_millis(400)],
            temp_dir: None,
        }
    }
}
