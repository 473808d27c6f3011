//! The worker against real RabbitMQ and MongoDB-wire: a job goes in as `job.submitted`, an MP3 and
//! an outcome event come out; bad input fails with a reason and is never retried; redelivery
//! converts nothing twice; an unreachable blob store exhausts retries and dead-letters.

use async_trait::async_trait;
use contracts::events::{FailureKind, JobSubmitted};
use contracts::{Envelope, JobEvent};
use converter::worker::{Application, Backends, Settings};
use futures::TryStreamExt;
use lapin::options::BasicGetOptions;
use platform::blob::{BlobStore, Bucket, GridFsStore, Metadata};
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::rabbit::RabbitBus;
use platform::testing::{isolated_topology, private_mongodb, required_env};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Collects every event the pipeline publishes on the test topology.
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
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.job_id == job)
            .cloned()
            .collect()
    }

    async fn wait_for(
        &self,
        job: Uuid,
        what: &str,
        done: impl Fn(&[Envelope]) -> bool,
    ) -> Vec<Envelope> {
        for _ in 0..600 {
            let events = self.of(job);
            if done(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}; saw {:?}",
            self.of(job)
                .iter()
                .map(|e| e.event_type())
                .collect::<Vec<_>>()
        );
    }
}

struct Harness {
    bus: Arc<RabbitBus>,
    blobs: Arc<GridFsStore>,
    probe: Arc<Probe>,
    shutdown: CancellationToken,
}

impl Harness {
    /// How many MP3s are stored for `job`.
    async fn mp3s_of(&self, job: Uuid) -> u64 {
        self.blobs
            .client()
            .database("mp3s")
            .collection::<mongodb::bson::Document>("fs.files")
            .count_documents(mongodb::bson::doc! {"metadata.job_id": job.to_string()})
            .await
            .unwrap()
    }

    /// Takes the next message of the topology's dead-letter queue, if any.
    async fn next_dead_letter(&self) -> Option<lapin::message::BasicGetMessage> {
        let connection = self.bus.open_connection().await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .basic_get(
                self.bus.topology().dead_letter_queue.as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a worker (with `worker_blobs` as its store) and a probe on one isolated topology.
async fn start(worker_mongodb_uri: Option<String>) -> Harness {
    start_with(worker_mongodb_uri, |_| {}).await
}

/// As [`start`], with the worker's settings adjusted first.
async fn start_with(
    worker_mongodb_uri: Option<String>,
    adjust: impl FnOnce(&mut Settings),
) -> Harness {
    let amqp = required_env("AMQP_URL");
    let mongodb = required_env("MONGODB_URI");
    let bus = Arc::new(RabbitBus::new(&amqp).with_topology(isolated_topology()));
    let blobs = Arc::new(platform::testing::gridfs(&mongodb).await);
    let shutdown = CancellationToken::new();

    let probe = Arc::new(Probe::default());
    let probe_subscription = Subscription::new("probe", &["conversion.*"]);
    let connection = bus.open_connection().await.expect("RabbitMQ at AMQP_URL");
    let channel = connection.create_channel().await.unwrap();
    bus.declare_subscription(&channel, &probe_subscription)
        .await
        .unwrap();
    let mut settings = Settings::for_tests(&amqp, &mongodb);
    adjust(&mut settings);
    bus.declare_subscription(&channel, &Application::subscription(&settings))
        .await
        .unwrap();
    {
        let (bus, probe, token) = (bus.clone(), probe.clone(), shutdown.clone());
        tokio::spawn(async move { bus.consume(probe_subscription, probe, token).await });
    }

    let worker_blobs: Arc<dyn BlobStore> = match worker_mongodb_uri {
        Some(uri) => Arc::new(platform::testing::gridfs(&uri).await),
        None => blobs.clone(),
    };
    let app = Application::build(settings, Backends::embedded(bus.clone(), worker_blobs))
        .await
        .unwrap();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Harness {
        bus,
        blobs,
        probe,
        shutdown,
    }
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
    let info = upload.finish().await.unwrap();
    (info.id, bytes.len() as u64)
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

fn is_terminal(e: &Envelope) -> bool {
    matches!(
        e.event,
        JobEvent::ConversionSucceeded(_) | JobEvent::ConversionFailed(_)
    )
}

#[tokio::test]
async fn a_submitted_video_becomes_an_mp3_in_gridfs_and_a_success_event() {
    let h = start(None).await;
    let (video, size) = upload_fixture(&h.blobs, "mp4_aac_moov_end.mp4").await;
    let submitted = job(&video, size, "holiday trip.mp4");
    h.bus.publish(&submitted).await.unwrap();

    let events = h
        .probe
        .wait_for(submitted.job_id, "success", |e| e.iter().any(is_terminal))
        .await;
    assert_eq!(events[0].event_type(), "conversion.started");
    let JobEvent::ConversionSucceeded(done) = &events.last().unwrap().event else {
        panic!("expected success, got {:?}", events.last().unwrap().event);
    };
    assert_eq!(events.last().unwrap().producer, "converter");
    assert!(done.duration_seconds > 0.5, "{done:?}");
    assert!(done.bitrate_kbps > 32, "{done:?}");

    let info = h
        .blobs
        .info(Bucket::Mp3s, &done.mp3_file_id)
        .await
        .unwrap()
        .expect("MP3 stored");
    assert_eq!(info.filename, "holiday trip.mp3");
    assert_eq!(info.length, done.mp3_size_bytes);
    assert_eq!(
        info.metadata["job_id"],
        serde_json::json!(submitted.job_id.to_string())
    );
    assert_eq!(info.metadata["owner_id"], serde_json::json!("user-1"));
    let bytes: Vec<bytes::Bytes> = h
        .blobs
        .read(Bucket::Mp3s, &info.id, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let bytes = bytes.concat();
    assert!(
        bytes.starts_with(b"ID3"),
        "the MP3 starts with its ID3v2 title tag"
    );
    assert!(
        bytes
            .windows(b"holiday trip".len())
            .any(|w| w == b"holiday trip")
    );
}

#[tokio::test]
async fn a_video_without_audio_fails_with_a_reason_and_is_not_retried() {
    let h = start(None).await;
    let (video, size) = upload_fixture(&h.blobs, "bad_no_audio.mp4").await;
    let submitted = job(&video, size, "silent.mp4");
    h.bus.publish(&submitted).await.unwrap();

    let events = h
        .probe
        .wait_for(submitted.job_id, "failure", |e| e.iter().any(is_terminal))
        .await;
    let JobEvent::ConversionFailed(failed) = &events.last().unwrap().event else {
        panic!("expected failure");
    };
    assert_eq!(failed.kind, FailureKind::Unconvertible);
    assert_eq!(failed.reason, "the file has no audio track");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = h
        .probe
        .of(submitted.job_id)
        .iter()
        .filter(|e| e.event_type() == "conversion.started")
        .count();
    assert_eq!(started, 1, "a permanent failure is never retried");

    let dead = h.next_dead_letter().await;
    assert!(
        dead.is_none(),
        "bad input is acknowledged, not dead-lettered"
    );
}

#[tokio::test]
async fn audio_longer_than_the_limit_fails_at_once_with_the_limit_named() {
    let h = start_with(None, |settings| {
        settings.limits.max_audio_duration = Duration::from_secs(1);
    })
    .await;
    let (video, size) = upload_fixture(&h.blobs, "mp4_aac_moov_end.mp4").await;
    let submitted = job(&video, size, "long.mp4");
    h.bus.publish(&submitted).await.unwrap();

    let events = h
        .probe
        .wait_for(submitted.job_id, "failure", |e| e.iter().any(is_terminal))
        .await;
    let JobEvent::ConversionFailed(failed) = &events.last().unwrap().event else {
        panic!("expected failure, got {:?}", events.last().unwrap().event);
    };
    assert_eq!(failed.kind, FailureKind::Unconvertible);
    assert_eq!(failed.reason, "the audio is longer than the 1 s limit");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = h
        .probe
        .of(submitted.job_id)
        .iter()
        .filter(|e| e.event_type() == "conversion.started")
        .count();
    assert_eq!(started, 1, "a passed limit is never retried");
    assert_eq!(h.mp3s_of(submitted.job_id).await, 0);
}

/// The jobs in flight share a budget of temporary space; a job that could never fit in it fails
/// at once instead of filling the disk.
#[tokio::test]
async fn a_job_larger_than_the_temporary_space_fails_at_once_with_the_reason() {
    let h = start_with(None, |settings| {
        settings.temp_budget_bytes = 4 * 1024 * 1024;
        settings.limits.max_mp3_bytes = 8 * 1024 * 1024;
    })
    .await;
    let (video, size) = upload_fixture(&h.blobs, "mp4_aac_moov_end.mp4").await;
    let submitted = job(&video, size, "big.mp4");
    h.bus.publish(&submitted).await.unwrap();

    let events = h
        .probe
        .wait_for(submitted.job_id, "failure", |e| e.iter().any(is_terminal))
        .await;
    let JobEvent::ConversionFailed(failed) = &events.last().unwrap().event else {
        panic!("expected failure, got {:?}", events.last().unwrap().event);
    };
    assert_eq!(failed.kind, FailureKind::Unconvertible);
    assert_eq!(
        failed.reason,
        "the file is too large for the converter's temporary space (4 MiB)"
    );
    assert_eq!(h.mp3s_of(submitted.job_id).await, 0);
}

#[tokio::test]
async fn random_bytes_and_a_missing_video_fail_with_readable_reasons() {
    let h = start(None).await;
    let (video, size) = upload_fixture(&h.blobs, "bad_random.bin").await;
    let random = job(&video, size, "notes.mp4");
    let missing = job(
        &mongodb::bson::oid::ObjectId::new().to_hex(),
        10,
        "gone.mp4",
    );
    h.bus.publish(&random).await.unwrap();
    h.bus.publish(&missing).await.unwrap();
    for (submitted, expected) in [
        (
            &random,
            "the file is not a recognised audio or video format",
        ),
        (&missing, "the uploaded video no longer exists"),
    ] {
        let events = h
            .probe
            .wait_for(submitted.job_id, "failure", |e| e.iter().any(is_terminal))
            .await;
        let JobEvent::ConversionFailed(failed) = &events.last().unwrap().event else {
            panic!("expected failure for {expected}");
        };
        assert_eq!(failed.reason, expected);
    }
}

#[tokio::test]
async fn a_redelivered_job_produces_no_second_mp3_and_the_same_success_event() {
    let h = start(None).await;
    let (video, size) = upload_fixture(&h.blobs, "wav_pcm_s16.wav").await;
    let submitted = job(&video, size, "tone.wav");
    h.bus.publish(&submitted).await.unwrap();
    let first = h
        .probe
        .wait_for(submitted.job_id, "success", |e| e.iter().any(is_terminal))
        .await;
    h.bus.publish(&submitted).await.unwrap();
    let events = h
        .probe
        .wait_for(submitted.job_id, "the second outcome", |e| {
            e.iter().filter(|e| is_terminal(e)).count() == 2
        })
        .await;
    let outcomes: Vec<&Envelope> = events.iter().filter(|e| is_terminal(e)).collect();
    assert_eq!(
        outcomes[0].event_id, outcomes[1].event_id,
        "the same event, deduplicated downstream"
    );
    assert_eq!(outcomes[0].event, outcomes[1].event);
    assert_eq!(
        first
            .iter()
            .filter(|e| e.event_type() == "conversion.started")
            .count(),
        1
    );
    let mp3s = h.mp3s_of(submitted.job_id).await;
    assert_eq!(mp3s, 1);
}

#[tokio::test]
async fn an_unreachable_blob_store_exhausts_retries_then_fails_and_dead_letters() {
    let mut mongodb = private_mongodb().await;
    let uri = format!("mongodb://127.0.0.1:{}", mongodb.port);
    mongodb.stop();
    let h = start(Some(uri)).await;
    let submitted = job(
        &mongodb::bson::oid::ObjectId::new().to_hex(),
        10,
        "clip.mp4",
    );
    h.bus.publish(&submitted).await.unwrap();

    let events = h
        .probe
        .wait_for(submitted.job_id, "exhaustion", |e| {
            e.iter().any(is_terminal)
        })
        .await;
    let JobEvent::ConversionFailed(failed) = &events.last().unwrap().event else {
        panic!("expected failure");
    };
    assert_eq!(failed.kind, FailureKind::RetriesExhausted);

    let dead = h
        .next_dead_letter()
        .await
        .expect("the exhausted job is dead-lettered");
    assert_eq!(
        Envelope::from_json(&dead.delivery.data).unwrap().job_id,
        submitted.job_id
    );
    let attempt = dead
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(platform::rabbit::ATTEMPT_HEADER).cloned());
    assert_eq!(
        attempt,
        Some(lapin::types::AMQPValue::LongLongInt(3)),
        "dead-lettered after the first attempt and two retries"
    );
}

/// Publishes one job twice, so both copies are in the queue before the worker (prefetch 2)
/// takes either; returns the job id and its two outcome events.
async fn deliver_twice_at_once(
    h: &Harness,
    fixture: &str,
    filename: &str,
) -> (Uuid, Vec<Envelope>) {
    let (video, size) = upload_fixture(&h.blobs, fixture).await;
    let submitted = job(&video, size, filename);
    h.bus.publish(&submitted).await.unwrap();
    h.bus.publish(&submitted).await.unwrap();
    let events = h
        .probe
        .wait_for(submitted.job_id, "both outcomes", |e| {
            e.iter().filter(|e| is_terminal(e)).count() == 2
        })
        .await;
    let outcomes = events.into_iter().filter(is_terminal).collect();
    (submitted.job_id, outcomes)
}

#[tokio::test]
async fn the_same_job_delivered_twice_at_once_is_converted_once() {
    let h = start(None).await;
    let (job_id, outcomes) = deliver_twice_at_once(&h, "mp4_aac_moov_start.mp4", "twice.mp4").await;
    assert!(matches!(
        outcomes[0].event,
        JobEvent::ConversionSucceeded(_)
    ));
    assert_eq!(
        outcomes[0].event_id, outcomes[1].event_id,
        "one success event, announced twice"
    );
    let mp3s = h.mp3s_of(job_id).await;
    assert_eq!(mp3s, 1, "one MP3");
}

#[tokio::test]
async fn an_unconvertible_job_delivered_twice_at_once_announces_one_failure() {
    let h = start(None).await;
    let (_, outcomes) = deliver_twice_at_once(&h, "bad_no_audio.mp4", "silent twice.mp4").await;
    let JobEvent::ConversionFailed(failed) = &outcomes[0].event else {
        panic!("expected a failure, got {:?}", outcomes[0].event);
    };
    assert_eq!(failed.reason, "the file has no audio track");
    assert_eq!(
        outcomes[0].event_id, outcomes[1].event_id,
        "one failure event (stored and mailed once), announced twice"
    );
    assert_eq!(outcomes[0].event, outcomes[1].event);
}
