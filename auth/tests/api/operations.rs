//! What operators and orchestrators rely on: schema, probes, gRPC health and reflection,
//! the demo user, waiting for the database, clean shutdown.

use crate::helpers::{
    Backend, PASSWORD, TestDatabase, on_both_backends, spawn_app, spawn_app_on, start,
};
use auth::configuration::DemoUser;
use auth::domain::EmailAddress;
use auth::{Application, Settings};
use futures::StreamExt;
use secrecy::SecretString;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

on_both_backends!(
    healthz_and_readyz_answer_200,
    grpc_health_reports_serving,
    the_demo_user_is_created_at_start_when_configured,
    no_user_exists_unless_the_demo_user_is_configured,
);

#[tokio::test]
async fn migrations_create_the_schema_on_a_fresh_database() {
    let app = spawn_app().await;
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
         WHERE table_schema = DATABASE()",
    )
    .fetch_all(app.mysql())
    .await
    .unwrap();
    tables.sort();
    assert_eq!(tables, ["_sqlx_migrations", "signing_keys", "users"]);
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(app.mysql())
            .await
            .unwrap();
    assert_eq!(applied, 2);
    // The email index is unique.
    let unique_email_index: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() \
         AND table_name = 'users' AND column_name = 'email' AND non_unique = 0",
    )
    .fetch_one(app.mysql())
    .await
    .unwrap();
    assert_eq!(unique_email_index, 1);
    app.stop().await;
}

#[tokio::test]
async fn sqlite_migrations_create_the_schema_in_a_wal_file() {
    let app = Backend::Sqlite.spawn().await;
    let mut tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(app.sqlite())
            .await
            .unwrap();
    tables.sort();
    assert_eq!(tables, ["_sqlx_migrations", "signing_keys", "users"]);
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(app.sqlite())
            .await
            .unwrap();
    assert_eq!(applied, 2);
    // The email index is unique.
    let unique_email_index: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_index_list('users') AS i \
         JOIN pragma_index_info(i.name) AS c WHERE i.\"unique\" = 1 AND c.name = 'email'",
    )
    .fetch_one(app.sqlite())
    .await
    .unwrap();
    assert_eq!(unique_email_index, 1);
    // WAL is a property of the file: it persists for every later connection.
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(app.sqlite())
        .await
        .unwrap();
    assert_eq!(journal_mode, "wal");
    app.stop().await;
}

/// SQLite has no advisory lock: migrations must still run once when several processes open a
/// fresh file together (here: several stores, each with its own connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_migrating_one_fresh_file_together_all_succeed() {
    use auth::store::{SqliteStore, UserStore};
    let database = Backend::Sqlite.fresh_database().await;
    let opened = futures::future::join_all((0..8).map(|_| {
        let url = database.url.clone();
        tokio::spawn(async move {
            let store =
                SqliteStore::connect(&url, platform::retry::bounded(Default::default(), 0)).await?;
            store.migrate().await?;
            anyhow::Ok(store)
        })
    }))
    .await;
    for store in opened {
        let store = store.unwrap().expect("every store migrates");
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn a_missing_sqlite_file_and_its_directory_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data").join("nested").join("auth.db");
    // No `mode=rwc`: the service creates the file anyway, as it creates a missing MySQL database.
    let database = TestDatabase::existing(&format!("sqlite://{}", file.display()));
    let app = spawn_app_on(&database, |_| {}).await;
    app.register("first@example.com", PASSWORD).await.unwrap();
    assert_eq!(app.user_count().await, 1);
    assert!(file.is_file(), "{}", file.display());
    app.stop().await;
}

async fn healthz_and_readyz_answer_200(backend: Backend) {
    let app = backend.spawn().await;
    let http = reqwest::Client::new();
    let healthz = http
        .get(format!("http://{}/healthz", app.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = http
        .get(format!("http://{}/readyz", app.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    app.stop().await;
}

async fn grpc_health_reports_serving(backend: Backend) {
    let app = backend.spawn().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "auth.v1.Auth"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_services_for_grpcurl() {
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["auth.v1.Auth", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    app.stop().await;
}

async fn the_demo_user_is_created_at_start_when_configured(backend: Backend) {
    let demo = || DemoUser {
        email: EmailAddress::parse("Demo@Example.com").unwrap(),
        password: SecretString::from(PASSWORD),
    };
    let app = backend
        .spawn_with(|settings| settings.demo_user = Some(demo()))
        .await;
    let token = app.login("demo@example.com", PASSWORD).await.unwrap().token;
    let user_id = app.validate(&token).await.unwrap().sub;

    // A second start finds it and leaves it alone.
    let again = spawn_app_on(&app.database, |settings| settings.demo_user = Some(demo())).await;
    assert_eq!(again.user_count().await, 1);
    let token = again
        .login("demo@example.com", PASSWORD)
        .await
        .unwrap()
        .token;
    assert_eq!(again.validate(&token).await.unwrap().sub, user_id);
    again.stop().await;
    app.stop().await;
}

async fn no_user_exists_unless_the_demo_user_is_configured(backend: Backend) {
    let app = backend.spawn().await;
    assert_eq!(app.user_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_missing_database_is_created() {
    let existing = platform::testing::fresh_mysql_database().await;
    let (server, _) = existing.rsplit_once('/').unwrap();
    let missing = format!("{server}/{}", platform::testing::unique_name("created"));
    let app = spawn_app_on(&TestDatabase::existing(&missing), |_| {}).await;
    app.register("first@example.com", PASSWORD).await.unwrap();
    assert_eq!(app.user_count().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn start_up_waits_for_the_database() {
    let database = Backend::MySql.fresh_database().await;
    let (scheme, rest) = database.url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let (userinfo, upstream) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (format!("{userinfo}@"), host.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    // The service is pointed at a port where nothing listens yet.
    let port = platform::testing::free_port();
    let late_url = format!("{scheme}://{userinfo}127.0.0.1:{port}/{path}");

    let build = tokio::spawn(Application::connect(Settings::for_tests(&late_url)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !build.is_finished(),
        "start-up should keep waiting, not give up"
    );

    // The database "comes up": a proxy to the real server starts listening on that port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let proxy = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let application = tokio::time::timeout(Duration::from_secs(30), build)
        .await
        .expect("start-up completes once the database is reachable")
        .unwrap()
        .unwrap();
    let app = start(application, &database).await;
    app.register("late@example.com", PASSWORD).await.unwrap();
    app.stop().await;
    proxy.abort();
}
