//! `Settings` of the auth service, read from the environment.
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `mysql://root@127.0.0.1:3306/auth` | `mysql://` / `mariadb://`: MySQL 8 / MariaDB 10.11 database (created if missing and allowed); `sqlite://path`: a SQLite file (created if missing) |
//! | `GRPC_ADDR` | `0.0.0.0:50051` | gRPC listener (`auth.v1.Auth`, health, reflection) |
//! | `HTTP_ADDR` | `0.0.0.0:8081` | `/healthz` and `/readyz` |
//! | `TOKEN_TTL` | `24h` | lifetime of issued tokens (`30m`, `24h`, `7d`, ...) |
//! | `SIGNING_KEY_PEM` | unset | Ed25519 private key, PKCS#8 PEM; unset: a key generated once and kept in the database |
//! | `LOGIN_MAX_FAILURES_PER_EMAIL` | `5` | failed logins per email per window before refusing |
//! | `LOGIN_MAX_FAILURES_PER_ADDRESS` | `20` | failed logins per client address per window |
//! | `LOGIN_FAILURE_WINDOW` | `1m` | the sliding window of those limits |
//! | `DEMO_USER_EMAIL`, `DEMO_USER_PASSWORD` | unset | both set: this account is created at start if absent |

use crate::domain::{EmailAddress, Password};
use crate::keys::SigningKey;
use crate::login_limiter::LoginLimits;
use crate::passwords::HashingParams;
use crate::store::DatabaseKind;
use contracts::claims::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use platform::ConfigError;
use platform::SecretUrl;
use platform::config::{self, defaults, redact_url};
use secrecy::SecretString;
use std::net::SocketAddr;
use std::time::Duration;

const REDACTED: &str = "[REDACTED]";

#[derive(Clone)]
pub struct Settings {
    /// `DATABASE_URL`: MySQL/MariaDB or SQLite, by its scheme.
    pub database_url: SecretUrl,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub token_ttl: Duration,
    /// `iss` of issued tokens; only tokens with this issuer validate.
    pub issuer: String,
    /// `aud` of issued tokens; only tokens for this audience validate.
    pub audience: String,
    /// The operator's key; `None` means a key generated and stored in the database.
    pub signing_key: Option<SigningKey>,
    pub login_limits: LoginLimits,
    /// Argon2id costs of new hashes. Not configurable by environment: production always gets the
    /// OWASP parameters; only test suites lower them.
    pub password_hashing: HashingParams,
    pub demo_user: Option<DemoUser>,
}

/// An account created at start-up if absent (for demos; off unless both variables are set).
#[derive(Clone)]
pub struct DemoUser {
    pub email: EmailAddress,
    pub password: SecretString,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with_database(defaults::DATABASE_URL)
    }

    /// As [`Settings::from_env`], with another database when `DATABASE_URL` is unset: the
    /// all-in-one mode passes a SQLite file (`sqlite://data/auth.db`) and switches to MySQL only
    /// when the variable names one.
    pub fn from_env_with_database(default_database_url: &str) -> Result<Self, ConfigError> {
        let database_url = config::string_or("DATABASE_URL", default_database_url);
        let parsed = match DatabaseKind::of(&database_url) {
            Ok(DatabaseKind::MySql) => database_url
                .parse::<sqlx::mysql::MySqlConnectOptions>()
                .map(drop),
            Ok(DatabaseKind::Sqlite) => database_url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .map(drop),
            Err(unsupported) => {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    &redact_url(&database_url),
                    unsupported,
                ));
            }
        };
        if let Err(e) = parsed {
            return Err(ConfigError::new(
                "DATABASE_URL",
                &redact_url(&database_url),
                e,
            ));
        }
        let token_ttl = config::duration_or("TOKEN_TTL", Duration::from_secs(24 * 3600))?;
        at_least_one_second("TOKEN_TTL", token_ttl)?;
        let window = config::duration_or("LOGIN_FAILURE_WINDOW", LoginLimits::default().window)?;
        at_least_one_second("LOGIN_FAILURE_WINDOW", window)?;
        let defaults_limits = LoginLimits::default();
        let login_limits = LoginLimits {
            max_failures_per_email: positive(
                "LOGIN_MAX_FAILURES_PER_EMAIL",
                defaults_limits.max_failures_per_email,
            )?,
            max_failures_per_address: positive(
                "LOGIN_MAX_FAILURES_PER_ADDRESS",
                defaults_limits.max_failures_per_address,
            )?,
            window,
        };
        let signing_key = config::raw("SIGNING_KEY_PEM")
            .map(|pem| {
                SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|e| ConfigError::new("SIGNING_KEY_PEM", REDACTED, e))
            })
            .transpose()?;
        Ok(Self {
            database_url: database_url.into(),
            grpc_addr: config::or_default("GRPC_ADDR", parse_addr(defaults::AUTH_GRPC_ADDR))?,
            http_addr: config::or_default("HTTP_ADDR", parse_addr(defaults::AUTH_HTTP_ADDR))?,
            token_ttl,
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            signing_key,
            login_limits,
            password_hashing: HashingParams::default(),
            demo_user: demo_user_from_env()?,
        })
    }

    /// Settings for a test: the given database, both listeners on 127.0.0.1 with an ephemeral
    /// port, and cheap (but still argon2id) password hashing.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(database_url: &str) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            database_url: database_url.into(),
            grpc_addr: loopback,
            http_addr: loopback,
            token_ttl: Duration::from_secs(24 * 3600),
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            signing_key: None,
            login_limits: LoginLimits::default(),
            password_hashing: HashingParams::for_tests(),
            demo_user: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &self.database_url)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("token_ttl", &self.token_ttl)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("signing_key", &self.signing_key.as_ref().map(|k| &k.kid))
            .field("login_limits", &self.login_limits)
            .field("password_hashing", &self.password_hashing)
            .field(
                "demo_user",
                &self.demo_user.as_ref().map(|u| u.email.as_str()),
            )
            .finish()
    }
}

fn demo_user_from_env() -> Result<Option<DemoUser>, ConfigError> {
    match (
        config::raw("DEMO_USER_EMAIL"),
        config::raw("DEMO_USER_PASSWORD"),
    ) {
        (None, None) => Ok(None),
        (Some(email), None) => Err(ConfigError::new(
            "DEMO_USER_PASSWORD",
            "",
            format!("must be set when DEMO_USER_EMAIL is ({email})"),
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "DEMO_USER_EMAIL",
            "",
            "must be set when DEMO_USER_PASSWORD is",
        )),
        (Some(email), Some(password)) => {
            let parsed = EmailAddress::parse(&email)
                .map_err(|e| ConfigError::new("DEMO_USER_EMAIL", &email, e))?;
            let password = SecretString::from(password);
            Password::parse(password.clone())
                .map_err(|e| ConfigError::new("DEMO_USER_PASSWORD", REDACTED, e))?;
            Ok(Some(DemoUser {
                email: parsed,
                password,
            }))
        }
    }
}

fn parse_addr(text: &str) -> SocketAddr {
    text.parse().expect("default addresses are valid")
}

fn positive(name: &str, default: u32) -> Result<u32, ConfigError> {
    let value: u32 = config::or_default(name, default)?;
    if value == 0 {
        return Err(ConfigError::new(name, "0", "must be at least 1"));
    }
    Ok(value)
}

fn at_least_one_second(name: &str, value: Duration) -> Result<(), ConfigError> {
    if value < Duration::from_secs(1) {
        return Err(ConfigError::new(
            name,
            &format!("{value:?}"),
            "must be at least 1s",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("mysql://auth:s3cret@db:3306/auth"),
            "mysql://auth:***@db:3306/auth"
        );
        assert_eq!(redact_url("mysql://root@db/auth"), "mysql://root@db/auth");
        assert_eq!(redact_url("mysql://db/auth"), "mysql://db/auth");
    }

    #[test]
    fn debug_output_holds_no_secrets() {
        let mut settings = Settings::for_tests("mysql://auth:s3cret@db/auth");
        settings.signing_key = Some(SigningKey::generate());
        settings.demo_user = Some(DemoUser {
            email: EmailAddress::parse("demo@example.com").unwrap(),
            password: SecretString::from("demo-password-123"),
        });
        let text = format!("{settings:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("demo-password-123"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }

    /// One test for every variable, run in sequence: the environment is process-wide.
    #[test]
    fn from_env_reads_defaults_and_names_malformed_variables() {
        let vars = [
            "DATABASE_URL",
            "GRPC_ADDR",
            "HTTP_ADDR",
            "TOKEN_TTL",
            "SIGNING_KEY_PEM",
            "LOGIN_MAX_FAILURES_PER_EMAIL",
            "LOGIN_MAX_FAILURES_PER_ADDRESS",
            "LOGIN_FAILURE_WINDOW",
            "DEMO_USER_EMAIL",
            "DEMO_USER_PASSWORD",
        ];
        // SAFETY: no other test in this crate reads or writes these variables.
        let set = |name: &str, value: &str| unsafe { std::env::set_var(name, value) };
        let clear = || {
            vars.iter()
                .for_each(|name| unsafe { std::env::remove_var(name) })
        };
        let error_for = |name: &str, value: &str| {
            clear();
            set(name, value);
            let line = Settings::from_env().unwrap_err().to_string();
            assert!(line.contains(name), "{line}");
            assert!(!line.contains('\n'), "{line}");
            line
        };

        clear();
        let settings = Settings::from_env().unwrap();
        assert_eq!(settings.database_url.expose(), defaults::DATABASE_URL);
        assert_eq!(settings.grpc_addr.to_string(), "0.0.0.0:50051");
        assert_eq!(settings.http_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(settings.token_ttl, Duration::from_secs(86400));
        assert_eq!(settings.login_limits, LoginLimits::default());
        assert_eq!(settings.password_hashing, HashingParams::default());
        assert!(settings.signing_key.is_none() && settings.demo_user.is_none());

        // The all-in-one default applies only while DATABASE_URL is unset.
        let settings = Settings::from_env_with_database("sqlite://data/auth.db").unwrap();
        assert_eq!(settings.database_url.expose(), "sqlite://data/auth.db");
        set("DATABASE_URL", "sqlite:///var/lib/auth/auth.db?mode=rwc");
        let settings = Settings::from_env_with_database("sqlite://data/auth.db").unwrap();
        assert_eq!(
            settings.database_url.expose(),
            "sqlite:///var/lib/auth/auth.db?mode=rwc"
        );
        set("DATABASE_URL", "mariadb://auth:pw@db:3306/auth");
        Settings::from_env().unwrap();
        clear();

        set("TOKEN_TTL", "30m");
        set("LOGIN_MAX_FAILURES_PER_EMAIL", "3");
        set("LOGIN_FAILURE_WINDOW", "5m");
        set("DEMO_USER_EMAIL", "Demo@Example.com");
        set("DEMO_USER_PASSWORD", "demo-password");
        let settings = Settings::from_env().unwrap();
        assert_eq!(settings.token_ttl, Duration::from_secs(1800));
        assert_eq!(settings.login_limits.max_failures_per_email, 3);
        assert_eq!(settings.login_limits.window, Duration::from_secs(300));
        assert_eq!(
            settings.demo_user.unwrap().email.as_str(),
            "demo@example.com"
        );

        error_for("TOKEN_TTL", "forever");
        error_for("TOKEN_TTL", "0s");
        error_for("GRPC_ADDR", "nope");
        error_for("LOGIN_MAX_FAILURES_PER_ADDRESS", "0");
        let line = error_for("DATABASE_URL", "postgres://x:secret@db/x");
        assert!(!line.contains("secret"), "{line}");
        error_for("DATABASE_URL", "sqlite://auth.db?mode=sideways");
        let line = error_for(
            "SIGNING_KEY_PEM",
            "-----BEGIN PRIVATE KEY-----\nsecret-bits",
        );
        assert!(!line.contains("secret-bits"), "{line}");
        let line = error_for("DEMO_USER_EMAIL", "demo@example.com");
        assert!(line.contains("DEMO_USER_PASSWORD"), "{line}");
        clear();
        set("DEMO_USER_EMAIL", "demo@example.com");
        set("DEMO_USER_PASSWORD", "short");
        let line = Settings::from_env().unwrap_err().to_string();
        assert!(
            line.contains("DEMO_USER_PASSWORD") && !line.contains("short\""),
            "{line}"
        );

        clear();
        let pem = SigningKey::generate()
            .private_key_pem()
            .expose_secret()
            .to_owned();
        set("SIGNING_KEY_PEM", &pem);
        let settings = Settings::from_env().unwrap();
        assert_eq!(
            settings.signing_key.unwrap().kid,
            SigningKey::from_pkcs8_pem(&pem).unwrap().kid
        );
        clear();
    }

    #[test]
    fn test_settings_bind_ephemeral_loopback_ports() {
        let settings = Settings::for_tests("mysql://root@127.0.0.1/x");
        assert_eq!(settings.grpc_addr.to_string(), "127.0.0.1:0");
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:0");
    }
}
