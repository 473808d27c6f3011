//! The gateway's settings, read from the environment (see [`Settings::from_env`]).

use crate::circuit_breaker::BreakerConfig;
use crate::rate_limit::RateLimitConfig;
use platform::SecretUrl;
use platform::bus::AutoRedrive;
use platform::config::{self, ConfigError, defaults};
use std::net::SocketAddr;
use std::time::Duration;

/// Default `RETENTION`: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default `MAX_UPLOAD_BYTES`: 2 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Default `HEADER_READ_TIMEOUT`: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `JOB_STALL_TIMEOUT`: 30 minutes.
pub const DEFAULT_JOB_STALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default `BODY_IDLE_TIMEOUT`: 30 s.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HTTP_ADDR`: where the public REST API listens (no health or metrics there).
    pub http_addr: SocketAddr,
    /// `ADMIN_ADDR`: the internal listener of `/healthz`, `/readyz` and `/metrics`, for probes
    /// and Prometheus; the ingress never routes to it.
    pub admin_addr: SocketAddr,
    /// `AUTH_GRPC_URL`: the auth service's gRPC endpoint.
    pub auth_grpc_url: String,
    /// `AUTH_TIMEOUT`: deadline of every call to auth, so a hung auth yields 503, never a hang.
    pub auth_timeout: Duration,
    /// `MONGODB_URI`: GridFS files, the event store and the outbox.
    pub mongodb_uri: SecretUrl,
    /// `JOBS_DATABASE`: MongoDB database holding the `events` and `outbox` collections.
    pub jobs_database: String,
    /// `AMQP_URL`: RabbitMQ.
    pub amqp_url: SecretUrl,
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
    /// `SSE_STREAMS_PER_USER`: open job event streams per user (429 beyond; 0 disables).
    pub sse_streams_per_user: u32,
    /// `SSE_STREAMS_MAX`: open job event streams on this replica (503 beyond; 0 disables).
    pub sse_streams_max: u32,
    /// `KEEP_VIDEOS`: keep the source video once its MP3 exists (default: delete it).
    pub keep_videos: bool,
    /// `RETENTION`: how long MP3s (and the videos of failed jobs) are kept after a job finished.
    pub retention: Duration,
    /// `RETENTION_SWEEP_INTERVAL`: how often the sweeper looks for expired jobs.
    pub retention_sweep_interval: Duration,
    /// `UPLOADS_PER_MINUTE`, `MAX_CONCURRENT_UPLOADS` (per user), `LOGINS_PER_MINUTE` (per client
    /// address); 0 disables a limit.
    pub rate_limits: RateLimitConfig,
    /// `TRUST_FORWARDED_FOR`: take the client address from the first `X-Forwarded-For` hop
    /// (only behind an ingress that sets it).
    pub trust_forwarded_for: bool,
    /// `HEADER_READ_TIMEOUT`: a connection whose request head is not complete this long after it
    /// opened (or after its previous response) is closed; also how long an idle kept-alive
    /// connection stays open.
    pub header_read_timeout: Duration,
    /// `BODY_IDLE_TIMEOUT`: a request body that sends nothing for this long is cut (an upload is
    /// answered 408).
    pub body_idle_timeout: Duration,
    /// `JOB_STALL_TIMEOUT`: an unfinished job with no event for this long is submitted again
    /// (a conversion in progress reports progress far more often).
    pub job_stall_timeout: Duration,
    /// `JOB_MAX_RESUBMISSIONS`: how often a stalled job is submitted again before it fails.
    pub job_max_resubmissions: u32,
    /// `JOB_WATCH_INTERVAL`: how often the watchdog looks for stalled jobs.
    pub job_watch_interval: Duration,
    /// `ORPHAN_GRACE`: files younger than this are never taken for orphans (an upload whose job
    /// is still being recorded).
    pub orphan_grace: Duration,
    /// `ORPHAN_SWEEP_INTERVAL`: how often the orphan sweeper looks at a page of each bucket.
    pub orphan_sweep_interval: Duration,
    /// `DEAD_LETTER_REDRIVE_AFTER` and `DEAD_LETTER_MAX_REDRIVES`: an event dead-lettered from
    /// the gateway's queue goes back into it after this cool-down, at most this many times.
    pub dead_letter_redrive: AutoRedrive,
    /// `DELIVERY_LIMIT` (default 5): deaths of a gateway holding one event that the broker lets
    /// pass before it gives the event up (see `pipeline::subscription`).
    pub delivery_limit: u32,
    /// `AUTH_BREAKER_FAILURES` consecutive unreachable-auth failures open the circuit for
    /// `AUTH_BREAKER_OPEN_FOR`.
    pub auth_breaker: BreakerConfig,
}

fn positive(name: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        let raw = config::raw(name).unwrap_or_default();
        return Err(ConfigError::new(name, &raw, "must be longer than 0"));
    }
    Ok(value)
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
        let admin_addr: SocketAddr = config::or_default(
            "ADMIN_ADDR",
            defaults::GATEWAY_ADMIN_ADDR
                .parse()
                .expect("the default address parses"),
        )?;
        if admin_addr == http_addr {
            return Err(ConfigError::new(
                "ADMIN_ADDR",
                &admin_addr.to_string(),
                "must differ from HTTP_ADDR (the internal endpoints are never public)",
            ));
        }
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
            admin_addr,
            auth_grpc_url: config::string_or("AUTH_GRPC_URL", defaults::AUTH_GRPC_URL),
            auth_timeout: config::duration_or("AUTH_TIMEOUT", Duration::from_secs(3))?,
            mongodb_uri: config::secret_url_or("MONGODB_URI", defaults::MONGODB_URI),
            jobs_database: config::string_or("JOBS_DATABASE", "jobs"),
            amqp_url: config::secret_url_or("AMQP_URL", defaults::AMQP_URL),
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
            sse_streams_per_user: config::or_default("SSE_STREAMS_PER_USER", 10)?,
            sse_streams_max: config::or_default("SSE_STREAMS_MAX", 1000)?,
            keep_videos: config::or_default("KEEP_VIDEOS", false)?,
            retention: positive(
                "RETENTION",
                config::duration_or("RETENTION", DEFAULT_RETENTION)?,
            )?,
            retention_sweep_interval: positive(
                "RETENTION_SWEEP_INTERVAL",
                config::duration_or("RETENTION_SWEEP_INTERVAL", Duration::from_secs(60))?,
            )?,
            rate_limits: RateLimitConfig {
                uploads_per_minute: config::or_default("UPLOADS_PER_MINUTE", 30)?,
                max_concurrent_uploads: config::or_default("MAX_CONCURRENT_UPLOADS", 4)?,
                logins_per_minute: config::or_default("LOGINS_PER_MINUTE", 30)?,
            },
            trust_forwarded_for: config::or_default("TRUST_FORWARDED_FOR", false)?,
            header_read_timeout: positive(
                "HEADER_READ_TIMEOUT",
                config::duration_or("HEADER_READ_TIMEOUT", DEFAULT_HEADER_READ_TIMEOUT)?,
            )?,
            body_idle_timeout: positive(
                "BODY_IDLE_TIMEOUT",
                config::duration_or("BODY_IDLE_TIMEOUT", DEFAULT_BODY_IDLE_TIMEOUT)?,
            )?,
            job_stall_timeout: positive(
                "JOB_STALL_TIMEOUT",
                config::duration_or("JOB_STALL_TIMEOUT", DEFAULT_JOB_STALL_TIMEOUT)?,
            )?,
            job_max_resubmissions: config::or_default("JOB_MAX_RESUBMISSIONS", 2)?,
            delivery_limit: config::delivery_limit()?,
            job_watch_interval: positive(
                "JOB_WATCH_INTERVAL",
                config::duration_or("JOB_WATCH_INTERVAL", Duration::from_secs(60))?,
            )?,
            orphan_grace: positive(
                "ORPHAN_GRACE",
                config::duration_or("ORPHAN_GRACE", Duration::from_secs(3600))?,
            )?,
            orphan_sweep_interval: positive(
                "ORPHAN_SWEEP_INTERVAL",
                config::duration_or("ORPHAN_SWEEP_INTERVAL", Duration::from_secs(300))?,
            )?,
            dead_letter_redrive: AutoRedrive {
                cool_down: positive(
                    "DEAD_LETTER_REDRIVE_AFTER",
                    config::duration_or("DEAD_LETTER_REDRIVE_AFTER", Duration::from_secs(3600))?,
                )?,
                max_redrives: config::or_default("DEAD_LETTER_MAX_REDRIVES", 3)?,
            },
            auth_breaker: BreakerConfig {
                failure_threshold: config::or_default("AUTH_BREAKER_FAILURES", 5)?,
                open_for: positive(
                    "AUTH_BREAKER_OPEN_FOR",
                    config::duration_or("AUTH_BREAKER_OPEN_FOR", Duration::from_secs(10))?,
                )?,
            },
        })
    }

    /// Settings for an integration test: port 0 on loopback and a private jobs database, so
    /// parallel tests never share an outbox or event store.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(auth_grpc_url: &str, mongodb_uri: &str, amqp_url: &str) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self {
            http_addr: "127.0.0.1:0".parse().expect("a valid address"),
            admin_addr: "127.0.0.1:0".parse().expect("a valid address"),
            auth_grpc_url: auth_grpc_url.to_owned(),
            auth_timeout: Duration::from_secs(3),
            mongodb_uri: mongodb_uri.into(),
            jobs_database: format!("jobs_test_{}", &unique[..12]),
            amqp_url: amqp_url.into(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            public_base_url: "http://mp3converter.test".into(),
            outbox_poll_interval: Duration::from_millis(200),
            keys_refresh_min_interval: Duration::from_secs(1),
            sse_poll_interval: Duration::from_millis(250),
            sse_streams_per_user: 10,
            sse_streams_max: 1000,
            keep_videos: false,
            retention: DEFAULT_RETENTION,
            retention_sweep_interval: Duration::from_millis(200),
            rate_limits: RateLimitConfig::default(),
            trust_forwarded_for: false,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            job_stall_timeout: DEFAULT_JOB_STALL_TIMEOUT,
            job_max_resubmissions: 2,
            delivery_limit: config::DEFAULT_DELIVERY_LIMIT,
            job_watch_interval: Duration::from_millis(200),
            // Tests share GridFS: a test's sweeper must never take another test's files (whose
            // jobs are in another jobs database) for orphans. Orphan tests use a private server.
            orphan_grace: Duration::from_secs(30 * 86_400),
            orphan_sweep_interval: Duration::from_millis(200),
            dead_letter_redrive: AutoRedrive {
                cool_down: Duration::from_secs(3600),
                max_redrives: 3,
            },
            auth_breaker: BreakerConfig::default(),
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
                "ADMIN_ADDR",
                "MAX_UPLOAD_BYTES",
                "PUBLIC_BASE_URL",
                "AUTH_TIMEOUT",
                "JOBS_DATABASE",
                "KEEP_VIDEOS",
                "RETENTION",
                "RETENTION_SWEEP_INTERVAL",
                "UPLOADS_PER_MINUTE",
                "MAX_CONCURRENT_UPLOADS",
                "LOGINS_PER_MINUTE",
                "TRUST_FORWARDED_FOR",
                "AUTH_BREAKER_FAILURES",
                "AUTH_BREAKER_OPEN_FOR",
                "HEADER_READ_TIMEOUT",
                "BODY_IDLE_TIMEOUT",
                "SSE_STREAMS_PER_USER",
                "SSE_STREAMS_MAX",
                "JOB_STALL_TIMEOUT",
                "JOB_MAX_RESUBMISSIONS",
                "JOB_WATCH_INTERVAL",
                "ORPHAN_GRACE",
                "ORPHAN_SWEEP_INTERVAL",
                "DEAD_LETTER_REDRIVE_AFTER",
                "DEAD_LETTER_MAX_REDRIVES",
            ] {
                std::env::remove_var(name);
            }
        }
        let settings = Settings::from_env().unwrap();
        assert_eq!(settings.http_addr.port(), 8080);
        assert_eq!(settings.admin_addr.port(), 8084);
        assert_eq!(settings.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
        assert_eq!(settings.public_base_url, "http://mp3converter.com");
        assert_eq!(settings.auth_timeout, Duration::from_secs(3));
        assert_eq!(settings.jobs_database, "jobs");
        assert!(!settings.keep_videos);
        assert_eq!(settings.retention, Duration::from_secs(7 * 86400));
        assert_eq!(settings.retention_sweep_interval, Duration::from_secs(60));
        assert_eq!(settings.rate_limits, RateLimitConfig::default());
        assert_eq!(settings.rate_limits.uploads_per_minute, 30);
        assert_eq!(settings.rate_limits.max_concurrent_uploads, 4);
        assert_eq!(settings.rate_limits.logins_per_minute, 30);
        assert!(!settings.trust_forwarded_for);
        assert_eq!(settings.auth_breaker, BreakerConfig::default());
        assert_eq!(settings.header_read_timeout, Duration::from_secs(10));
        assert_eq!(settings.body_idle_timeout, Duration::from_secs(30));
        assert_eq!(settings.sse_streams_per_user, 10);
        assert_eq!(settings.sse_streams_max, 1000);
        assert_eq!(settings.job_stall_timeout, Duration::from_secs(1800));
        assert_eq!(settings.job_max_resubmissions, 2);
        assert_eq!(settings.job_watch_interval, Duration::from_secs(60));
        assert_eq!(settings.orphan_grace, Duration::from_secs(3600));
        assert_eq!(settings.orphan_sweep_interval, Duration::from_secs(300));
        assert_eq!(
            settings.dead_letter_redrive.cool_down,
            Duration::from_secs(3600)
        );
        assert_eq!(settings.dead_letter_redrive.max_redrives, 3);

        unsafe {
            std::env::set_var("RETENTION", "2s");
            std::env::set_var("KEEP_VIDEOS", "true");
            std::env::set_var("UPLOADS_PER_MINUTE", "0");
            std::env::set_var("TRUST_FORWARDED_FOR", "true");
        }
        let settings = Settings::from_env().unwrap();
        assert_eq!(settings.retention, Duration::from_secs(2));
        assert!(settings.keep_videos);
        assert_eq!(settings.rate_limits.uploads_per_minute, 0);
        assert!(settings.trust_forwarded_for);
        for (name, bad) in [
            ("RETENTION", "0s"),
            ("RETENTION", "a week"),
            ("KEEP_VIDEOS", "maybe"),
            ("LOGINS_PER_MINUTE", "-1"),
            ("HEADER_READ_TIMEOUT", "0s"),
            ("BODY_IDLE_TIMEOUT", "soon"),
            ("JOB_STALL_TIMEOUT", "0s"),
            ("ORPHAN_GRACE", "an hour"),
            ("DEAD_LETTER_MAX_REDRIVES", "-1"),
            ("ADMIN_ADDR", "0.0.0.0:8080"),
        ] {
            let previous = std::env::var(name).ok();
            unsafe { std::env::set_var(name, bad) };
            let line = Settings::from_env().unwrap_err().to_string();
            assert!(line.contains(name), "{line}");
            unsafe {
                match previous {
                    Some(value) => std::env::set_var(name, value),
                    None => std::env::remove_var(name),
                }
            }
        }
        unsafe {
            for name in [
                "RETENTION",
                "KEEP_VIDEOS",
                "UPLOADS_PER_MINUTE",
                "TRUST_FORWARDED_FOR",
            ] {
                std::env::remove_var(name);
            }
        }

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
