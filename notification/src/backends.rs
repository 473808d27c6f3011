//! The notification service's backing services, chosen in one place: the event bus, the sent log
//! (exactly-once record) and the mailer. [`Backends::connect`] is production (RabbitMQ, MongoDB,
//! SMTP); [`Backends::embedded`] keeps the sent log and the mails (`.eml` files) in directories,
//! on the bus the process's services share (the all-in-one mode).

use crate::configuration::Settings;
use crate::local_mailer::FileMailer;
use crate::local_sent_log::LocalSentLog;
use crate::mailer::{Mailer, SmtpMailer};
use crate::sent_log::{MongoSentLog, SentLog};
use anyhow::Context;
use platform::bus::EventBus;
use platform::rabbit::RabbitBus;
use std::path::Path;
use std::sync::Arc;

pub struct Backends {
    pub bus: Arc<dyn EventBus>,
    pub sent_log: Arc<dyn SentLog>,
    pub mailer: Arc<dyn Mailer>,
    /// The MongoDB client this value opened and so closes ([`Backends::close`]).
    owned_mongo: Option<mongodb::Client>,
}

impl Backends {
    /// RabbitMQ at `AMQP_URL`, the sent log in MongoDB at `MONGODB_URI`, SMTP at `SMTP_URL`.
    /// Connects lazily: an absent service shows in `/readyz` and is retried.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let mongo = platform::mongo::connect(&settings.mongodb_uri, "notification")
            .await
            .context("invalid MONGODB_URI")?;
        let bus = Arc::new(RabbitBus::new(&settings.amqp_url));
        let mut backends = Self::on_mongo(settings, &mongo, bus)?;
        backends.owned_mongo = Some(mongo);
        Ok(backends)
    }

    /// The sent log on a MongoDB client the caller owns, SMTP, and `bus`.
    pub fn on_mongo(
        settings: &Settings,
        mongo: &mongodb::Client,
        bus: Arc<dyn EventBus>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            bus,
            sent_log: Arc::new(MongoSentLog::new(
                mongo,
                &settings.mongodb_database,
                settings.claim_timeout,
            )),
            mailer: smtp(settings)?,
            owned_mongo: None,
        })
    }

    /// The sent log in `sent_log_dir` and each mail as an `.eml` file in `mail_dir`, on `bus`.
    pub async fn embedded(
        sent_log_dir: &Path,
        mail_dir: &Path,
        settings: &Settings,
        bus: Arc<dyn EventBus>,
    ) -> anyhow::Result<Self> {
        let sent_log = LocalSentLog::open(sent_log_dir, settings.claim_timeout)
            .await
            .with_context(|| format!("cannot open the sent log in {}", sent_log_dir.display()))?;
        let mailer = FileMailer::new(mail_dir)
            .await
            .with_context(|| format!("cannot create {}", mail_dir.display()))?;
        Ok(Self {
            bus,
            sent_log: Arc::new(sent_log),
            mailer: Arc::new(mailer),
            owned_mongo: None,
        })
    }

    /// Closes what this value opened, after the service's last operation.
    pub async fn close(self) {
        if let Some(mongo) = self.owned_mongo {
            mongo.shutdown().await;
        }
    }
}

/// The SMTP mailer of `SMTP_URL`.
pub fn smtp(settings: &Settings) -> anyhow::Result<Arc<dyn Mailer>> {
    let mailer =
        SmtpMailer::new(&settings.smtp_url, settings.smtp_timeout).map_err(anyhow::Error::msg)?;
    Ok(Arc::new(mailer))
}
