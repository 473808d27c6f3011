//! Composition: the backing services behind their seams, the consumer and the health endpoints.

use crate::configuration::Settings;
use crate::mail::Composer;
use crate::mailer::{Mailer, MailerReadiness, SmtpMailer};
use crate::notifier::Notifier;
use crate::sent_log::{MongoSentLog, SentLog, SentLogReadiness};
use anyhow::Context;
use platform::bus::{BusReadiness, EventBus, Subscription};
use platform::health::Health;
use platform::rabbit::RabbitBus;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The durable queue this service consumes.
pub const QUEUE: &str = "notification";
/// The outcomes announced by mail.
pub const EVENT_TYPES: [&str; 2] = ["conversion.succeeded", "conversion.failed"];

/// What this service consumes, with the configured prefetch and retry delays.
pub fn subscription(settings: &Settings) -> Subscription {
    Subscription::new(QUEUE, &EVENT_TYPES)
        .with_prefetch(settings.prefetch)
        .with_retry_delays(settings.retry_delays.clone())
}

/// The implementations behind the seams; [`Application::build`] picks the production ones.
pub struct Backends {
    pub bus: Arc<dyn EventBus>,
    pub sent_log: Arc<dyn SentLog>,
    pub mailer: Arc<dyn Mailer>,
}

pub struct Application {
    listener: TcpListener,
    http_addr: SocketAddr,
    backends: Backends,
    composer: Composer,
    subscription: Subscription,
    claim_poll: Duration,
}

impl Application {
    /// RabbitMQ at `AMQP_URL` with the production topology, plus [`Application::build`].
    pub async fn build_with_rabbitmq(settings: Settings) -> anyhow::Result<Self> {
        let bus = Arc::new(RabbitBus::new(settings.amqp_url.clone()));
        Self::build(settings, bus).await
    }

    /// The service on `bus`, with the MongoDB sent log and the SMTP mailer from `settings`.
    /// Nothing connects yet: absent dependencies show in `/readyz` and are retried.
    pub async fn build(settings: Settings, bus: Arc<dyn EventBus>) -> anyhow::Result<Self> {
        let sent_log = MongoSentLog::new(
            &settings.mongodb_uri,
            &settings.mongodb_database,
            settings.claim_timeout,
        )
        .await
        .context("MONGODB_URI")?;
        let mailer = SmtpMailer::new(&settings.smtp_url, settings.smtp_timeout)
            .map_err(anyhow::Error::msg)?;
        let backends = Backends {
            bus,
            sent_log: Arc::new(sent_log),
            mailer: Arc::new(mailer),
        };
        Self::build_with(settings, backends).await
    }

    /// The service on the given backends; binds `HTTP_ADDR` (port 0 picks a free one).
    pub async fn build_with(settings: Settings, backends: Backends) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", settings.http_addr))?;
        let http_addr = listener.local_addr()?;
        tracing::info!(
            %http_addr,
            smtp = %settings.smtp_url,
            from = %settings.mail_from,
            public_base_url = %settings.public_base_url,
            retry_delays = ?settings.retry_delays,
            "notification service configured"
        );
        Ok(Self {
            listener,
            http_addr,
            backends,
            composer: Composer::new(settings.mail_from.clone(), settings.public_base_url.clone()),
            subscription: subscription(&settings),
            // Often enough to pick a lapsed claim up promptly, rarely enough not to load the store.
            claim_poll: (settings.claim_timeout / 10)
                .clamp(Duration::from_millis(50), Duration::from_secs(1)),
        })
    }

    /// Where `/healthz` and `/readyz` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Consumes and serves until `shutdown` fires (or either part fails); in-flight mails finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Backends {
            bus,
            sent_log,
            mailer,
        } = self.backends;
        // Either part failing stops the other too: half a service must not look healthy.
        let stop = shutdown.child_token();
        let health = Health::new(vec![
            Arc::new(BusReadiness(bus.clone())),
            Arc::new(MailerReadiness(mailer.clone())),
            Arc::new(SentLogReadiness(sent_log.clone())),
        ]);
        let handler = Arc::new(Notifier::new(
            bus.clone(),
            sent_log,
            mailer,
            self.composer,
            self.claim_poll,
            stop.clone(),
        ));
        let server = async {
            let result =
                platform::health::serve(self.listener, health.router(), stop.clone()).await;
            stop.cancel();
            result
        };
        let consumer = async {
            let result = bus.consume(self.subscription, handler, stop.clone()).await;
            stop.cancel();
            result
        };
        let (served, consumed) = tokio::join!(server, consumer);
        served.context("the health endpoint failed")?;
        consumed.context("consuming events failed")?;
        tracing::info!("notification service stopped");
        Ok(())
    }
}
