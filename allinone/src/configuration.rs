//! The all-in-one settings: where the data lives, where the API listens, which backing services
//! are real, plus each service's own settings (read by the service itself, so its extras such as
//! `MAX_UPLOAD_BYTES`, `TOKEN_TTL`, `CONVERTER_CONCURRENCY` or `MAIL_FROM` apply here too).
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `DATA_DIR` | `./data` | users (SQLite), files, events, outbox, sent log and mails |
//! | `HTTP_ADDR` | `127.0.0.1:8080` | the REST API |
//! | `ADMIN_ADDR` | `127.0.0.1:8084` | internal: `/healthz`, `/readyz`, `/metrics` |
//! | `PUBLIC_BASE_URL` | `http://` + `HTTP_ADDR` | prefix of the links in responses and mails |
//! | `DATABASE_URL` | `sqlite://$DATA_DIR/auth.db?mode=rwc` | `mysql://…`: users in MySQL/MariaDB |
//! | `MONGODB_URI` | unset | set: files in GridFS, events, outbox and sent log in MongoDB |
//! | `AMQP_URL` | unset | set: events through RabbitMQ instead of in-process |
//! | `SMTP_URL` | unset | set: mails sent over SMTP instead of written to `$DATA_DIR/mail` |

use notification::configuration::{PublicBaseUrl, SmtpUrl};
use platform::SecretUrl;
use platform::config::{self, ConfigError};
use platform::rabbit::Topology;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_HTTP_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8080);
/// Health, readiness and metrics: never on the API's listener.
pub const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8084);

/// Where each part of the state lives under the data directory.
pub mod layout {
    /// The SQLite database of accounts and signing keys.
    pub const AUTH_DATABASE: &str = auth::backends::EMBEDDED_DATABASE;
    /// Uploaded videos and MP3s (`files/videos`, `files/mp3s`).
    pub const FILES: &str = "files";
    /// The event log and the outbox.
    pub const EVENTS: &str = "events";
    /// The notification sent log.
    pub const NOTIFICATION: &str = "notification";
    /// Mails, one `.eml` file each.
    pub const MAIL: &str = "mail";
    /// Held while a process uses the directory.
    pub const LOCK: &str = ".lock";
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATA_DIR`.
    pub data_dir: PathBuf,
    /// `HTTP_ADDR`: the gateway's REST API. Port 0 picks a free port (tests).
    pub http_addr: SocketAddr,
    /// `ADMIN_ADDR`: the internal listener of `/healthz`, `/readyz` and `/metrics`. Port 0 picks
    /// a free port (tests).
    pub admin_addr: SocketAddr,
    /// `PUBLIC_BASE_URL`; `None`: derived from the address the API listens on.
    pub public_base_url: Option<PublicBaseUrl>,
    /// `DATABASE_URL` when it names a real database; `None`: SQLite in the data directory.
    pub database_url: Option<SecretUrl>,
    /// `MONGODB_URI`; `None`: files, events and the sent log on the local disk.
    pub mongodb_uri: Option<SecretUrl>,
    /// `AMQP_URL`; `None`: the in-process bus.
    pub amqp_url: Option<SecretUrl>,
    /// The RabbitMQ names (tests isolate theirs); production names by default.
    pub topology: Option<Topology>,
    /// `SMTP_URL`; `None`: mails written into the data directory.
    pub smtp_url: Option<SmtpUrl>,
    /// Tests only: `false` leaves submitted jobs unconverted (to stop with work pending).
    pub start_converter: bool,
    /// Tests only: `false` leaves finished jobs unannounced.
    pub start_notification: bool,
    /// The services' own settings; their listeners, URLs and links are set by the composition.
    pub auth: auth::Settings,
    pub gateway: gateway::Settings,
    pub converter: converter::worker::Settings,
    pub notification: notification::Settings,
}

impl Settings {
    /// Reads every variable; the first malformed one fails with one line naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        let data_dir = PathBuf::from(config::string_or("DATA_DIR", DEFAULT_DATA_DIR));
        let http_addr = config::or_default("HTTP_ADDR", DEFAULT_HTTP_ADDR)?;
        let admin_addr = config::or_default("ADMIN_ADDR", DEFAULT_ADMIN_ADDR)?;
        let database_url = config::raw("DATABASE_URL").map(SecretUrl::from);
        let auth = auth::Settings::from_env_with_database(
            auth::backends::embedded_url(&data_dir).expose(),
        )?;
        let notification = notification::Settings::from_env()?;
        Ok(Self {
            public_base_url: config::optional("PUBLIC_BASE_URL")?,
            database_url,
            mongodb_uri: config::raw("MONGODB_URI").map(SecretUrl::from),
            amqp_url: config::raw("AMQP_URL").map(SecretUrl::from),
            topology: None,
            // Parsed (and reported without its password) by the notification service.
            smtp_url: config::raw("SMTP_URL").map(|_| notification.smtp_url.clone()),
            start_converter: true,
            start_notification: true,
            auth,
            gateway: gateway::Settings::from_env()?,
            converter: converter::worker::Settings::from_env()?,
            notification,
            data_dir,
            http_addr,
            admin_addr,
        })
    }

    /// Every backend embedded under `data_dir`, the API on a free loopback port, short retry
    /// delays and cheap password hashing. Tests switch backends to real ones by setting fields.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self {
            http_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            admin_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            public_base_url: None,
            database_url: None,
            mongodb_uri: None,
            amqp_url: None,
            topology: None,
            smtp_url: None,
            start_converter: true,
            start_notification: true,
            auth: auth::Settings::for_tests(auth::backends::embedded_url(&data_dir).expose()),
            gateway: gateway::Settings::for_tests(
                "http://unused",
                "mongodb://unused",
                "amqp://unused",
            ),
            converter: converter::worker::Settings::for_tests("amqp://unused", "mongodb://unused"),
            notification: notification::Settings {
                mongodb_database: format!("notification_test_{}", &unique[..12]),
                retry_delays: vec![Duration::from_millis(200), Duration::from_millis(500)],
                smtp_timeout: Duration::from_secs(10),
                claim_timeout: Duration::from_secs(30),
                ..notification::Settings::default()
            },
            data_dir,
        }
    }

    /// `DATABASE_URL` as auth gets it: the real one when set, else the SQLite file.
    pub fn auth_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => auth::backends::embedded_url(&self.data_dir)
                .expose()
                .to_owned(),
        }
    }
}

/// The base of links when `PUBLIC_BASE_URL` is unset: the API's own address, with `localhost`
/// for an address listening on every interface.
pub fn default_public_base_url(address: SocketAddr) -> PublicBaseUrl {
    let text = if address.ip().is_unspecified() {
        format!("http://localhost:{}", address.port())
    } else {
        format!("http://{address}")
    };
    text.parse()
        .expect("an http URL of a socket address is a valid public base URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_default_to_the_listening_address() {
        assert_eq!(
            default_public_base_url("127.0.0.1:8080".parse().unwrap()).as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            default_public_base_url("0.0.0.0:9000".parse().unwrap()).as_str(),
            "http://localhost:9000"
        );
    }
}
