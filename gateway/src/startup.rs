//! Composition: builds the gateway from its settings and backing services, and runs the HTTP
//! server, the event-store consumer, the outbox relay and the retention sweeper until shutdown.

use crate::accounts::{Accounts, AccountsReadiness, GrpcAccounts};
use crate::configuration::Settings;
use crate::observability;
use crate::pipeline::{
    self, EventPublisher, EventStoreFeeder, FileJanitor, JobUpdates, Lifecycle, Sweeper,
};
use crate::rate_limit::RateLimits;
use crate::routes::{self, AppState};
use crate::store::{
    EventStore, EventStoreReadiness, MemoryRetentionLedger, MongoEventStore, MongoOutbox,
    MongoRetentionLedger, Outbox, RetentionLedger,
};
use crate::tokens::TokenVerifier;
use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, Request};
use axum::middleware::from_fn;
use backon::BackoffBuilder;
use mongodb::options::ClientOptions;
use platform::blob::{BlobReadiness, BlobStore, GridFsStore};
use platform::bus::{BusReadiness, EventBus};
use platform::health::Health;
use platform::rabbit::RabbitBus;
use platform::trace::TraceContext;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// How often idle rate-limit keys are forgotten.
const RATE_LIMIT_HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How long shutdown waits for request-spawned tasks (SSE feeds) to finish their last read.
const BACKGROUND_GRACE: Duration = Duration::from_secs(5);

/// The backing services the gateway is composed with. Production connects to RabbitMQ and
/// GridFS ([`Dependencies::from_settings`]); tests inject an isolated topology; an all-in-one
/// mode can inject in-process implementations.
pub struct Dependencies {
    pub bus: Arc<dyn EventBus>,
    pub blobs: Arc<dyn BlobStore>,
    /// When `None`, the MongoDB event store on `MONGODB_URI` / `JOBS_DATABASE`.
    pub event_store: Option<Arc<dyn EventStore>>,
    /// When `None`, the MongoDB outbox beside the event store.
    pub outbox: Option<Arc<dyn Outbox>>,
    /// When `None`, auth over gRPC at `AUTH_GRPC_URL`.
    pub accounts: Option<Arc<dyn Accounts>>,
    /// When `None`, beside the event store: in MongoDB for the MongoDB store, else in memory.
    pub retention_ledger: Option<Arc<dyn RetentionLedger>>,
}

impl Dependencies {
    pub fn new(bus: Arc<dyn EventBus>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            bus,
            blobs,
            event_store: None,
            outbox: None,
            accounts: None,
            retention_ledger: None,
        }
    }

    /// RabbitMQ and GridFS as configured. Connects lazily: never fails on an absent service.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let bus = Arc::new(RabbitBus::new(settings.amqp_url.clone()));
        let blobs = Arc::new(
            GridFsStore::new(&settings.mongodb_uri)
                .await
                .context("invalid MONGODB_URI")?,
        );
        Ok(Self::new(bus, blobs))
    }

    pub fn with_event_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.event_store = Some(store);
        self
    }

    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    pub fn with_accounts(mut self, accounts: Arc<dyn Accounts>) -> Self {
        self.accounts = Some(accounts);
        self
    }

    pub fn with_retention_ledger(mut self, ledger: Arc<dyn RetentionLedger>) -> Self {
        self.retention_ledger = Some(ledger);
        self
    }
}

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    health: Health,
    bus: Arc<dyn EventBus>,
    outbox: Arc<dyn Outbox>,
    relay_wake: Arc<Notify>,
    outbox_poll_interval: Duration,
    /// MongoDB stores whose indexes are created once MongoDB answers.
    indexes: Option<(MongoEventStore, MongoOutbox)>,
    ledger_indexes: Option<MongoRetentionLedger>,
    lifecycle: Arc<Lifecycle>,
    sweeper: Sweeper,
    retention_sweep_interval: Duration,
    shutdown: CancellationToken,
}

async fn mongo_client(uri: &str) -> anyhow::Result<mongodb::Client> {
    let mut options = ClientOptions::parse(uri)
        .await
        .context("invalid MONGODB_URI")?;
    // Fail fast while MongoDB is away so requests get a 503 instead of waiting 30 s.
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.connect_timeout = Some(Duration::from_secs(5));
    options.app_name.get_or_insert_with(|| "gateway".into());
    Ok(mongodb::Client::with_options(options)?)
}

impl Application {
    /// Binds the HTTP listener and wires everything; no backing service needs to be up yet.
    pub async fn build(settings: Settings, deps: Dependencies) -> anyhow::Result<Self> {
        observability::install_metrics();
        let mut indexes = None;
        let mut mongo = None;
        let store_in_mongo = deps.event_store.is_none();
        let (store, outbox) = match (deps.event_store, deps.outbox) {
            (Some(store), Some(outbox)) => (store, outbox),
            (store, outbox) => {
                let client = mongo_client(&settings.mongodb_uri).await?;
                let mongo_store = MongoEventStore::new(&client, &settings.jobs_database);
                let mongo_outbox = MongoOutbox::new(&client, &settings.jobs_database);
                indexes = Some((mongo_store.clone(), mongo_outbox.clone()));
                mongo = Some(client);
                (
                    store.unwrap_or_else(|| Arc::new(mongo_store)),
                    outbox.unwrap_or_else(|| Arc::new(mongo_outbox)),
                )
            }
        };
        let mut ledger_indexes = None;
        let ledger: Arc<dyn RetentionLedger> = match (deps.retention_ledger, &mongo) {
            (Some(ledger), _) => ledger,
            (None, Some(client)) if store_in_mongo => {
                let mongo_ledger = MongoRetentionLedger::new(client, &settings.jobs_database);
                ledger_indexes = Some(mongo_ledger.clone());
                Arc::new(mongo_ledger)
            }
            (None, _) => {
                tracing::warn!(
                    "no retention ledger given: keeping expiry schedules in memory (lost on restart)"
                );
                Arc::new(MemoryRetentionLedger::default())
            }
        };
        let accounts: Arc<dyn Accounts> = match deps.accounts {
            Some(accounts) => accounts,
            None => Arc::new(
                GrpcAccounts::new(&settings.auth_grpc_url, settings.auth_timeout)
                    .context("invalid AUTH_GRPC_URL")?
                    .with_circuit_breaker(settings.auth_breaker),
            ),
        };
        let updates = JobUpdates::default();
        let relay_wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let janitor = FileJanitor::new(deps.blobs.clone());
        let publisher = EventPublisher {
            outbox: outbox.clone(),
            store: store.clone(),
            bus: deps.bus.clone(),
            relay_wake: relay_wake.clone(),
            updates: updates.clone(),
        };
        let lifecycle = Arc::new(Lifecycle {
            store: store.clone(),
            ledger: ledger.clone(),
            janitor: janitor.clone(),
            keep_videos: settings.keep_videos,
        });
        let sweeper = Sweeper {
            ledger: ledger.clone(),
            store: store.clone(),
            janitor: janitor.clone(),
            publisher: publisher.clone(),
            retention: settings.retention,
        };
        let state = AppState {
            tokens: Arc::new(TokenVerifier::new(
                accounts.clone(),
                settings.keys_refresh_min_interval,
            )),
            accounts: accounts.clone(),
            blobs: deps.blobs.clone(),
            store: store.clone(),
            publisher,
            updates,
            max_upload_bytes: settings.max_upload_bytes,
            public_base_url: settings.public_base_url.clone().into(),
            sse_poll_interval: settings.sse_poll_interval,
            shutdown: shutdown.clone(),
            limits: Arc::new(RateLimits::new(settings.rate_limits)),
            retention: settings.retention,
            ledger,
            janitor,
            trust_forwarded_for: settings.trust_forwarded_for,
            background: TaskTracker::new(),
        };
        let health = Health::new(vec![
            Arc::new(AccountsReadiness(accounts)),
            Arc::new(EventStoreReadiness(store)),
            Arc::new(BlobReadiness(deps.blobs)),
            Arc::new(BusReadiness(deps.bus.clone())),
        ]);
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            address,
            state,
            health,
            bus: deps.bus,
            outbox,
            relay_wake,
            outbox_poll_interval: settings.outbox_poll_interval,
            indexes,
            ledger_indexes,
            lifecycle,
            sweeper,
            retention_sweep_interval: settings.retention_sweep_interval,
            shutdown,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The HTTP router with request ids, trace context, a span per request, the access log and
    /// HTTP metrics (also usable without a listener).
    fn router(&self) -> Router {
        let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let trace_id = request
                .extensions()
                .get::<TraceContext>()
                .map(TraceContext::trace_id_hex)
                .unwrap_or_default();
            // The path only: query strings may carry ids the logs do not need.
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), %request_id, %trace_id)
        });
        routes::router(self.state.clone())
            .merge(self.health.clone().router())
            // Route layers see the matched route template (`/jobs/{id}`), never the raw path.
            .route_layer(from_fn(observability::record_route))
            .route_layer(from_fn(platform::metrics::track_http))
            .layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                    .layer(from_fn(observability::trace_context))
                    .layer(trace)
                    .layer(from_fn(observability::access_log))
                    .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
            )
    }

    /// Serves until `shutdown` fires, with the event-store consumer and the outbox relay
    /// beside the server; all three stop gracefully.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let router = self.router();
        let internal = self.shutdown.clone();
        let forward = {
            let internal = internal.clone();
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                internal.cancel();
            }
        };
        let forwarder = tokio::spawn(forward);

        let indexes = {
            let shutdown = internal.clone();
            let pending = self.indexes;
            let ledger = self.ledger_indexes;
            async move {
                if let Some((store, outbox)) = pending {
                    ensure_indexes(store, outbox, shutdown.clone()).await;
                }
                if let Some(ledger) = ledger {
                    ensure_ledger_indexes(ledger, shutdown).await;
                }
            }
        };
        let feeder = Arc::new(EventStoreFeeder {
            store: self.state.store.clone(),
            updates: self.state.updates.clone(),
            lifecycle: self.lifecycle.clone(),
        });
        let consumer = {
            let bus = self.bus.clone();
            let shutdown = internal.clone();
            async move {
                if let Err(e) = bus
                    .consume(pipeline::subscription(), feeder, shutdown)
                    .await
                {
                    tracing::error!(error = %e, "event-store consumer stopped");
                }
            }
        };
        let relay = crate::pipeline::relay(
            self.outbox.clone(),
            self.bus.clone(),
            self.relay_wake.clone(),
            self.outbox_poll_interval,
            internal.clone(),
        );
        let sweeper = self
            .sweeper
            .run(self.retention_sweep_interval, internal.clone());
        let housekeeping = self
            .state
            .limits
            .clone()
            .housekeeping(RATE_LIMIT_HOUSEKEEPING, internal.clone());
        tracing::info!(address = %self.address, "gateway listening");
        let server = platform::health::serve(self.listener, router, internal.clone());
        let (served, _, _, _, _, _) = tokio::join!(
            async {
                let result = server.await;
                // If the server stops by itself, the workers must stop too.
                internal.cancel();
                result
            },
            consumer,
            relay,
            indexes,
            sweeper,
            housekeeping
        );
        forwarder.abort();
        // The feeds saw the shutdown signal; give the last store reads a moment to finish.
        self.state.background.close();
        if tokio::time::timeout(BACKGROUND_GRACE, self.state.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running at shutdown");
        }
        tracing::info!("gateway stopped");
        served.context("HTTP server failed")
    }
}

async fn ensure_ledger_indexes(ledger: MongoRetentionLedger, shutdown: CancellationToken) {
    let mut backoff = platform::retry::reconnect().build();
    loop {
        let result = tokio::select! {
            result = ledger.ensure_indexes() => result,
            _ = shutdown.cancelled() => return,
        };
        let Err(e) = result else { return };
        let delay = backoff.next().unwrap_or(Duration::from_secs(10));
        tracing::warn!(error = %e, ?delay, "cannot create the retention ledger's indexes yet; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn ensure_indexes(store: MongoEventStore, outbox: MongoOutbox, shutdown: CancellationToken) {
    let mut backoff = platform::retry::reconnect().build();
    loop {
        let attempt = async {
            store.ensure_indexes().await?;
            outbox.ensure_indexes().await
        };
        let result = tokio::select! {
            result = attempt => result,
            _ = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(error = %e, ?delay, "cannot create MongoDB indexes yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}
