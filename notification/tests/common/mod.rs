//! Test harness: the service on an isolated RabbitMQ topology, the shared MongoDB-wire server and
//! a real SMTP sink, plus an observer queue receiving every `notification.*` event.

#![allow(dead_code)] // each test binary uses its own subset

use async_trait::async_trait;
use contracts::Envelope;
use contracts::events::{ConversionFailed, ConversionSucceeded, FailureKind, JobEvent};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use notification::startup::subscription;
use notification::{Application, Backends, Settings};
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::rabbit::{RabbitBus, Topology};
use platform::testing::{isolated_topology, required_env, unique_name};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Settings pointing at the test services, with short retry delays and a database of its own.
pub fn test_settings() -> Settings {
    Settings {
        amqp_url: required_env("AMQP_URL").into(),
        mongodb_uri: required_env("MONGODB_URI").into(),
        mongodb_database: unique_name("notification"),
        smtp_url: required_env("SMTP_URL").parse().expect("SMTP_URL parses"),
        public_base_url: "https://mp3.example.com".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        retry_delays: vec![Duration::from_millis(200), Duration::from_millis(500)],
        smtp_timeout: Duration::from_secs(10),
        claim_timeout: Duration::from_secs(30),
        ..Settings::default()
    }
}

/// A recipient no other test uses.
pub fn unique_recipient(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", Uuid::new_v4().simple())
}

pub fn succeeded(recipient: &str, filename: &str) -> Envelope {
    Envelope::new(
        Uuid::now_v7(),
        "converter",
        JobEvent::ConversionSucceeded(ConversionSucceeded {
            owner_id: "42".into(),
            owner_email: recipient.into(),
            original_filename: filename.into(),
            mp3_file_id: "65f0c0ffee0000000000beef".into(),
            mp3_size_bytes: 4_404_019,
            duration_seconds: 185.4,
            bitrate_kbps: 190,
            passthrough: false,
        }),
    )
}

pub fn failed(recipient: &str, filename: &str, kind: FailureKind, reason: &str) -> Envelope {
    Envelope::new(
        Uuid::now_v7(),
        "converter",
        JobEvent::ConversionFailed(ConversionFailed {
            owner_id: "42".into(),
            owner_email: recipient.into(),
            original_filename: filename.into(),
            kind,
            reason: reason.into(),
        }),
    )
}

/// One isolated topology: publishes outcomes and observes what the service announces.
pub struct Harness {
    pub topology: Topology,
    pub bus: Arc<RabbitBus>,
    announced: Mutex<mpsc::UnboundedReceiver<Envelope>>,
    observer_stop: CancellationToken,
}

struct Forward(mpsc::UnboundedSender<Envelope>);

#[async_trait]
impl EventHandler for Forward {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        let _ = self.0.send(delivery.envelope.clone());
        Outcome::Done
    }
}

impl Harness {
    pub async fn new() -> Self {
        let topology = isolated_topology();
        let bus =
            Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(topology.clone()));
        let observer = Subscription::new("observer", &["notification.sent", "notification.failed"])
            .with_retry_delays(Vec::new());
        // Declared before anything is published, so no announcement can miss the queue.
        declare(&bus, &observer).await;
        let (sender, receiver) = mpsc::unbounded_channel();
        let observer_stop = CancellationToken::new();
        let consumer_bus = bus.clone();
        let stop = observer_stop.clone();
        tokio::spawn(async move {
            consumer_bus
                .consume(observer, Arc::new(Forward(sender)), stop)
                .await
        });
        Self {
            topology,
            bus,
            announced: Mutex::new(receiver),
            observer_stop,
        }
    }

    /// Starts the service with `settings` on this topology.
    pub async fn start(&self, settings: Settings) -> RunningApp {
        // Declared now so outcomes published before the service consumes wait in its queue.
        declare(&self.bus, &subscription(&settings)).await;
        let mut backends = Backends::connect(&settings)
            .await
            .expect("the notification service's backends");
        backends.bus =
            Arc::new(RabbitBus::new(&settings.amqp_url).with_topology(self.topology.clone()));
        let application = Application::build(settings, backends)
            .await
            .expect("the application builds");
        let http_addr = application.http_addr();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(application.run_until_stopped(shutdown.clone()));
        RunningApp {
            http_addr,
            shutdown,
            handle,
        }
    }

    pub async fn publish(&self, envelope: &Envelope) {
        self.bus
            .publish(envelope)
            .await
            .expect("publish to RabbitMQ");
    }

    /// The next `notification.*` event, or a panic after `timeout`.
    pub async fn next_announcement(&self, timeout: Duration) -> Envelope {
        let mut announced = self.announced.lock().await;
        tokio::time::timeout(timeout, announced.recv())
            .await
            .unwrap_or_else(|_| panic!("no notification event within {timeout:?}"))
            .expect("the observer is running")
    }

    /// Every `notification.*` event up to and including the first about `event_id`.
    pub async fn announcements_until(&self, event_id: Uuid, timeout: Duration) -> Vec<Envelope> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_announcement(left).await;
            let done = about(&event) == Some(event_id);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    /// Asserts that no `notification.*` event arrives within `window`.
    pub async fn assert_no_announcement(&self, window: Duration) {
        let mut announced = self.announced.lock().await;
        if let Ok(Some(event)) = tokio::time::timeout(window, announced.recv()).await {
            panic!("unexpected notification event: {event:?}");
        }
    }

    /// Messages ready in `queue` (a full name, e.g. a retry or the dead-letter queue).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let connection = self
            .bus
            .open_connection()
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("open a channel");
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("queue {queue} does not exist: {e}"));
        let _ = connection.close(200, "done".into()).await;
        queue.message_count()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.observer_stop.cancel();
    }
}

async fn declare(bus: &RabbitBus, subscription: &Subscription) {
    let connection = bus.open_connection().await.expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("open a channel");
    bus.declare_subscription(&channel, subscription)
        .await
        .expect("declare the queue");
    let _ = connection.close(200, "declared".into()).await;
}

/// The outcome event a `notification.*` event is about.
pub fn about(event: &Envelope) -> Option<Uuid> {
    match &event.event {
        JobEvent::NotificationSent(sent) => Some(sent.about_event_id),
        JobEvent::NotificationFailed(failed) => Some(failed.about_event_id),
        _ => None,
    }
}

pub struct RunningApp {
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningApp {
    /// Shuts the service down gracefully and checks it stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the service stops within 30 s")
            .expect("the service task did not panic")
            .expect("the service stopped without error");
    }
}

/// Every mail in `dir` addressed to `recipient`.
pub fn mails_to(dir: &Path, recipient: &str) -> Vec<String> {
    platform::testing::mails_matching(dir, |raw| raw.contains(recipient))
}

/// Waits for the mail to `recipient` in `dir`.
pub async fn mail_to(dir: &Path, recipient: &str, timeout: Duration) -> String {
    let recipient = recipient.to_owned();
    platform::testing::wait_for_mail(dir, move |raw| raw.contains(&recipient), timeout).await
}

/// The decoded subject of a raw mail.
pub fn subject(raw: &str) -> String {
    mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|mail| mail.subject().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits for the mail to `recipient` whose subject mentions `filename`.
pub async fn mail_about(dir: &Path, recipient: &str, filename: &str, timeout: Duration) -> String {
    let (recipient, filename) = (recipient.to_owned(), filename.to_owned());
    platform::testing::wait_for_mail(
        dir,
        move |raw| raw.contains(&recipient) && subject(raw).contains(&filename),
        timeout,
    )
    .await
}

/// How many mails to `recipient` have a subject mentioning `filename`.
pub fn count_mails_about(dir: &Path, recipient: &str, filename: &str) -> usize {
    mails_to(dir, recipient)
        .iter()
        .filter(|raw| subject(raw).contains(filename))
        .count()
}
