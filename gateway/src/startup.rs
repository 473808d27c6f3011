//! Composition: builds the gateway from its settings and backing services, and runs the public
//! HTTP server, the internal one (health, readiness, metrics on `ADMIN_ADDR`, never routed by the
//! ingress), the event-store consumer, the outbox relay and the sweepers until shutdown.

use crate::backends::Backends;
use crate::configuration::Settings;
use crate::observability;
use crate::pipeline::{
    self, EventPublisher, EventStoreFeeder, FileJanitor, JobUpdates, Lifecycle, OrphanSweeper,
    Sweeper, Watchdog,
};
use crate::rate_limit::{RateLimits, StreamLimits};
use crate::routes::{self, AppState};
use crate::store::{Outbox, StoreError};
use crate::token_verifier::TokenVerifier;
use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, Request};
use axum::middleware::from_fn;
use platform::bus::{AutoRedrive, EventBus};
use platform::health::{Health, probe};
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
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// How often idle rate-limit keys are forgotten.
const RATE_LIMIT_HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How long shutdown waits for request-spawned tasks (SSE feeds) to finish their last read.
const BACKGROUND_GRACE: Duration = Duration::from_secs(5);

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    /// `ADMIN_ADDR`: `/healthz`, `/readyz` and `/metrics`, kept off the public listener.
    admin_listener: TcpListener,
    admin_address: SocketAddr,
    state: AppState,
    health: Health,
    bus: Arc<dyn EventBus>,
    outbox: Arc<dyn Outbox>,
    relay_wake: Arc<Notify>,
    outbox_poll_interval: Duration,
    /// `DELIVERY_LIMIT` of the event-store consumer's queue.
    delivery_limit: u32,
    /// Kept to prepare the stores (indexes) once they answer, and closed at the end.
    backends: Backends,
    lifecycle: Arc<Lifecycle>,
    sweeper: Sweeper,
    retention_sweep_interval: Duration,
    watchdog: Watchdog,
    job_watch_interval: Duration,
    orphans: OrphanSweeper,
    orphan_sweep_interval: Duration,
    dead_letter_redrive: AutoRedrive,
    header_read_timeout: Duration,
    body_idle_timeout: Duration,
    shutdown: CancellationToken,
}

impl Application {
    /// The production composition: [`Backends::connect`], then [`Application::build`].
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let backends = Backends::connect(&settings).await?;
        Self::build(settings, backends).await
    }

    /// Binds the HTTP listener and wires everything; no backing service needs to be up yet.
    pub async fn build(settings: Settings, backends: Backends) -> anyhow::Result<Self> {
        observability::install_metrics();
        let store = backends.events.clone();
        let outbox = backends.outbox.clone();
        let ledger = backends.ledger.clone();
        let accounts = backends.accounts.clone();
        let bus = backends.bus.clone();
        let blobs = backends.blobs.clone();
        let updates = JobUpdates::default();
        let relay_wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let janitor = FileJanitor::new(blobs.clone());
        let publisher = EventPublisher {
            outbox: outbox.clone(),
            store: store.clone(),
            bus: bus.clone(),
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
        let watchdog = Watchdog {
            watch: backends.watch.clone(),
            store: store.clone(),
            bus: bus.clone(),
            publisher: publisher.clone(),
            stall_timeout: settings.job_stall_timeout,
            max_resubmissions: settings.job_max_resubmissions,
        };
        let orphans = OrphanSweeper::new(
            blobs.clone(),
            store.clone(),
            backends.outbox.clone(),
            janitor.clone(),
            settings.orphan_grace,
        );
        let state = AppState {
            tokens: Arc::new(TokenVerifier::new(
                accounts.clone(),
                settings.keys_refresh_min_interval,
            )),
            accounts: accounts.clone(),
            blobs: blobs.clone(),
            store: store.clone(),
            publisher,
            updates,
            max_upload_bytes: settings.max_upload_bytes,
            public_base_url: settings.public_base_url.clone().into(),
            sse_poll_interval: settings.sse_poll_interval,
            shutdown: shutdown.clone(),
            limits: Arc::new(RateLimits::new(settings.rate_limits)),
            streams: Arc::new(StreamLimits::new(
                settings.sse_streams_per_user,
                settings.sse_streams_max,
            )),
            feeds: Arc::default(),
            retention: settings.retention,
            ledger,
            janitor,
            trust_forwarded_for: settings.trust_forwarded_for,
            background: TaskTracker::new(),
        };
        let health = Health::new(vec![
            probe("auth", accounts, |accounts| async move {
                accounts.verification_keys().await.map(drop)
            }),
            probe(
                "event_store",
                store,
                |store| async move { store.check().await },
            ),
            probe(
                "blob_store",
                blobs,
                |blobs| async move { blobs.check().await },
            ),
            probe(
                "event_bus",
                bus.clone(),
                |bus| async move { bus.check().await },
            ),
        ]);
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        let address = listener.local_addr()?;
        let admin_listener = TcpListener::bind(settings.admin_addr)
            .await
            .with_context(|| format!("cannot listen on ADMIN_ADDR {}", settings.admin_addr))?;
        let admin_address = admin_listener.local_addr()?;
        Ok(Self {
            listener,
            address,
            admin_listener,
            admin_address,
            state,
            health,
            bus,
            outbox,
            relay_wake,
            outbox_poll_interval: settings.outbox_poll_interval,
            delivery_limit: settings.delivery_limit,
            backends,
            lifecycle,
            sweeper,
            retention_sweep_interval: settings.retention_sweep_interval,
            watchdog,
            job_watch_interval: settings.job_watch_interval,
            orphans,
            orphan_sweep_interval: settings.orphan_sweep_interval,
            dead_letter_redrive: settings.dead_letter_redrive,
            header_read_timeout: settings.header_read_timeout,
            body_idle_timeout: settings.body_idle_timeout,
            shutdown,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Where the internal endpoints (`/healthz`, `/readyz`, `/metrics`) listen.
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// The public HTTP router with request ids, trace context, a span per request, the access
    /// log and HTTP metrics (also usable without a listener). Health and metrics are not on it:
    /// they answer 404 here and live on [`Self::admin_router`].
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
            // Route layers see the matched route template (`/jobs/{id}`), never the raw path.
            .route_layer(from_fn(observability::record_route))
            .route_layer(from_fn(platform::metrics::track_http))
            .layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                    .layer(from_fn(observability::trace_context))
                    .layer(trace)
                    .layer(from_fn(observability::access_log))
                    .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                    // A body that sends nothing for BODY_IDLE_TIMEOUT ends with an error.
                    .layer(RequestBodyTimeoutLayer::new(self.body_idle_timeout)),
            )
    }

    /// The internal router: `/healthz`, `/readyz` (which dependency is down, in plain words) and
    /// `/metrics`. Probes and scrapes are not counted in the HTTP metrics.
    fn admin_router(&self) -> Router {
        self.health.clone().router()
    }

    /// Serves until `shutdown` fires, with the event-store consumer and the outbox relay
    /// beside the server; all three stop gracefully.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let router = self.router();
        let admin_router = self.admin_router();
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
            let (store, outbox, ledger, watch, blobs) = (
                self.backends.events.clone(),
                self.backends.outbox.clone(),
                self.backends.ledger.clone(),
                self.backends.watch.clone(),
                self.backends.blobs.clone(),
            );
            async move {
                platform::retry::until_ready(
                    "preparing the stores (indexes)",
                    &shutdown,
                    || async {
                        store.prepare().await?;
                        outbox.prepare().await?;
                        ledger.prepare().await?;
                        watch.prepare().await?;
                        blobs
                            .prepare()
                            .await
                            .map_err(|e| StoreError::Unavailable(e.to_string()))
                    },
                )
                .await;
            }
        };
        let feeder = Arc::new(EventStoreFeeder {
            store: self.state.store.clone(),
            updates: self.state.updates.clone(),
            lifecycle: self.lifecycle.clone(),
            watch: self.backends.watch.clone(),
        });
        let consumer = {
            let bus = self.bus.clone();
            let shutdown = internal.clone();
            async move {
                if let Err(e) = bus
                    .consume(
                        pipeline::subscription(self.delivery_limit),
                        feeder,
                        shutdown,
                    )
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
        let watchdog = self.watchdog.run(self.job_watch_interval, internal.clone());
        let orphans = self
            .orphans
            .run(self.orphan_sweep_interval, internal.clone());
        // Events that died in the gateway's queue (a MongoDB outage longer than its retries) come
        // back by themselves after a cool-down, a bounded number of times.
        let redrive = self.dead_letter_redrive.run(
            self.bus.clone(),
            pipeline::QUEUE.to_owned(),
            internal.clone(),
        );
        let housekeeping = self
            .state
            .limits
            .clone()
            .housekeeping(RATE_LIMIT_HOUSEKEEPING, internal.clone());
        tracing::info!(address = %self.address, admin = %self.admin_address, "gateway listening");
        let admin = {
            let listener = self.admin_listener;
            let internal = internal.clone();
            async move {
                let result =
                    platform::health::serve(listener, admin_router, internal.clone()).await;
                // Without probes the pod would be killed as dead: stop cleanly instead.
                internal.cancel();
                result
            }
        };
        let server = platform::health::serve_with_header_timeout(
            self.listener,
            router,
            internal.clone(),
            self.header_read_timeout,
        );
        let (served, admin_served, _, _, _, _, _, _, _, _) = tokio::join!(
            async {
                let result = server.await;
                // If the server stops by itself, the workers must stop too.
                internal.cancel();
                result
            },
            admin,
            consumer,
            relay,
            indexes,
            sweeper,
            watchdog,
            orphans,
            redrive,
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
        self.backends.close().await;
        tracing::info!("gateway stopped");
        served.context("HTTP server failed")?;
        admin_served.context("internal HTTP server (ADMIN_ADDR) failed")
    }
}
