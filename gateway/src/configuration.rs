//! The gateway's settings, read from the environment (see [`Settings::from_env`]).

use platform::config::{self, ConfigError, defaults};
use std::net::SocketAddr;
use std::time::Duration;

/// Default `MAX_UPLOAD_BYTES`: 2 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HTTP_ADDR`: where the REST API (and /healthz, /readyz) listens.
    pub http_addr: SocketAddr,
    /// `AUTH_GRPC_URL`: the auth service's gRPC endpoint.
    pub auth_grpc_url: String,
    /// `AUTH_TIMEOUT`: deadline of every call to auth, so a hung auth yields 503, never a hang.
    pub auth_timeout: Duration,
    /// `MONGODB_URI`: GridFS files, the event store and the outbox.
    pub mongodb_uri: String,
    /// `JOBS_DATABASE`: MongoDB database holding the `events` and `outbox` collections.
    pub jobs_database: String,
    /// `AMQP_URL`: RabbitMQ.
    pub amqp_url: String,
    /// `MAX_UPLOAD_BYTES`: largest accepted video.
    pub max_upload_bytes: u64,
    /// `PUBLIC_BASE_URL`: prefix of the links returned to clients (no trailing slash).
    pub public_base_url: String,
    /// `OUTBOX_POLL_INTERVAL`: how often the relay looks for unpublished events when idle.
    pub outbox_poll_interval: Duration,
    /// `KEYS_REFRESH_MIN_INTERVAL`: an unknown `kid` refetches auth's keys at most this often.
    pub keys_refresh_min_interval: Duration,
    /// `SSE_POLL_INTERVAL`: how often a live job stream re-reads the store without a wake-up
    /// (events consumed by another gateway replica wake nobody here).
    pub sse_poll_interval: Duration,
}

impl Settings {
    /// Reads every setting; a malformed value fails with one line naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let http_addr = config::or_default(
            "HTTP_ADDR",
            defaults::GATEWAY_HTTP_ADDR
                .parse()
                .expect("the default address parses"),
        )?;
        let max_upload_bytes = config::or_default("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)?;
        if max_upload_bytes == 0 {
            return Err(ConfigError::new(
                "MAX_UPLOAD_BYTES",
                "0",
                "must be at least 1",
            ));
        }
        let public_base_url = config::string_or("PUBLIC_BASE_URL", "http://mp3converter.com");
        if !(public_base_url.starts_with("http://") || public_base_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "PUBLIC_BASE_URL",
                &public_base_url,
                "must start with http:// or https://",
            ));
        }
        Ok(Self {
            http_addr,
            auth_grpc_url: config::string_or("AUTH_GRPC_URL", defaults::AUTH_GRPC_URL),
            auth_timeout: config::duration_or("AUTH_TIMEOUT", Duration::from_secs(3))?,
            mongodb_uri: config::string_or("MONGODB_URI", defaults::MONGODB_URI),
            jobs_database: config::string_or("JOBS_DATABASE", "jobs"),
            amqp_url: config::string_or("AMQP_URL", defaults::AMQP_URL),
            max_upload_bytes,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            outbox_poll_interval: config::duration_or(
                "OUTBOX_POLL_INTERVAL",
                Duration::from_secs(1),
            )?,
            keys_refresh_min_interval: config::duration_or(
                "KEYS_REFRESH_MIN_INTERVAL",
                Duration::from_secs(10),
            )?,
            sse_poll_interval: config::duration_or("SSE_POLL_INTERVAL", Duration::from_secs(1))?,
        })
    }

    /// Settings for an integration test: port 0 on loopback and a private jobs database, so
    /// parallel tests never share an outbox or event store.
    pub fn for_tests(auth_grpc_url: &str, mongodb_uri: &str, amqp_url: &str) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self {
            http_addr: "127.0.0.1:0".parse().expect("a valid address"),
            auth_grpc_url: auth_grpc_url.to_owned(),
            auth_timeout: Duration::from_secs(3),
            mongodb_uri: mongodb_uri.to_owned(),
            jobs_database: format!("jobs_test_{}", &unique[..12]),
            amqp_url: amqp_url.to_owned(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            public_base_url: "http://mp3converter.test".into(),
            outbox_poll_interval: Duration::from_millis(200),
            keys_refresh_min_interval: Duration::from_secs(1),
            sse_poll_interval: Duration::from_millis(250),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the process environment so no two tests race on it.
    #[test]
    fn defaults_apply_and_malformed_values_name_their_variable() {
        // SAFETY: only this test sets these variables, and it runs alone in its process
        // under nextest.
        unsafe {
            for name in [
                "HTTP_ADDR",
                "MAX_UPLOAD_BYTES",
                "PUBLIC_BASE_URL",
                "AUTH_TIMEOUT",
                "JOBS_DATABASE",
            ] {
                std::env::remove_var(name);
            }
        }
        let settings = Settings::from_env().unwrap();
        assert_eq!(settings.http_addr.port(), 8080);
        assert_eq!(settings.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
        assert_eq!(settings.public_base_url, "http://mp3converter.com");
        assert_eq!(settings.auth_timeout, Duration::from_secs(3));
        assert_eq!(settings.jobs_database, "jobs");

        unsafe { std::env::set_var("MAX_UPLOAD_BYTES", "lots") };
        let line = Settings::from_env().unwrap_err().to_string();
        assert!(line.contains("MAX_UPLOAD_BYTES"), "{line}");
        assert!(!line.contains('\n'));

        unsafe {
            std::env::set_var("MAX_UPLOAD_BYTES", "1048576");
            std::env::set_var("PUBLIC_BASE_URL", "https://example.org/");
        }
        let settings = Settings::from_env().unwrap();
        assert_eq!(settings.max_upload_bytes, 1_048_576);
        assert_eq!(settings.public_base_url, "https://example.org");

        unsafe { std::env::set_var("PUBLIC_BASE_URL", "example.org") };
        assert!(
            Settings::from_env()
                .unwrap_err()
                .to_string()
                .contains("PUBLIC_BASE_URL")
        );
        unsafe {
            std::env::remove_var("PUBLIC_BASE_URL");
            std::env::remove_var("MAX_UPLOAD_BYTES");
        }
    }
}
