//! Starting the service for a test, on MySQL/MariaDB or on SQLite, and calling it.

use auth::{Application, Settings};
use contracts::auth::v1::auth_client::AuthClient;
use contracts::auth::v1::{
    Claims, LoginRequest, LoginResponse, RegisterRequest, RegisterResponse, ValidateTokenRequest,
};
use jsonwebtoken::EncodingKey;
use sqlx::mysql::MySqlPool;
use sqlx::sqlite::SqlitePool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse battery staple";
/// The client address the tests log in from, unless a test says otherwise.
pub const CLIENT: &str = "192.0.2.10";

/// Defines `NAME::mysql` and `NAME::sqlite` for each `async fn NAME(backend: Backend)`, so one
/// test body checks the same behaviour on both stores.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn mysql() {
                super::$test($crate::helpers::Backend::MySql).await
            }

            #[tokio::test]
            async fn sqlite() {
                super::$test($crate::helpers::Backend::Sqlite).await
            }
        }
    )+};
}
pub(crate) use on_both_backends;

/// The store behind the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh database on the `DATABASE_URL` server.
    MySql,
    /// A file in a fresh temporary directory (the all-in-one mode's store).
    Sqlite,
}

impl Backend {
    /// An empty database of this backend.
    pub async fn fresh_database(self) -> TestDatabase {
        match self {
            Backend::MySql => {
                TestDatabase::existing(&platform::testing::fresh_mysql_database().await)
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                TestDatabase {
                    url: format!("sqlite://{}?mode=rwc", dir.path().join("auth.db").display()),
                    backend: Backend::Sqlite,
                    _dir: Some(Arc::new(dir)),
                }
            }
        }
    }

    /// The service on a fresh database of this backend, with the test settings.
    pub async fn spawn(self) -> TestApp {
        self.spawn_with(|_| {}).await
    }

    /// The service on a fresh database of this backend, with settings adjusted by `configure`.
    pub async fn spawn_with(self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        spawn_app_on(&self.fresh_database().await, configure).await
    }
}

/// A database URL for the service; a SQLite file is deleted with the last clone of this.
#[derive(Clone)]
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Option<Arc<TempDir>>,
}

impl TestDatabase {
    /// A database at `url`, which may not exist yet; the backend follows the URL's scheme.
    pub fn existing(url: &str) -> Self {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::MySql
        };
        Self {
            url: url.to_owned(),
            backend,
            _dir: None,
        }
    }

    /// A direct connection, for looking at what the service stored.
    async fn connect(&self) -> Db {
        match self.backend {
            Backend::MySql => Db::MySql(
                MySqlPool::connect(&self.url)
                    .await
                    .expect("connect to the test database"),
            ),
            Backend::Sqlite => Db::Sqlite(
                SqlitePool::connect(&self.url)
                    .await
                    .expect("open the test database"),
            ),
        }
    }
}

/// A test's own connection to the service's database.
pub enum Db {
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Runs the same sqlx expression against whichever pool `db` holds.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $query:expr) => {
        match $db {
            Db::MySql($pool) => $query,
            Db::Sqlite($pool) => $query,
        }
    };
}

/// An account row as the test reads it back.
#[derive(Debug)]
pub struct StoredUser {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub struct TestApp {
    pub client: AuthClient<Channel>,
    pub channel: Channel,
    pub http_addr: SocketAddr,
    pub database: TestDatabase,
    pub db: Db,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

/// The service on a fresh MySQL database with the test settings.
pub async fn spawn_app() -> TestApp {
    Backend::MySql.spawn().await
}

/// The service on a fresh MySQL database, with settings adjusted by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    Backend::MySql.spawn_with(configure).await
}

/// The service on an existing database.
pub async fn spawn_app_on(
    database: &TestDatabase,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = Settings::for_tests(&database.url);
    configure(&mut settings);
    let application = Application::connect(settings)
        .await
        .expect("the application builds");
    start(application, database).await
}

/// Runs an already built application.
pub async fn start(application: Application, database: &TestDatabase) -> TestApp {
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
    TestApp {
        client: AuthClient::new(channel.clone()),
        channel,
        http_addr,
        db: database.connect().await,
        database: database.clone(),
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

    /// The MySQL pool, for a test that only runs on MySQL.
    pub fn mysql(&self) -> &MySqlPool {
        match &self.db {
            Db::MySql(pool) => pool,
            Db::Sqlite(_) => panic!("this test runs on MySQL only"),
        }
    }

    /// The SQLite pool, for a test that only runs on SQLite.
    pub fn sqlite(&self) -> &SqlitePool {
        match &self.db {
            Db::Sqlite(pool) => pool,
            Db::MySql(_) => panic!("this test runs on SQLite only"),
        }
    }

    /// The stored signing key, read straight from the database: `(kid, private key)`.
    pub async fn stored_signing_key(&self) -> (String, EncodingKey) {
        let (kid, pem): (String, String) = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT kid, private_key_pem FROM signing_keys ORDER BY generation DESC LIMIT 1",
        )
        .fetch_one(pool)
        .await
        .expect("a stored signing key"));
        (
            kid,
            EncodingKey::from_ed_pem(pem.as_bytes()).expect("stored key is PKCS#8 PEM"),
        )
    }

    pub async fn signing_key_count(&self) -> i64 {
        on_pool!(&self.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
            .fetch_one(pool)
            .await
            .expect("count signing keys"))
    }

    pub async fn user_count(&self) -> i64 {
        on_pool!(&self.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(pool)
            .await
            .expect("count users"))
    }

    /// Every stored account, by email.
    pub async fn stored_users(&self) -> Vec<StoredUser> {
        const QUERY: &str = "SELECT id, email, password_hash, created_at, updated_at \
                             FROM users ORDER BY email";
        type Row<E> = (
            String,
            E,
            String,
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
        );
        let rows: Vec<Row<String>> = match &self.db {
            // The column is binary-collated, so MySQL hands the email back as bytes.
            Db::MySql(pool) => sqlx::query_as::<_, Row<Vec<u8>>>(QUERY)
                .fetch_all(pool)
                .await
                .expect("read users")
                .into_iter()
                .map(|(id, email, hash, created, updated)| {
                    let email = String::from_utf8(email).expect("stored emails are UTF-8");
                    (id, email, hash, created, updated)
                })
                .collect(),
            Db::Sqlite(pool) => sqlx::query_as(QUERY)
                .fetch_all(pool)
                .await
                .expect("read users"),
        };
        rows.into_iter()
            .map(
                |(id, email, password_hash, created_at, updated_at)| StoredUser {
                    id,
                    email,
                    password_hash,
                    created_at,
                    updated_at,
                },
            )
            .collect()
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
