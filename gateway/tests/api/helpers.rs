//! The test harness: a real auth service (fresh MySQL database), a real RabbitMQ (isolated
//! topology), a real MongoDB-wire server, and the gateway on port 0, all in this process.

use contracts::events::{ConversionProgress, ConversionStarted, ConversionSucceeded};
use contracts::{Envelope, JobEvent};
use futures::StreamExt;
use gateway::configuration::Settings;
use gateway::store::{MongoOutbox, Outbox};
use gateway::{Application, Backends};
use platform::blob::{BlobStore, Bucket, GridFsStore, Metadata};
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::rabbit::RabbitBus;
use platform::testing::{fresh_mysql_database, isolated_topology, required_env};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static TRACING: Once = Once::new();

fn init_tracing() {
    // Logs only when asked for (TEST_LOG=1), to keep test output readable.
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            platform::telemetry::init("gateway-tests");
        }
    });
}

/// How to start the gateway; every field defaults to the shared test services.
#[derive(Default)]
pub struct Options {
    pub max_upload_bytes: Option<u64>,
    /// The gateway's AMQP URL (e.g. through a proxy the test can cut).
    pub amqp_url: Option<String>,
    /// MongoDB for the gateway's files, events and outbox (e.g. a private instance).
    pub mongodb_uri: Option<String>,
    /// Where the gateway looks for auth; default: an auth started for this test.
    pub auth_grpc_url: Option<String>,
    /// Any other change to the test settings (retention, rate limits, breaker, ...).
    pub configure: Option<Configure>,
}

/// A change to the gateway's test settings.
pub type Configure = Box<dyn FnOnce(&mut Settings) + Send>;

pub struct TestApp {
    pub address: String,
    /// The internal listener (`ADMIN_ADDR`): `/healthz`, `/readyz`, `/metrics`.
    pub admin_address: String,
    pub client: reqwest::Client,
    /// A bus on the real broker with the gateway's topology: publishes the converter's events
    /// and observes what the gateway publishes.
    pub bus: Arc<RabbitBus>,
    pub blobs: Arc<GridFsStore>,
    pub mongo: mongodb::Client,
    pub jobs_database: String,
    pub shutdown: CancellationToken,
    gateway: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    init_tracing();
    let shutdown = CancellationToken::new();
    let auth_grpc_url = match options.auth_grpc_url {
        Some(url) => url,
        None => spawn_auth(shutdown.clone()).await,
    };
    let amqp_real = required_env("AMQP_URL");
    let mongodb_uri = options
        .mongodb_uri
        .unwrap_or_else(|| required_env("MONGODB_URI"));
    let topology = isolated_topology();
    let amqp_url = options.amqp_url.unwrap_or_else(|| amqp_real.clone());

    let mut settings = Settings::for_tests(&auth_grpc_url, &mongodb_uri, &amqp_url);
    if let Some(max) = options.max_upload_bytes {
        settings.max_upload_bytes = max;
    }
    if let Some(configure) = options.configure {
        configure(&mut settings);
    }
    let jobs_database = settings.jobs_database.clone();
    let blobs = Arc::new(platform::testing::gridfs(&mongodb_uri).await);
    let gateway_bus = Arc::new(RabbitBus::new(amqp_url).with_topology(topology.clone()));
    let test_bus = Arc::new(RabbitBus::new(amqp_real).with_topology(topology.clone()));
    // Declare the gateway's queue now so events published by the test before the gateway's
    // consumer is up are not dropped as unroutable.
    declare(
        &test_bus,
        &gateway::pipeline::subscription(platform::config::DEFAULT_DELIVERY_LIMIT),
    )
    .await;

    let mut backends = Backends::connect(&settings)
        .await
        .expect("the gateway's backends");
    backends.bus = gateway_bus;
    let application = Application::build(settings, backends)
        .await
        .expect("the gateway builds");
    let port = application.port();
    let admin_port = application.admin_address().port();
    let gateway = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let mongo = mongodb::Client::with_uri_str(&mongodb_uri)
        .await
        .expect("MongoDB client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        admin_address: format!("http://127.0.0.1:{admin_port}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        bus: test_bus,
        blobs,
        mongo,
        jobs_database,
        shutdown,
        gateway: Some(gateway),
    }
}

/// Starts auth on a fresh MySQL database; returns its gRPC URL.
pub async fn spawn_auth(shutdown: CancellationToken) -> String {
    let database_url = fresh_mysql_database().await;
    let auth = auth::Application::connect(auth::Settings::for_tests(&database_url))
        .await
        .expect("auth builds");
    let url = format!("http://{}", auth.grpc_addr());
    tokio::spawn(auth.run_until_stopped(shutdown));
    url
}

pub async fn declare(bus: &RabbitBus, subscription: &Subscription) {
    let connection = bus.open_connection().await.expect("RabbitMQ reachable");
    let channel = connection.create_channel().await.expect("channel");
    bus.declare_subscription(&channel, subscription)
        .await
        .expect("declare queue");
    let _ = connection.close(200, "declared".into()).await;
}

/// Every event the gateway publishes, as a consumer on its own queue sees them.
#[derive(Clone, Default)]
pub struct Observed(pub Arc<Mutex<Vec<Envelope>>>);

struct Recorder(Observed);

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        self.0.0.lock().unwrap().push(delivery.envelope.clone());
        Outcome::Done
    }
}

impl Observed {
    pub fn all(&self) -> Vec<Envelope> {
        self.0.lock().unwrap().clone()
    }

    pub fn of_type(&self, event_type: &str) -> Vec<Envelope> {
        self.all()
            .into_iter()
            .filter(|e| e.event_type() == event_type)
            .collect()
    }

    /// Waits until `predicate` holds for the events seen so far.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&[Envelope]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate(&self.all()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; saw {:?}",
                self.all()
                    .iter()
                    .map(|e| e.event_type())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A URL on the internal listener (health, readiness, metrics).
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_address)
    }

    /// Starts a consumer (like another service would be) on all job events.
    pub async fn observe(&self) -> Observed {
        let subscription = Subscription::new(
            format!("observer-{}", Uuid::new_v4().simple()),
            &JobEvent::ALL_TYPES,
        )
        .with_prefetch(32);
        declare(&self.bus, &subscription).await;
        let observed = Observed::default();
        let bus = self.bus.clone();
        let handler = Arc::new(Recorder(observed.clone()));
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move { bus.consume(subscription, handler, shutdown).await });
        observed
    }

    pub async fn outbox_pending(&self) -> u64 {
        MongoOutbox::new(&self.mongo, &self.jobs_database)
            .pending()
            .await
            .expect("outbox readable")
    }

    /// Stops the gateway gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.gateway.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the gateway stops within 30 s")
                .expect("the gateway task did not panic")
                .expect("the gateway stopped cleanly");
        }
    }

    pub async fn signup(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/signup"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/login"))
            .basic_auth(email, Some(password))
            .send()
            .await
            .unwrap()
    }

    /// A new account, logged in.
    pub async fn new_user(&self) -> User {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let password = "correct horse battery staple".to_owned();
        let signup = self.signup(&email, &password).await;
        assert_eq!(
            signup.status(),
            201,
            "signup: {}",
            signup.text().await.unwrap()
        );
        let body: Value = signup.json().await.unwrap();
        let login = self.login(&email, &password).await;
        assert_eq!(login.status(), 200);
        let token = login.text().await.unwrap();
        User {
            id: body["user_id"].as_str().unwrap().to_owned(),
            email,
            password,
            token,
        }
    }

    /// Uploads `bytes` as `filename` with extra query string `query` (may be empty).
    pub async fn upload(
        &self,
        user: &User,
        filename: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> reqwest::Response {
        let form = Form::new().part(
            "file",
            Part::bytes(bytes)
                .file_name(filename.to_owned())
                .mime_str("video/mp4")
                .unwrap(),
        );
        self.client
            .post(self.url(&format!("/upload{query}")))
            .bearer_auth(&user.token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Uploads a small video and returns the 202 body.
    pub async fn submit(&self, user: &User, filename: &str) -> Value {
        let response = self
            .upload(user, filename, b"not really a video".to_vec(), "")
            .await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        let accepted: api::UploadAccepted =
            serde_json::from_value(body.clone()).expect("the contract's upload answer");
        assert_eq!(accepted.status, api::JobStatus::Submitted);
        body
    }

    pub async fn get(&self, user: &User, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn job(&self, user: &User, job_id: &str) -> Value {
        let response = self.get(user, &format!("/jobs/{job_id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Polls the job until its status is `status`.
    pub async fn wait_for_status(&self, user: &User, job_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let job = self.job(user, job_id).await;
            if job["status"] == status {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job never became {status}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Publishes an event as the converter would.
    pub async fn publish(&self, job_id: Uuid, event: JobEvent) -> Envelope {
        let envelope = Envelope::new(job_id, "converter", event);
        self.bus.publish(&envelope).await.expect("publish");
        envelope
    }

    /// Plays the converter's part for a submitted job: started, progress, an MP3 stored with
    /// the converter's metadata, succeeded. Returns the MP3's id and bytes.
    pub async fn convert(
        &self,
        user: &User,
        job_id: &str,
        original_filename: &str,
    ) -> (String, Vec<u8>) {
        let job = Uuid::parse_str(job_id).unwrap();
        self.publish(
            job,
            JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
        )
        .await;
        self.publish(
            job,
            JobEvent::ConversionProgress(ConversionProgress { percent: 50 }),
        )
        .await;
        let mp3 = mp3ish_bytes(300_000);
        let (mp3_id, _) = self.store_mp3(user, job_id, original_filename, &mp3).await;
        self.publish(
            job,
            JobEvent::ConversionSucceeded(ConversionSucceeded {
                owner_id: user.id.clone(),
                owner_email: user.email.clone(),
                original_filename: original_filename.to_owned(),
                mp3_file_id: mp3_id.clone(),
                mp3_size_bytes: mp3.len() as u64,
                duration_seconds: 12.5,
                bitrate_kbps: 192,
                passthrough: false,
            }),
        )
        .await;
        (mp3_id, mp3)
    }

    /// Writes an MP3 into the `mp3s` bucket with the metadata the converter writes.
    pub async fn store_mp3(
        &self,
        user: &User,
        job_id: &str,
        original_filename: &str,
        bytes: &[u8],
    ) -> (String, u64) {
        let stem = original_filename
            .rsplit_once('.')
            .map(|(s, _)| s)
            .unwrap_or(original_filename);
        let mut metadata = Metadata::new();
        metadata.insert("job_id".into(), job_id.into());
        metadata.insert("owner_id".into(), user.id.clone().into());
        metadata.insert("original_filename".into(), original_filename.into());
        metadata.insert("duration_seconds".into(), 12.5.into());
        metadata.insert("bitrate_kbps".into(), 192.into());
        let mut upload = self
            .blobs
            .create(Bucket::Mp3s, &format!("{stem}.mp3"), metadata)
            .await
            .unwrap();
        for chunk in bytes.chunks(64 * 1024) {
            upload.write(chunk).await.unwrap();
        }
        let info = upload.finish().await.unwrap();
        (info.id, info.length)
    }

    /// Whether the file exists in `bucket`, and how many GridFS chunks carry its id.
    pub async fn file_and_chunks(&self, bucket: Bucket, file_id: &str) -> (bool, u64) {
        let oid = mongodb::bson::oid::ObjectId::parse_str(file_id).expect("a file id");
        let database = self.mongo.database(bucket.database());
        let files = database
            .collection::<mongodb::bson::Document>("fs.files")
            .count_documents(mongodb::bson::doc! {"_id": oid})
            .await
            .unwrap();
        let chunks = database
            .collection::<mongodb::bson::Document>("fs.chunks")
            .count_documents(mongodb::bson::doc! {"files_id": oid})
            .await
            .unwrap();
        (files > 0, chunks)
    }

    /// Waits until the file and all its chunks are gone.
    pub async fn wait_until_deleted(&self, bucket: Bucket, file_id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (exists, chunks) = self.file_and_chunks(bucket, file_id).await;
            if !exists && chunks == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{bucket:?} file {file_id} still there (file: {exists}, chunks: {chunks})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The job's events as the gateway's event store holds them.
    pub async fn stored_events(&self, job_id: &str) -> Vec<Envelope> {
        use gateway::store::{EventStore, MongoEventStore};
        MongoEventStore::new(&self.mongo, &self.jobs_database)
            .events_of_job(Uuid::parse_str(job_id).unwrap())
            .await
            .expect("event store readable")
    }

    /// Files in `bucket` whose metadata names `owner_id`.
    pub async fn files_of(&self, bucket: Bucket, owner_id: &str) -> u64 {
        self.mongo
            .database(bucket.database())
            .collection::<mongodb::bson::Document>("fs.files")
            .count_documents(mongodb::bson::doc! {"metadata.owner_id": owner_id})
            .await
            .unwrap()
    }
}

pub struct User {
    pub id: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

/// Bytes that look like an MP3 stream (frame sync words) with a varying payload.
pub fn mp3ish_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 417 {
            0 => 0xFF,
            1 => 0xFB,
            _ => (i * 31 % 251) as u8,
        })
        .collect()
}

/// Asserts the JSON error shape and status of a response; returns the body.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    assert!(response.headers().contains_key("x-request-id"));
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    let typed: api::ErrorBody = serde_json::from_value(body.clone()).expect("{error, message}");
    assert_eq!(typed.error, code);
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// Reads a Server-Sent Events response to its end: `(event type, data)` pairs.
pub async fn read_sse(response: reqwest::Response, timeout: Duration) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the event stream did not end in time");
        match next {
            None => break,
            Some(chunk) => buffer.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk"))),
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event_type = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event_type = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((event_type, serde_json::from_str(&data).expect("JSON data")));
            }
        }
    }
    events
}
