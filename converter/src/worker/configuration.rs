//! The worker's settings, from environment variables.

use super::spill::DEFAULT_BUDGET_BYTES;
use crate::transcode::Limits;
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
    /// `CONVERTER_TEMP_BUDGET`: bytes of temporary space the jobs in flight may use together
    /// (each reserves its video plus the largest MP3 it may write; default 5 GiB).
    pub temp_budget_bytes: u64,
    /// `MAX_AUDIO_DURATION` (default `6h`), `MAX_MP3_BYTES` (default 1 GiB) and
    /// `CONVERSION_DEADLINE` (default `2h`): a job passing one fails with the limit named.
    pub limits: Limits,
    /// `CONVERTER_LEASE_TTL` (default `30s`): how long a job's conversion lease lasts unless its
    /// holder renews it (every third of it). A dead worker's job waits this long for another.
    pub lease_ttl: Duration,
    /// `DELIVERY_LIMIT` (default 5): deaths of a worker holding one job that the broker lets pass;
    /// at the next one it gives the job up and the job fails ("the file could not be processed").
    pub delivery_limit: u32,
}

/// Default [`Settings::lease_ttl`].
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// Default [`Settings::delivery_limit`].
pub const DEFAULT_DELIVERY_LIMIT: u32 = config::DEFAULT_DELIVERY_LIMIT;

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
            temp_budget_bytes: positive_bytes("CONVERTER_TEMP_BUDGET", DEFAULT_BUDGET_BYTES)?,
            limits: limits_from_env()?,
            lease_ttl: positive_duration("CONVERTER_LEASE_TTL", DEFAULT_LEASE_TTL)?,
            delivery_limit: config::delivery_limit()?,
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
            temp_budget_bytes: DEFAULT_BUDGET_BYTES,
            limits: Limits::default(),
            lease_ttl: Duration::from_secs(3),
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        }
    }
}

fn positive_duration(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let duration = config::duration_or(name, default)?;
    if duration < Duration::from_millis(300) {
        return Err(ConfigError::new(
            name,
            &format!("{duration:?}"),
            "must be at least 300ms",
        ));
    }
    Ok(duration)
}

fn positive_bytes(name: &str, default: u64) -> Result<u64, ConfigError> {
    match config::or_default(name, default)? {
        0 => Err(ConfigError::new(name, "0", "must be more than zero")),
        bytes => Ok(bytes),
    }
}

/// The conversion limits: `MAX_AUDIO_DURATION` and `CONVERSION_DEADLINE` (durations such as
/// `90m` or `6h`; a bare number is seconds) and `MAX_MP3_BYTES`. None may be zero.
pub fn limits_from_env() -> Result<Limits, ConfigError> {
    let limits = Limits {
        max_audio_duration: config::duration_or(
            "MAX_AUDIO_DURATION",
            Limits::DEFAULT_MAX_AUDIO_DURATION,
        )?,
        max_mp3_bytes: config::or_default("MAX_MP3_BYTES", Limits::DEFAULT_MAX_MP3_BYTES)?,
        deadline: config::duration_or("CONVERSION_DEADLINE", Limits::DEFAULT_DEADLINE)?,
    };
    let zero = |name: &str| ConfigError::new(name, "0", "must be more than zero");
    if limits.max_audio_duration.is_zero() {
        return Err(zero("MAX_AUDIO_DURATION"));
    }
    if limits.max_mp3_bytes == 0 {
        return Err(zero("MAX_MP3_BYTES"));
    }
    if limits.deadline.is_zero() {
        return Err(zero("CONVERSION_DEADLINE"));
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `vars`, reads the limits, and unsets them again.
    fn limits_with(vars: &[(&str, &str)]) -> Result<Limits, ConfigError> {
        // SAFETY: only these tests touch these variables, and each sets and clears them within
        // one call; nothing else of the library reads them in its unit tests.
        unsafe {
            for (name, value) in vars {
                std::env::set_var(name, value);
            }
        }
        let limits = limits_from_env();
        unsafe {
            for (name, _) in vars {
                std::env::remove_var(name);
            }
        }
        limits
    }

    #[test]
    fn limits_read_durations_and_bytes_and_refuse_zero() {
        let limits = limits_with(&[
            ("MAX_AUDIO_DURATION", "90m"),
            ("MAX_MP3_BYTES", "500000000"),
            ("CONVERSION_DEADLINE", "45"),
        ])
        .unwrap();
        assert_eq!(limits.max_audio_duration, Duration::from_secs(90 * 60));
        assert_eq!(limits.max_mp3_bytes, 500_000_000);
        assert_eq!(limits.deadline, Duration::from_secs(45));

        assert_eq!(limits_with(&[]).unwrap(), Limits::default());

        for name in ["MAX_AUDIO_DURATION", "MAX_MP3_BYTES", "CONVERSION_DEADLINE"] {
            let line = limits_with(&[(name, "0")]).unwrap_err().to_string();
            assert!(
                line.starts_with(&format!("invalid value for {name}")),
                "{line}"
            );
        }
        let line = limits_with(&[("MAX_AUDIO_DURATION", "six hours")])
            .unwrap_err()
            .to_string();
        assert!(line.contains("MAX_AUDIO_DURATION"), "{line}");
    }
}
