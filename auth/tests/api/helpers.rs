//! Starting the service for a test and calling it.

use auth::{Application, Settings};
use jsonwebtoken::EncodingKey;
use proto::auth::v1::auth_client::AuthClient;
use proto::auth::v1::{
    Claims, LoginRequest, LoginResponse, RegisterRequest, RegisterResponse, ValidateTokenRequest,
};
use sqlx::mysql::MySqlPool;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse battery staple";
/// The client address the tests log in from, unless a test says otherwise.
pub const CLIENT: &str = "192.0.2.10";

pub struct TestApp {
    pub client: AuthClient<Channel>,
    pub channel: Channel,
    pub http_addr: SocketAddr,
    pub database_url: String,
    pub db: MySqlPool,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

/// The service on a fresh database with the test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The service on a fresh database, with settings adjusted by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = platform::testing::fresh_mysql_database().await;
    spawn_app_on(&database_url, configure).await
}

/// The service on an existing database.
pub async fn spawn_app_on(database_url: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::for_tests(database_url);
    configure(&mut settings);
    let application = Application::build(settings)
        .await
        .expect("the application builds");
    start(application, database_url).await
}

/// Runs an already built application.
pub async fn start(application: Application, database_url: &str) -> TestApp {
    let grpc_addr = application.grpc_addr();
    let http_addr = application.http_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the gRPC listener");
    let db = MySqlPool::connect(database_url)
        .await
        .expect("connect to the test database");
    TestApp {
        client: AuthClient::new(channel.clone()),
        channel,
        http_addr,
        database_url: database_url.to_owned(),
        db,
        shutdown,
        server,
    }
}

impl TestApp {
    pub async fn register(&self, email: &str, password: &str) -> Result<RegisterResponse, Status> {
        self.client
            .clone()
            .register(RegisterRequest {
                email: email.to_owned(),
                password: password.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<LoginResponse, Status> {
        self.login_from(email, password, CLIENT).await
    }

    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        client_address: &str,
    ) -> Result<LoginResponse, Status> {
        self.client
            .clone()
            .login(LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
                client_address: client_address.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn validate(&self, token: &str) -> Result<Claims, Status> {
        self.client
            .clone()
            .validate_token(ValidateTokenRequest {
                token: token.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Registers `email` with [`PASSWORD`] and returns a token for it.
    pub async fn registered_token(&self, email: &str) -> String {
        self.register(email, PASSWORD).await.expect("register");
        self.login(email, PASSWORD).await.expect("login").token
    }

    /// The stored signing key, read straight from the database: `(kid, private key)`.
    pub async fn stored_signing_key(&self) -> (String, EncodingKey) {
        let (kid, pem): (String, String) = sqlx::query_as(
            "SELECT kid, private_key_pem FROM signing_keys ORDER BY generation DESC LIMIT 1",
        )
        .fetch_one(&self.db)
        .await
        .expect("a stored signing key");
        (
            kid,
            EncodingKey::from_ed_pem(pem.as_bytes()).expect("stored key is PKCS#8 PEM"),
        )
    }

    pub async fn user_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.db)
            .await
            .expect("count users")
    }

    /// Stops the service and checks it shut down cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the service stops within 10 s")
            .expect("the server task does not panic")
            .expect("the service stops without error");
    }
}

/// A unique email for one test.
pub fn unique_email(prefix: &str) -> String {
    format!("{}@example.com", platform::testing::unique_name(prefix))
}

/// Asserts the call failed with `code` and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: tonic::Code) -> Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}
