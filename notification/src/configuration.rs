//! Settings from the environment, parsed into types that cannot hold a bad value.
//!
//! | Variable                     | Default                                      |
//! |------------------------------|----------------------------------------------|
//! | `AMQP_URL`                   | `amqp://guest:guest@127.0.0.1:5672/%2f`      |
//! | `MONGODB_URI`                | `mongodb://127.0.0.1:27017`                  |
//! | `SMTP_URL`                   | `smtp://127.0.0.1:1025`                      |
//! | `MAIL_FROM`                  | `MP3 Converter <no-reply@mp3converter.com>`  |
//! | `PUBLIC_BASE_URL`            | `http://mp3converter.com`                    |
//! | `HTTP_ADDR`                  | `0.0.0.0:8083`                               |
//! | `NOTIFICATION_RETRY_DELAYS`  | `1s,5s,30s,2m`                               |
//! | `NOTIFICATION_PREFETCH`      | `4`                                          |
//! | `SMTP_TIMEOUT`               | `60s`                                        |
//! | `NOTIFICATION_CLAIM_TIMEOUT` | `5m` (must exceed `SMTP_TIMEOUT`)            |

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use platform::ConfigError;
use platform::SecretUrl;
use platform::config::{self, defaults, redact_url};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub const DEFAULT_MAIL_FROM: &str = "MP3 Converter <no-reply@mp3converter.com>";
pub const DEFAULT_PUBLIC_BASE_URL: &str = "http://mp3converter.com";
pub const DEFAULT_RETRY_DELAYS: &str = "1s,5s,30s,2m";
/// The database holding the sent log; its collection is [`crate::sent_log::SENT_COLLECTION`].
pub const DEFAULT_DATABASE: &str = "notification";

#[derive(Debug, Clone)]
pub struct Settings {
    pub amqp_url: SecretUrl,
    pub mongodb_uri: SecretUrl,
    /// Database of the sent log (`notification`; tests may pick their own).
    pub mongodb_database: String,
    pub smtp_url: SmtpUrl,
    pub mail_from: Mailbox,
    pub public_base_url: PublicBaseUrl,
    pub http_addr: SocketAddr,
    /// Delays before each redelivery after a transient failure (attempts = len + 1).
    pub retry_delays: Vec<Duration>,
    /// Deliveries handled at once.
    pub prefetch: u16,
    /// Deadline of one SMTP conversation (and of each command in it).
    pub smtp_timeout: Duration,
    /// A claim older than this is presumed orphaned by a crashed worker and taken over.
    pub claim_timeout: Duration,
    /// `DELIVERY_LIMIT` (default 5): deaths of a consumer holding one event that the broker lets
    /// pass; past them the mail fails with a reason.
    pub delivery_limit: u32,
}

impl Default for Settings {
    /// The developer-machine defaults listed in the module documentation.
    fn default() -> Self {
        Self {
            amqp_url: defaults::AMQP_URL.into(),
            mongodb_uri: defaults::MONGODB_URI.into(),
            mongodb_database: DEFAULT_DATABASE.to_owned(),
            smtp_url: defaults::SMTP_URL
                .parse()
                .expect("the default SMTP URL is valid"),
            mail_from: DEFAULT_MAIL_FROM
                .parse()
                .expect("the default sender is valid"),
            public_base_url: DEFAULT_PUBLIC_BASE_URL
                .parse()
                .expect("the default public URL is valid"),
            http_addr: defaults::NOTIFICATION_HTTP_ADDR
                .parse()
                .expect("the default address is valid"),
            retry_delays: config::parse_duration_list(DEFAULT_RETRY_DELAYS)
                .expect("the default delays are valid"),
            prefetch: 4,
            smtp_timeout: Duration::from_secs(60),
            claim_timeout: Duration::from_secs(5 * 60),
            delivery_limit: config::DEFAULT_DELIVERY_LIMIT,
        }
    }
}

impl Settings {
    /// Reads every variable; the first malformed one fails with one line naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        let fallback = Self::default();
        let smtp_timeout = config::duration_or("SMTP_TIMEOUT", fallback.smtp_timeout)?;
        let claim_timeout =
            config::duration_or("NOTIFICATION_CLAIM_TIMEOUT", fallback.claim_timeout)?;
        if claim_timeout <= smtp_timeout {
            let value = config::raw("NOTIFICATION_CLAIM_TIMEOUT").unwrap_or_default();
            return Err(ConfigError::new(
                "NOTIFICATION_CLAIM_TIMEOUT",
                &value,
                format!(
                    "must be longer than SMTP_TIMEOUT ({smtp_timeout:?}), or a send still in progress could be taken over"
                ),
            ));
        }
        let retry_delays =
            config::duration_list_or("NOTIFICATION_RETRY_DELAYS", &fallback.retry_delays)?;
        Ok(Self {
            amqp_url: config::secret_url_or("AMQP_URL", defaults::AMQP_URL),
            mongodb_uri: config::secret_url_or("MONGODB_URI", defaults::MONGODB_URI),
            mongodb_database: fallback.mongodb_database,
            smtp_url: smtp_url_from_env()?,
            mail_from: config::or_default("MAIL_FROM", fallback.mail_from)?,
            public_base_url: config::or_default("PUBLIC_BASE_URL", fallback.public_base_url)?,
            http_addr: config::or_default("HTTP_ADDR", fallback.http_addr)?,
            retry_delays,
            delivery_limit: config::delivery_limit()?,
            prefetch: match config::or_default("NOTIFICATION_PREFETCH", fallback.prefetch)? {
                0 => {
                    return Err(ConfigError::new(
                        "NOTIFICATION_PREFETCH",
                        "0",
                        "must be at least 1",
                    ));
                }
                n => n,
            },
            smtp_timeout,
            claim_timeout,
        })
    }
}

/// `SMTP_URL`, reported redacted when malformed: the raw value may hold a password.
fn smtp_url_from_env() -> Result<SmtpUrl, ConfigError> {
    match config::raw("SMTP_URL") {
        None => Ok(Settings::default().smtp_url),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|reason| ConfigError::new("SMTP_URL", &redact_url(&value), reason)),
    }
}

/// An SMTP server URL as lettre understands it: `smtp://host:1025` (plain, no auth),
/// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465` (TLS).
///
/// `Display` and `Debug` redact the password so the value can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    /// The URL with its password, for building the transport only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for SmtpUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        // lettre's own parser decides what is valid, so what we accept is what it can use.
        match AsyncSmtpTransport::<Tokio1Executor>::from_url(text) {
            Ok(_) => Ok(Self(text.to_owned())),
            Err(e) => Err(format!(
                "expected smtp://[user:pass@]host[:port][?tls=required|opportunistic] or smtps://...: {e}"
            )),
        }
    }
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({})", redact_url(&self.0))
    }
}

/// Base of the links in mails, e.g. `https://mp3converter.com` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBaseUrl(String);

impl PublicBaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PublicBaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().trim_end_matches('/');
        let host = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or("expected an http:// or https:// URL")?;
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        // It is pasted into a shell command and an HTML attribute: refuse anything that would
        // need quoting there.
        if let Some(bad) = text
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "\"'`$\\<>{}|^".contains(*c))
        {
            return Err(format!("the URL must not contain {bad:?}"));
        }
        if text.contains(['?', '#']) {
            return Err("the URL must not have a query or fragment".into());
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for PublicBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// `from_env` tests change process-wide variables: one at a time.
    static ENV: Mutex<()> = Mutex::new(());

    const VARIABLES: [&str; 11] = [
        "AMQP_URL",
        "MONGODB_URI",
        "SMTP_URL",
        "MAIL_FROM",
        "PUBLIC_BASE_URL",
        "HTTP_ADDR",
        "NOTIFICATION_RETRY_DELAYS",
        "NOTIFICATION_PREFETCH",
        "SMTP_TIMEOUT",
        "NOTIFICATION_CLAIM_TIMEOUT",
        "NOTIFICATION_UNUSED",
    ];

    fn with_env<T>(pairs: &[(&str, &str)], body: impl FnOnce() -> T) -> T {
        let _guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the lock serialises every test of this module touching these variables, and
        // nothing else in this crate's unit tests reads them.
        unsafe {
            for name in VARIABLES {
                std::env::remove_var(name);
            }
            for (name, value) in pairs {
                std::env::set_var(name, value);
            }
        }
        let result = body();
        unsafe {
            for (name, _) in pairs {
                std::env::remove_var(name);
            }
        }
        result
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = with_env(&[], Settings::from_env).unwrap();
        assert_eq!(settings.http_addr.to_string(), "0.0.0.0:8083");
        assert_eq!(settings.public_base_url.as_str(), "http://mp3converter.com");
        assert_eq!(settings.mail_from.to_string(), DEFAULT_MAIL_FROM);
        assert_eq!(settings.smtp_url.expose(), "smtp://127.0.0.1:1025");
        assert_eq!(
            settings.retry_delays,
            [1, 5, 30, 120].map(Duration::from_secs).to_vec()
        );
        assert_eq!(settings.mongodb_database, "notification");
    }

    #[test]
    fn variables_override_defaults() {
        let settings = with_env(
            &[
                (
                    "SMTP_URL",
                    "smtp://user:pw@mail.example.com:587?tls=required",
                ),
                ("MAIL_FROM", "Team <team@example.com>"),
                ("PUBLIC_BASE_URL", "https://mp3.example.com/"),
                ("HTTP_ADDR", "127.0.0.1:0"),
                ("NOTIFICATION_RETRY_DELAYS", "100ms, 2s"),
                ("NOTIFICATION_PREFETCH", "8"),
            ],
            Settings::from_env,
        )
        .unwrap();
        assert_eq!(settings.public_base_url.as_str(), "https://mp3.example.com");
        assert_eq!(settings.mail_from.email.to_string(), "team@example.com");
        assert_eq!(
            settings.retry_delays,
            vec![Duration::from_millis(100), Duration::from_secs(2)]
        );
        assert_eq!(settings.prefetch, 8);
    }

    #[test]
    fn malformed_values_fail_in_one_line_naming_the_variable() {
        for (name, value) in [
            ("HTTP_ADDR", "nope"),
            ("MAIL_FROM", "not an address"),
            ("PUBLIC_BASE_URL", "ftp://x"),
            ("NOTIFICATION_RETRY_DELAYS", "1s,,5s"),
            ("NOTIFICATION_RETRY_DELAYS", "1 fortnight"),
            ("NOTIFICATION_PREFETCH", "0"),
            ("SMTP_URL", "imap://mail.example.com"),
            ("NOTIFICATION_CLAIM_TIMEOUT", "10s"),
        ] {
            let err = with_env(&[(name, value)], Settings::from_env).unwrap_err();
            let line = err.to_string();
            assert!(
                line.starts_with(&format!("invalid value for {name}")),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn a_malformed_smtp_url_is_reported_without_its_password() {
        let err = with_env(
            &[("SMTP_URL", "smtpx://user:hunter2@mail.example.com:587")],
            Settings::from_env,
        )
        .unwrap_err();
        let line = err.to_string();
        assert!(line.contains("SMTP_URL"), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
    }

    #[test]
    fn smtp_urls_of_every_kind_parse_and_never_print_the_password() {
        for url in [
            "smtp://127.0.0.1:1025",
            "smtp://user:s3cret@mail.example.com:587?tls=required",
            "smtps://user:s3cret@mail.example.com",
        ] {
            let parsed: SmtpUrl = url.parse().unwrap();
            assert_eq!(parsed.expose(), url);
            assert!(!parsed.to_string().contains("s3cret"));
            assert!(!format!("{parsed:?}").contains("s3cret"));
            let settings = Settings {
                smtp_url: parsed,
                ..Settings::default()
            };
            assert!(!format!("{settings:?}").contains("s3cret"));
        }
    }

    #[test]
    fn redaction_keeps_everything_but_the_password() {
        assert_eq!(
            redact_url("smtp://user:p@ss@mail.example.com:587?tls=required"),
            "smtp://user:***@mail.example.com:587?tls=required"
        );
        assert_eq!(redact_url("smtp://127.0.0.1:1025"), "smtp://127.0.0.1:1025");
        assert_eq!(redact_url("smtps://apikey@host"), "smtps://apikey@host");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn public_base_url_refuses_what_cannot_be_pasted_safely() {
        assert!(
            "https://mp3.example.com:8443/app"
                .parse::<PublicBaseUrl>()
                .is_ok()
        );
        assert!("mp3.example.com".parse::<PublicBaseUrl>().is_err());
        assert!("https://".parse::<PublicBaseUrl>().is_err());
        assert!("https://x.com/$(id)".parse::<PublicBaseUrl>().is_err());
        assert!("https://x.com/a b".parse::<PublicBaseUrl>().is_err());
        assert!("https://x.com/?a=1".parse::<PublicBaseUrl>().is_err());
    }
}
