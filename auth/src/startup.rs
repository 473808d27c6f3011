//! `Application`: wires the store, keys, hasher and limiter into the gRPC and HTTP servers.

use crate::account_service::Accounts;
use crate::backends::Backends;
use crate::configuration::Settings;
use crate::grpc::AuthService;
use crate::health::report_grpc_health;
use crate::keys::KeyRing;
use crate::login_limiter::LoginLimiter;
use crate::passwords::PasswordHasher;
use crate::store::{Store, UserStore};
use crate::telemetry::GrpcTelemetryLayer;
use crate::token_issuer::TokenService;
use anyhow::Context;
use contracts::auth::v1::auth_server::AuthServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;

/// Largest request accepted; real requests are a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// A request taking longer than this is cut off (a login is well under a second).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Application {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    service: AuthService,
    users: Arc<dyn UserStore>,
}

/// The parts of the service that do not depend on listeners, shared with the operator commands.
pub(crate) struct Core {
    pub accounts: Accounts,
    pub tokens: Arc<TokenService>,
    pub store: Arc<dyn Store>,
}

impl Core {
    /// Loads or creates the signing key in the store and puts the service together.
    pub(crate) async fn assemble(settings: &Settings, backends: Backends) -> anyhow::Result<Self> {
        let store = backends.store;
        let keys = KeyRing::load(store.as_ref(), settings.signing_key.as_ref())
            .await
            .context("loading the signing key")?;
        let tokens = Arc::new(TokenService::new(
            Arc::new(keys),
            &settings.issuer,
            &settings.audience,
            settings.token_ttl,
        ));
        let hasher = PasswordHasher::new(settings.password_hashing).await?;
        let accounts = Accounts::new(
            store.clone() as Arc<dyn UserStore>,
            hasher,
            tokens.clone(),
            LoginLimiter::new(settings.login_limits),
        );
        Ok(Self {
            accounts,
            tokens,
            store,
        })
    }
}

impl Application {
    /// The production composition: [`Backends::connect`] (waiting for the database), then
    /// [`Application::build`].
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let backends = Backends::connect(&settings).await?;
        Self::build(settings, backends).await
    }

    /// Loads or creates the signing key, creates the demo user if configured, and binds both
    /// listeners. The store comes connected and migrated ([`Backends::connect`]).
    pub async fn build(settings: Settings, backends: Backends) -> anyhow::Result<Self> {
        crate::telemetry::install_metrics();
        let core = Core::assemble(&settings, backends).await?;
        if let Some(demo) = &settings.demo_user {
            let created = core
                .accounts
                .ensure_user(demo.email.as_str(), demo.password.clone())
                .await
                .context("creating the demo user")?;
            if created {
                tracing::info!(email = %demo.email, "demo user created");
            }
        }
        let grpc_listener = TcpListener::bind(settings.grpc_addr)
            .await
            .with_context(|| format!("binding GRPC_ADDR {}", settings.grpc_addr))?;
        let http_listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("binding HTTP_ADDR {}", settings.http_addr))?;
        Ok(Self {
            grpc_addr: grpc_listener.local_addr()?,
            http_addr: http_listener.local_addr()?,
            grpc_listener,
            http_listener,
            service: AuthService::new(core.accounts, core.tokens),
            users: core.store as Arc<dyn UserStore>,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves gRPC and HTTP until `shutdown` fires (or either server fails, which stops both).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop = shutdown.child_token();
        let service_name = <AuthServer<AuthService> as NamedService>::NAME;

        let (reporter, health_service) = tonic_health::server::health_reporter();
        reporter.set_serving::<AuthServer<AuthService>>().await;
        let health_task = tokio::spawn(report_grpc_health(
            reporter,
            service_name,
            self.users.clone(),
            stop.clone(),
        ));
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(contracts::auth::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;

        let grpc = tonic::transport::Server::builder()
            .timeout(REQUEST_TIMEOUT)
            .layer(GrpcTelemetryLayer)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(AuthServer::new(self.service).max_decoding_message_size(MAX_REQUEST_BYTES))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc_listener),
                stop.clone().cancelled_owned(),
            );
        let database =
            platform::health::probe(
                "database",
                self.users,
                |users| async move { users.ping().await },
            );
        let router = platform::health::Health::new(vec![database]).router();
        let http = platform::health::serve(self.http_listener, router, stop.clone());

        tracing::info!(grpc = %self.grpc_addr, http = %self.http_addr, "auth serving");
        let (grpc_result, http_result) = tokio::join!(
            async {
                let result = grpc.await;
                stop.cancel();
                result
            },
            async {
                let result = http.await;
                stop.cancel();
                result
            },
        );
        let _ = health_task.await;
        grpc_result.context("gRPC server failed")?;
        http_result.context("HTTP server failed")?;
        tracing::info!("auth stopped");
        Ok(())
    }
}
