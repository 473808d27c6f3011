//! Several workers, dying workers and a broker that takes deliveries back, against real RabbitMQ
//! and MongoDB-wire: two replicas given the same job mid-conversion make one MP3 and one success
//! event (the MongoDB conversion lease); a job whose worker is SIGKILLed on every delivery ends
//! failed with a reason after the queue's delivery limit while the other jobs go on; a conversion
//! longer than the broker's `consumer_timeout` (a private node) still completes exactly once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::events::{FailureKind, JobSubmitted};
use contracts::{Envelope, JobEvent};
use converter::worker::lease::MongoLeases;
use converter::worker::{Application, Backends, Settings};
use platform::blob::{
    BlobError, BlobInfo, BlobStore, BlobUpload, Bucket, ByteStream, GridFsStore, Metadata,
};
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::rabbit::{RabbitBus, Topology};
use platform::testing::{PrivateRabbit, required_env, unique_name};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Collects every event the workers publish on the test topology.
#[derive(Default)]
struct Probe {
    events: Mutex<Vec<Envelope>>,
}

#[async_trait]
impl EventHandler for Probe {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        self.events.lock().unwrap().push(delivery.envelope.clone());
        Outcome::Done
    }
}

impl Probe {
    fn of(&self, job: Uuid) -> Vec<Envelope> {
        let events = self.events.lock().unwrap();
        events.iter().filter(|e| e.job_id == job).cloned().collect()
    }

    fn outcomes(&self, job: Uuid) -> Vec<Envelope> {
        self.of(job).into_iter().filter(is_terminal).collect()
    }

    fn started(&self, job: Uuid) -> usize {
        self.of(job)
            .iter()
            .filter(|e| e.event_type() == "conversion.started")
            .count()
    }

    async fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done() {
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<(Uuid, &str)> = self
                    .events
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|e| (e.job_id, e.event_type()))
                    .collect();
                panic!("timed out waiting for {what}; saw {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn is_terminal(e: &Envelope) -> bool {
    matches!(
        e.event,
        JobEvent::ConversionSucceeded(_) | JobEvent::ConversionFailed(_)
    )
}

/// The ids of `events`, each once.
fn distinct_ids(events: &[Envelope]) -> HashSet<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// A blob store whose video reads wait `delay` first: a conversion that takes that long.
struct SlowVideos {
    inner: Arc<GridFsStore>,
    delay: Duration,
}

#[async_trait]
impl BlobStore for SlowVideos {
    async fn create(
        &self,
        bucket: Bucket,
        filename: &str,
        metadata: Metadata,
    ) -> Result<Box<dyn BlobUpload>, BlobError> {
        self.inner.create(bucket, filename, metadata).await
    }

    async fn info(&self, bucket: Bucket, id: &str) -> Result<Option<BlobInfo>, BlobError> {
        self.inner.info(bucket, id).await
    }

    async fn find_by_metadata(
        &self,
        bucket: Bucket,
        key: &str,
        value: &str,
    ) -> Result<Option<BlobInfo>, BlobError> {
        self.inner.find_by_metadata(bucket, key, value).await
    }

    async fn read(
        &self,
        bucket: Bucket,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream, BlobError> {
        if bucket == Bucket::Videos {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.read(bucket, id, range).await
    }

    async fn delete(&self, bucket: Bucket, id: &str) -> Result<bool, BlobError> {
        self.inner.delete(bucket, id).await
    }

    async fn list_older_than(
        &self,
        bucket: Bucket,
        before: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>, BlobError> {
        self.inner
            .list_older_than(bucket, before, after, limit)
            .await
    }

    async fn check(&self) -> Result<(), BlobError> {
        self.inner.check().await
    }
}

/// A blob store that SIGKILLs its own process when the worker reads the video `poison`: a file
/// the converter dies on (as an out-of-memory kill would) every time it is delivered.
struct KillerVideos {
    inner: Arc<GridFsStore>,
    poison: String,
}

#[async_trait]
impl BlobStore for KillerVideos {
    async fn create(
        &self,
        bucket: Bucket,
        filename: &str,
        metadata: Metadata,
    ) -> Result<Box<dyn BlobUpload>, BlobError> {
        self.inner.create(bucket, filename, metadata).await
    }

    async fn info(&self, bucket: Bucket, id: &str) -> Result<Option<BlobInfo>, BlobError> {
        self.inner.info(bucket, id).await
    }

    async fn find_by_metadata(
        &self,
        bucket: Bucket,
        key: &str,
        value: &str,
    ) -> Result<Option<BlobInfo>, BlobError> {
        self.inner.find_by_metadata(bucket, key, value).await
    }

    async fn read(
        &self,
        bucket: Bucket,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream, BlobError> {
        if bucket == Bucket::Videos && id == self.poison {
            // SAFETY: signals this very process, which is what the test wants.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        self.inner.read(bucket, id, range).await
    }

    async fn delete(&self, bucket: Bucket, id: &str) -> Result<bool, BlobError> {
        self.inner.delete(bucket, id).await
    }

    async fn list_older_than(
        &self,
        bucket: Bucket,
        before: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>, BlobError> {
        self.inner
            .list_older_than(bucket, before, after, limit)
            .await
    }

    async fn check(&self) -> Result<(), BlobError> {
        self.inner.check().await
    }
}

/// A probe consuming every conversion event of `topology` on `amqp`, and the bus.
async fn probe(
    amqp: &str,
    topology: Topology,
    worker: &Settings,
    shutdown: &CancellationToken,
) -> (Arc<RabbitBus>, Arc<Probe>) {
    let bus = Arc::new(RabbitBus::new(amqp).with_topology(topology));
    let probe = Arc::new(Probe::default());
    let subscription = Subscription::new("probe", &["conversion.*"]);
    let connection = bus
        .open_connection()
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {amqp}: {e}"));
    let channel = connection.create_channel().await.unwrap();
    bus.declare_subscription(&channel, &subscription)
        .await
        .unwrap();
    // The worker's queue exists before the first job is published, as in production.
    bus.declare_subscription(&channel, &Application::subscription(worker))
        .await
        .unwrap();
    let _ = connection.close(200, "declared".into()).await;
    let (consumer, handler, token) = (bus.clone(), probe.clone(), shutdown.clone());
    tokio::spawn(async move { consumer.consume(subscription, handler, token).await });
    (bus, probe)
}

/// Starts a worker on `bus` with `blobs` and leases in MongoDB at `mongodb`.
async fn start_worker(
    settings: Settings,
    bus: Arc<RabbitBus>,
    blobs: Arc<dyn BlobStore>,
    mongodb: &str,
    shutdown: &CancellationToken,
) {
    let leases = Arc::new(MongoLeases::new(
        &platform::testing::mongo_client(mongodb).await,
    ));
    let backends = Backends::embedded(bus, blobs).with_leases(leases);
    let app = Application::build(settings, backends).await.unwrap();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
}

async fn upload_fixture(blobs: &GridFsStore, name: &str) -> (String, u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let mut upload = blobs
        .create(Bucket::Videos, name, Metadata::new())
        .await
        .unwrap();
    upload.write(&bytes).await.unwrap();
    (upload.finish().await.unwrap().id, bytes.len() as u64)
}

fn job(video_file_id: &str, size: u64, filename: &str) -> Envelope {
    Envelope::new(
        Uuid::now_v7(),
        "gateway",
        JobEvent::JobSubmitted(JobSubmitted {
            owner_id: "user-1".into(),
            owner_email: "user-1@example.com".into(),
            video_file_id: video_file_id.into(),
            original_filename: filename.into(),
            content_type: Some("video/mp4".into()),
            size_bytes: size,
            quality: None,
        }),
    )
}

async fn mp3s_of(blobs: &GridFsStore, job: Uuid) -> u64 {
    blobs
        .client()
        .database("mp3s")
        .collection::<mongodb::bson::Document>("fs.files")
        .count_documents(mongodb::bson::doc! {"metadata.job_id": job.to_string()})
        .await
        .unwrap()
}

#[tokio::test]
async fn two_replicas_given_one_job_mid_conversion_make_one_mp3_and_one_success_event() {
    let amqp = required_env("AMQP_URL");
    let mongodb = required_env("MONGODB_URI");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let settings = Settings::for_tests(&amqp, &mongodb);
    let topology = Topology::isolated(&unique_name("test"));
    let (bus, probe) = probe(&amqp, topology, &settings, &shutdown).await;
    let blobs = Arc::new(platform::testing::gridfs(&mongodb).await);
    for _ in 0..2 {
        let slow = Arc::new(SlowVideos {
            inner: blobs.clone(),
            delay: Duration::from_secs(2),
        });
        start_worker(settings.clone(), bus.clone(), slow, &mongodb, &shutdown).await;
    }

    let (video, size) = upload_fixture(&blobs, "mp4_aac_moov_start.mp4").await;
    let submitted = job(&video, size, "replicas.mp4");
    bus.publish(&submitted).await.unwrap();
    probe
        .wait_for(
            "the first conversion to start",
            Duration::from_secs(20),
            || probe.started(submitted.job_id) == 1,
        )
        .await;
    // The same job again while it converts: what a redelivery gives the other replica.
    bus.publish(&submitted).await.unwrap();
    probe
        .wait_for("both deliveries' outcomes", Duration::from_secs(30), || {
            probe.outcomes(submitted.job_id).len() == 2
        })
        .await;
    let outcomes = probe.outcomes(submitted.job_id);
    assert!(
        matches!(outcomes[0].event, JobEvent::ConversionSucceeded(_)),
        "{:?}",
        outcomes[0].event
    );
    assert_eq!(
        distinct_ids(&outcomes).len(),
        1,
        "one success event (stored and mailed once), announced twice"
    );
    assert_eq!(probe.started(submitted.job_id), 1, "converted once");
    assert_eq!(mp3s_of(&blobs, submitted.job_id).await, 1, "one MP3");
}

/// Settings of the child worker process the SIGKILL test starts (by environment variable).
const CHILD_TOPOLOGY: &str = "TEST_CHILD_TOPOLOGY";
const CHILD_POISON: &str = "TEST_CHILD_POISON_VIDEO";
const CHILD_DELIVERY_LIMIT: u32 = 2;

fn child_settings(amqp: &str, mongodb: &str) -> Settings {
    let mut settings = Settings::for_tests(amqp, mongodb);
    // One job at a time: a death takes only the poisoned job with it.
    settings.concurrency = 1;
    settings.delivery_limit = CHILD_DELIVERY_LIMIT;
    settings.lease_ttl = Duration::from_secs(1);
    settings
}

/// The worker process the SIGKILL test runs (and restarts): not a test of its own.
#[tokio::test]
#[ignore = "a child process of a_job_whose_worker_is_killed_on_every_delivery_ends_failed_and_the_others_go_on"]
async fn child_worker_that_kills_itself_on_the_poisoned_video() {
    let amqp = required_env("AMQP_URL");
    let mongodb = required_env("MONGODB_URI");
    let namespace = required_env(CHILD_TOPOLOGY);
    let poison = required_env(CHILD_POISON);
    let bus = Arc::new(RabbitBus::new(&amqp).with_topology(Topology::isolated(&namespace)));
    let blobs = Arc::new(KillerVideos {
        inner: Arc::new(platform::testing::gridfs(&mongodb).await),
        poison,
    });
    let shutdown = CancellationToken::new();
    start_worker(
        child_settings(&amqp, &mongodb),
        bus,
        blobs,
        &mongodb,
        &shutdown,
    )
    .await;
    // Runs until the parent kills it, or it kills itself.
    tokio::time::sleep(Duration::from_secs(300)).await;
}

/// The child worker process, started again whenever it died.
struct ChildWorker {
    child: std::process::Child,
    namespace: String,
    poison: String,
    deaths: u32,
}

impl ChildWorker {
    fn spawn(namespace: &str, poison: &str) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "child_worker_that_kills_itself_on_the_poisoned_video",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_TOPOLOGY, namespace)
            .env(CHILD_POISON, poison)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the child worker")
    }

    fn restart_if_dead(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "the child worker died of something else: {status}"
            );
            self.deaths += 1;
            self.child = Self::spawn(&self.namespace, &self.poison);
        }
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_on_every_delivery_ends_failed_and_the_others_go_on() {
    let amqp = required_env("AMQP_URL");
    let mongodb = required_env("MONGODB_URI");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let namespace = unique_name("test");
    let settings = child_settings(&amqp, &mongodb);
    let (bus, probe) = probe(&amqp, Topology::isolated(&namespace), &settings, &shutdown).await;
    let blobs = platform::testing::gridfs(&mongodb).await;
    let (poison_video, size) = upload_fixture(&blobs, "wav_pcm_s16.wav").await;
    let poisoned = job(&poison_video, size, "poison.wav");
    bus.publish(&poisoned).await.unwrap();
    let mut healthy = Vec::new();
    for name in ["one.mp4", "two.mp4"] {
        let (video, size) = upload_fixture(&blobs, "mp4_aac_moov_start.mp4").await;
        let submitted = job(&video, size, name);
        bus.publish(&submitted).await.unwrap();
        healthy.push(submitted.job_id);
    }

    let mut worker = ChildWorker {
        child: ChildWorker::spawn(&namespace, &poison_video),
        namespace: namespace.clone(),
        poison: poison_video.clone(),
        deaths: 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let all_ended = || {
        !probe.outcomes(poisoned.job_id).is_empty()
            && healthy.iter().all(|job| !probe.outcomes(*job).is_empty())
    };
    while !all_ended() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {} deaths; poisoned job saw {:?}; healthy jobs saw {:?}",
            worker.deaths,
            probe
                .of(poisoned.job_id)
                .iter()
                .map(|e| e.event_type())
                .collect::<Vec<_>>(),
            healthy
                .iter()
                .map(|job| probe.outcomes(*job).len())
                .collect::<Vec<_>>()
        );
        worker.restart_if_dead();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(
        worker.deaths,
        CHILD_DELIVERY_LIMIT + 1,
        "killed on every delivery until the broker gave the job up"
    );
    let outcomes = probe.outcomes(poisoned.job_id);
    let JobEvent::ConversionFailed(failed) = &outcomes[0].event else {
        panic!("expected a failure, got {:?}", outcomes[0].event);
    };
    assert_eq!(failed.kind, FailureKind::Unconvertible);
    assert_eq!(
        failed.reason,
        "the file could not be processed: the converter stopped 3 times while converting it"
    );
    assert_eq!(failed.owner_email, "user-1@example.com");
    assert_eq!(mp3s_of(&blobs, poisoned.job_id).await, 0);
    for job in &healthy {
        let outcomes = probe.outcomes(*job);
        assert!(
            matches!(outcomes[0].event, JobEvent::ConversionSucceeded(_)),
            "{:?}",
            outcomes[0].event
        );
        assert_eq!(mp3s_of(&blobs, *job).await, 1);
    }
}

#[tokio::test]
async fn a_conversion_longer_than_the_consumer_timeout_completes_exactly_once() {
    // The broker takes an unacknowledged delivery back after 5 s, checked every second.
    let rabbit = PrivateRabbit::start(
        "consumer_timeout = 5000",
        "[{rabbit, [{channel_tick_interval, 1000}]}].\n",
    )
    .await;
    let amqp = rabbit.url();
    let mongodb = required_env("MONGODB_URI");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let settings = Settings::for_tests(&amqp, &mongodb);
    let topology = Topology::isolated(&unique_name("test"));
    let (bus, probe) = probe(&amqp, topology, &settings, &shutdown).await;
    let blobs = Arc::new(platform::testing::gridfs(&mongodb).await);
    // Two replicas: the redelivery goes to either while the first conversion still runs.
    for _ in 0..2 {
        let slow = Arc::new(SlowVideos {
            inner: blobs.clone(),
            delay: Duration::from_secs(12),
        });
        start_worker(settings.clone(), bus.clone(), slow, &mongodb, &shutdown).await;
    }

    let (video, size) = upload_fixture(&blobs, "wav_pcm_s16.wav").await;
    let submitted = job(&video, size, "long.wav");
    bus.publish(&submitted).await.unwrap();
    probe
        .wait_for(
            "the success and the redelivery's re-announcement",
            Duration::from_secs(90),
            || probe.outcomes(submitted.job_id).len() >= 2,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes = probe.outcomes(submitted.job_id);
    assert!(
        matches!(outcomes[0].event, JobEvent::ConversionSucceeded(_)),
        "{:?}",
        outcomes[0].event
    );
    assert_eq!(
        distinct_ids(&outcomes).len(),
        1,
        "one success event, however often announced"
    );
    assert_eq!(probe.started(submitted.job_id), 1, "converted once");
    assert_eq!(mp3s_of(&blobs, submitted.job_id).await, 1, "one MP3");
}
