//! Composition: the backing services behind their seams, the consumer and the health endpoints.

use crate::backends::Backends;
use crate::configuration::Settings;
use crate::mail::Composer;
use crate::notifier::Notifier;
use anyhow::Context;
use platform::bus::Subscription;
use platform::health::{Health, probe};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The durable queue this service consumes: a quorum queue, which counts the deliveries whose
/// consumer died holding them.
pub const QUEUE: &str = "notification.quorum";
/// The classic queue of earlier builds that [`QUEUE`] replaces (a queue's type cannot change).
pub const REPLACED_QUEUE: &str = "notification";
/// The outcomes announced by mail, and the deletions that cancel them.
pub const EVENT_TYPES: [&str; 3] = ["conversion.succeeded", "conversion.failed", "job.deleted"];

/// What this service consumes, with the configured prefetch, retry delays and delivery limit
/// (an event the service dies on more than that many times fails its mail with a reason).
pub fn subscription(settings: &Settings) -> Subscription {
    Subscription::new(QUEUE, &EVENT_TYPES)
        .with_prefetch(settings.prefetch)
        .with_retry_delays(settings.retry_delays.clone())
        .with_delivery_limit(settings.delivery_limit)
        .replacing_queue(REPLACED_QUEUE)
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
    /// The production composition: [`Backends::connect`], then [`Application::build`].
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let backends = Backends::connect(&settings).await?;
        Self::build(settings, backends).await
    }

    /// The service on the given backends; binds `HTTP_ADDR` (port 0 picks a free one).
    pub async fn build(settings: Settings, backends: Backends) -> anyhow::Result<Self> {
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
        let backends = self.backends;
        let (bus, sent_log, mailer) = (
            backends.bus.clone(),
            backends.sent_log.clone(),
            backends.mailer.clone(),
        );
        // Either part failing stops the other too: half a service must not look healthy.
        let stop = shutdown.child_token();
        let health = Health::new(vec![
            probe(
                "event_bus",
                bus.clone(),
                |bus| async move { bus.check().await },
            ),
            probe("smtp", mailer.clone(), |mailer| async move {
                mailer.check().await
            }),
            probe("mongodb", sent_log.clone(), |log| async move {
                log.check().await
            }),
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
        backends.close().await;
        tracing::info!("notification service stopped");
        Ok(())
    }
}
