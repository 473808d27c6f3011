//! The whole video→MP3 service in one process, for a newcomer with only cargo.
//!
//! [`AllInOne`] composes the four service libraries — auth, gateway, converter, notification —
//! exactly as their own binaries do, with embedded adapters behind the same seams:
//!
//! | seam | embedded | real (when the variable is set) |
//! |---|---|---|
//! | auth's user store | SQLite in `DATA_DIR/auth.db` | MySQL/MariaDB (`DATABASE_URL=mysql://…`) |
//! | blob store | local disk, `DATA_DIR/files` | GridFS (`MONGODB_URI`) |
//! | event store, outbox, retention ledger | JSON lines in `DATA_DIR/events` | MongoDB (`MONGODB_URI`) |
//! | notification sent log | JSON lines in `DATA_DIR/notification` | MongoDB (`MONGODB_URI`) |
//! | event bus | in-process | RabbitMQ (`AMQP_URL`) |
//! | mailer | `.eml` files in `DATA_DIR/mail` | SMTP (`SMTP_URL`) |
//!
//! The in-process bus forgets its queues when the process stops, so at start the event store is
//! replayed ([`replay`]): unfinished jobs are converted and unannounced outcomes mailed.

pub mod banner;
pub mod bus;
pub mod configuration;
pub mod replay;

pub use configuration::Settings;

use crate::banner::{MailDestination, Summary};
use crate::bus::PublishOnce;
use crate::configuration::{default_public_base_url, layout};
use anyhow::Context;
use gateway::store::EventStore;
use notification::local_mailer::FileMailer;
use platform::blob::{BlobStore, GridFsStore};
use platform::bus::{EventBus, Subscription};
use platform::local_blob::DiskStore;
use platform::local_bus::InProcessBus;
use platform::rabbit::RabbitBus;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Internal listeners (auth's gRPC, the workers' health endpoints) bind a free loopback port.
const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
/// After the workers stopped, how long the gateway keeps consuming so their last events (a
/// success, a notification) reach the event store before it stops too.
const DRAIN_GRACE: Duration = Duration::from_millis(300);

/// The four services, composed and bound, not yet running.
pub struct AllInOne {
    summary: Summary,
    address: SocketAddr,
    admin_address: SocketAddr,
    /// Held while running: a second process on the same data directory would corrupt it.
    lock: std::fs::File,
    /// The process's one MongoDB client, closed after every part stopped.
    mongo: Option<mongodb::Client>,
    auth: auth::Application,
    gateway: gateway::Application,
    converter: Option<converter::worker::Application>,
    notification: Option<notification::Application>,
    /// RabbitMQ, whose queues are declared before the gateway publishes into them.
    rabbit: Option<(Arc<RabbitBus>, Vec<Subscription>)>,
    /// The in-process bus and the store to replay on it.
    replay: Option<(Arc<dyn EventBus>, Arc<dyn EventStore>)>,
}

/// Takes the data directory's lock, or says who holds it.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(layout::LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by another mp3converter process; stop it or set DATA_DIR to another directory",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The address to give the gateway: port 0 becomes a concrete free port first, so the links in
/// responses and mails can name it before the gateway binds.
fn concrete_address(address: SocketAddr) -> anyhow::Result<SocketAddr> {
    if address.port() != 0 {
        return Ok(address);
    }
    let probe = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on HTTP_ADDR {address}"))?;
    Ok(probe.local_addr()?)
}

/// The repository's sample video, when run from a checkout.
fn sample_video() -> Option<PathBuf> {
    let candidate = Path::new("converter/tests/fixtures/mp4_aac_moov_start.mp4");
    candidate
        .is_file()
        .then(|| std::path::absolute(candidate).ok())
        .flatten()
}

impl AllInOne {
    /// Opens the data directory, builds the backends (embedded or real), and builds and binds the
    /// four services. Real backing services need not be up yet: each service waits for its own.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let Settings {
            data_dir,
            http_addr,
            admin_addr,
            public_base_url,
            database_url,
            mongodb_uri,
            amqp_url,
            topology,
            smtp_url,
            start_converter,
            start_notification,
            auth: mut auth_settings,
            gateway: mut gateway_settings,
            converter: mut converter_settings,
            notification: mut notification_settings,
        } = settings;
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create DATA_DIR {}", data_dir.display()))?;
        let data_dir = std::path::absolute(&data_dir)?;
        let lock = lock_data_dir(&data_dir)?;
        let mut backends: Vec<(&'static str, String)> = Vec::new();

        // One MongoDB client for GridFS, the event store and the sent log alike.
        let mongo = match &mongodb_uri {
            Some(uri) => Some(
                platform::mongo::connect(uri, "mp3converter")
                    .await
                    .context("invalid MONGODB_URI")?,
            ),
            None => None,
        };

        let subscriptions = vec![
            gateway::pipeline::subscription(platform::config::DEFAULT_DELIVERY_LIMIT),
            converter::worker::Application::subscription(&converter_settings),
            notification::startup::subscription(&notification_settings),
        ];
        let (bus, rabbit): (Arc<dyn EventBus>, _) = match &amqp_url {
            Some(url) => {
                let rabbit =
                    Arc::new(RabbitBus::new(url).with_topology(topology.unwrap_or_default()));
                backends.push(("event bus", "RabbitMQ at AMQP_URL".into()));
                (rabbit.clone(), Some((rabbit, subscriptions)))
            }
            None => {
                let in_process = Arc::new(InProcessBus::new());
                // Events published before a consumer attaches wait in its queue.
                for subscription in &subscriptions {
                    in_process.declare(subscription);
                }
                backends.push(("event bus", "in-process (AMQP_URL unset)".into()));
                (Arc::new(PublishOnce::new(in_process)), None)
            }
        };

        let blobs: Arc<dyn BlobStore> = match &mongo {
            Some(client) => {
                backends.push(("files", "GridFS at MONGODB_URI".into()));
                Arc::new(GridFsStore::new(client))
            }
            None => {
                let root = data_dir.join(layout::FILES);
                backends.push(("files", format!("local disk in {}", root.display())));
                Arc::new(
                    DiskStore::new(&root)
                        .await
                        .with_context(|| format!("cannot use {}", root.display()))?,
                )
            }
        };

        auth_settings.grpc_addr = LOOPBACK_ANY_PORT;
        auth_settings.http_addr = LOOPBACK_ANY_PORT;
        let auth_backends = match database_url {
            Some(url) => {
                backends.push(("users", "database at DATABASE_URL".into()));
                auth_settings.database_url = url;
                auth::Backends::connect(&auth_settings).await?
            }
            None => {
                let file = data_dir.join(layout::AUTH_DATABASE);
                backends.push(("users", format!("SQLite in {}", file.display())));
                auth::Backends::embedded(&data_dir).await?
            }
        };
        let auth = auth::Application::build(auth_settings, auth_backends)
            .await
            .context("starting auth")?;

        let address = concrete_address(http_addr)?;
        let public_base_url = public_base_url.unwrap_or_else(|| default_public_base_url(address));
        gateway_settings.http_addr = address;
        gateway_settings.admin_addr = admin_addr;
        gateway_settings.auth_grpc_url = format!("http://{}", auth.grpc_addr());
        gateway_settings.public_base_url = public_base_url.as_str().to_owned();
        let gateway_backends = match &mongo {
            Some(client) => {
                backends.push(("events", "MongoDB at MONGODB_URI".into()));
                let mut on_mongo =
                    gateway::Backends::on_mongo(&gateway_settings, client, bus.clone())?;
                on_mongo.blobs = blobs.clone();
                on_mongo
            }
            None => {
                let dir = data_dir.join(layout::EVENTS);
                backends.push(("events", format!("local disk in {}", dir.display())));
                gateway::Backends::embedded(&dir, &gateway_settings, bus.clone(), blobs.clone())
                    .await?
            }
        };
        // The replay after a restart reads the same store the gateway writes.
        let store = gateway_backends.events.clone();
        let gateway = gateway::Application::build(gateway_settings, gateway_backends)
            .await
            .context("starting the gateway")?;
        let address = gateway.address();
        let admin_address = gateway.admin_address();

        converter_settings.http_addr = LOOPBACK_ANY_PORT;
        let converter = if start_converter {
            let converter_backends = converter::worker::Backends::embedded(bus.clone(), blobs);
            Some(
                converter::worker::Application::build(converter_settings, converter_backends)
                    .await
                    .context("starting the converter")?,
            )
        } else {
            None
        };

        notification_settings.http_addr = LOOPBACK_ANY_PORT;
        notification_settings.public_base_url = public_base_url.clone();
        let mail_dir = data_dir.join(layout::MAIL);
        let mut notification_backends = match &mongo {
            Some(client) => {
                notification::Backends::on_mongo(&notification_settings, client, bus.clone())?
            }
            None => {
                notification::Backends::embedded(
                    &data_dir.join(layout::NOTIFICATION),
                    &mail_dir,
                    &notification_settings,
                    bus.clone(),
                )
                .await?
            }
        };
        let mail = match smtp_url {
            Some(url) => {
                let shown = url.to_string();
                backends.push(("mail", format!("SMTP at {shown}")));
                notification_settings.smtp_url = url;
                notification_backends.mailer =
                    notification::backends::smtp(&notification_settings)?;
                MailDestination::Smtp(shown)
            }
            None => {
                // The embedded backends write `.eml` files already; the MongoDB ones mail by SMTP.
                if mongo.is_some() {
                    let mailer = FileMailer::new(&mail_dir)
                        .await
                        .with_context(|| format!("cannot create {}", mail_dir.display()))?;
                    notification_backends.mailer = Arc::new(mailer);
                }
                backends.push(("mail", format!(".eml files in {}", mail_dir.display())));
                MailDestination::Folder(mail_dir)
            }
        };
        let notification = if start_notification {
            Some(
                notification::Application::build(notification_settings, notification_backends)
                    .await
                    .context("starting the notification service")?,
            )
        } else {
            None
        };

        const ORDER: [&str; 5] = ["users", "files", "events", "event bus", "mail"];
        backends.sort_by_key(|(what, _)| ORDER.iter().position(|w| w == what));
        let api_url = default_public_base_url(address).as_str().to_owned();
        let summary = Summary {
            api_url,
            admin_url: default_public_base_url(admin_address).as_str().to_owned(),
            public_base_url: public_base_url.as_str().to_owned(),
            data_dir,
            backends,
            mail,
            sample_video: sample_video(),
        };
        // A durable broker keeps undelivered events itself; only the in-process bus forgets.
        let replay = rabbit.is_none().then_some((bus, store));
        Ok(Self {
            summary,
            address,
            admin_address,
            lock,
            mongo,
            auth,
            gateway,
            converter,
            notification,
            rabbit,
            replay,
        })
    }

    /// Where the REST API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen (not on the API's address).
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// What the banner reports.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The text printed at start: addresses, folders, backends and a curl quick start.
    pub fn banner(&self) -> String {
        self.summary.banner()
    }

    /// Runs everything until `shutdown` fires or a part stops by itself (which stops the rest:
    /// half a service must not look healthy). On shutdown the workers finish their jobs first,
    /// then the gateway and auth stop.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stopping = CancellationToken::new();
        let workers = CancellationToken::new();
        let front = CancellationToken::new();

        let mut worker_tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        if let Some(converter) = self.converter {
            worker_tasks.push((
                "converter",
                spawn_part(converter.run_until_stopped(workers.clone()), &stopping),
            ));
        }
        if let Some(notification) = self.notification {
            worker_tasks.push((
                "notification",
                spawn_part(notification.run_until_stopped(workers.clone()), &stopping),
            ));
        }
        let gateway = {
            let front = front.clone();
            let rabbit = self.rabbit;
            let gateway = self.gateway;
            async move {
                if let Some((bus, subscriptions)) = rabbit
                    && !declare_queues(&bus, &subscriptions, &front).await
                {
                    return Ok(());
                }
                gateway.run_until_stopped(front).await
            }
        };
        let front_tasks = vec![
            (
                "auth",
                spawn_part(self.auth.run_until_stopped(front.clone()), &stopping),
            ),
            ("gateway", spawn_part(gateway, &stopping)),
        ];
        let replay = self
            .replay
            .map(|(bus, store)| tokio::spawn(replay_until_done(store, bus, workers.clone())));

        tokio::select! {
            _ = shutdown.cancelled() => tracing::info!("stopping: workers finish their jobs first"),
            _ = stopping.cancelled() => tracing::error!("a part stopped by itself; stopping the rest"),
        }
        workers.cancel();
        let mut failures = Vec::new();
        for (name, task) in worker_tasks {
            collect(name, task.await, &mut failures);
        }
        if let Some(replay) = replay {
            let _ = replay.await;
        }
        tokio::time::sleep(DRAIN_GRACE).await;
        front.cancel();
        for (name, task) in front_tasks {
            collect(name, task.await, &mut failures);
        }
        if let Some(mongo) = self.mongo {
            mongo.shutdown().await;
        }
        drop(self.lock);
        tracing::info!("mp3converter stopped");
        match failures.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Runs one service; when it ends (for whatever reason) everything stops.
fn spawn_part(
    part: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    stopping: &CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let stopping = stopping.clone();
    tokio::spawn(async move {
        let result = part.await;
        stopping.cancel();
        result
    })
}

fn collect(
    name: &str,
    joined: Result<anyhow::Result<()>, tokio::task::JoinError>,
    failures: &mut Vec<anyhow::Error>,
) {
    let error = match joined {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(e) => anyhow::Error::new(e),
    };
    tracing::error!(part = name, error = %format!("{error:#}"), "stopped with an error");
    failures.push(error.context(format!("{name} failed")));
}

/// Declares every service queue on RabbitMQ, waiting for the broker; `false` when stopped first.
async fn declare_queues(
    bus: &RabbitBus,
    subscriptions: &[Subscription],
    stop: &CancellationToken,
) -> bool {
    let declared = platform::retry::until_ready(
        "declaring the queues on RabbitMQ at AMQP_URL (the API starts once they exist)",
        stop,
        || async {
            let connection = bus.open_connection().await.map_err(|e| e.to_string())?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            for subscription in subscriptions {
                bus.declare_subscription(&channel, subscription)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let _ = connection.close(200, "queues declared".into()).await;
            Ok::<(), String>(())
        },
    )
    .await;
    declared.is_some()
}

/// Replays the event store onto the bus, retrying while the store is unreachable.
async fn replay_until_done(
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    stop: CancellationToken,
) {
    let resumed = platform::retry::until_ready(
        "reading the event store to resume unfinished jobs",
        &stop,
        || replay::resume_unfinished(store.as_ref(), bus.as_ref()),
    )
    .await;
    if let Some(resumed) = resumed
        && resumed != replay::Resumed::default()
    {
        tracing::info!(
            conversions = resumed.conversions,
            notifications = resumed.notifications,
            "resumed the jobs the last run left unfinished"
        );
    }
}
