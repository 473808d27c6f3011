//! Data lifecycle: converted videos go, finished jobs expire after RETENTION (files and chunks
//! deleted, JobExpired recorded once, downloads answer 410), and a conversion finishing after its
//! job was deleted leaves no MP3 behind.

use crate::helpers::{Options, TestApp, User, assert_error, mp3ish_bytes, spawn_app_with};
use chrono::{DateTime, Utc};
use contracts::events::{ConversionStarted, ConversionSucceeded, JobSubmitted};
use contracts::{Envelope, JobEvent};
use gateway::pipeline::{EventPublisher, FileJanitor, JobUpdates, Sweeper};
use gateway::store::{
    EventStore, FinishedJob, MongoEventStore, MongoOutbox, MongoRetentionLedger, RetentionLedger,
};
use platform::blob::{BlobStore, Bucket, Metadata};
use platform::bus::EventBus;
use platform::rabbit::RabbitBus;
use platform::testing::{isolated_topology, required_env, unique_name};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

async fn app_with_retention(retention: Duration, keep_videos: bool) -> TestApp {
    spawn_app_with(Options {
        configure: Some(Box::new(move |settings| {
            settings.retention = retention;
            settings.retention_sweep_interval = Duration::from_millis(200);
            settings.keep_videos = keep_videos;
        })),
        ..Options::default()
    })
    .await
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Waits until the gateway's retention ledger knows the job (its outcome was processed).
async fn wait_for_ledger(app: &TestApp, job_id: &str) {
    let ledger = app
        .mongo
        .database(&app.jobs_database)
        .collection::<mongodb::bson::Document>("retention");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledger
        .count_documents(mongodb::bson::doc! {"_id": job_id})
        .await
        .unwrap()
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the job's outcome was never processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn submit_and_convert(app: &TestApp, user: &User) -> (String, String, String) {
    let job = app.submit(user, "clip.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let video_id = job["video_file_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.file_and_chunks(Bucket::Videos, &video_id).await,
        (true, 1),
        "the upload is stored"
    );
    let (mp3_id, _) = app.convert(user, &job_id, "clip.mp4").await;
    (job_id, video_id, mp3_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_jobs_lose_their_files_and_their_download_is_gone() {
    let app = app_with_retention(Duration::from_secs(2), false).await;
    let observed = app.observe().await;
    let user = app.new_user().await;
    let (job_id, video_id, mp3_id) = submit_and_convert(&app, &user).await;
    let (exists, chunks) = app.file_and_chunks(Bucket::Mp3s, &mp3_id).await;
    assert!(exists && chunks > 0, "the MP3 is stored before it expires");

    let done = app.wait_for_status(&user, &job_id, "succeeded").await;
    let expires_at = time(&done["expires_at"]);
    assert_eq!(
        expires_at - time(&done["finished_at"]),
        chrono::Duration::seconds(2),
        "expires_at = finished_at + RETENTION: {done}"
    );
    let listed: Value = app.get(&user, "/jobs").await.json().await.unwrap();
    assert_eq!(listed["jobs"][0]["expires_at"], done["expires_at"]);

    // The MP3 exists, so the source video goes (with its chunks).
    app.wait_until_deleted(Bucket::Videos, &video_id, Duration::from_secs(10))
        .await;

    let expired = app.wait_for_status(&user, &job_id, "expired").await;
    assert!(Utc::now() >= expires_at);
    assert_eq!(expired["expires_at"], done["expires_at"]);
    assert!(expired["links"].get("download").is_none(), "{expired}");
    app.wait_until_deleted(Bucket::Mp3s, &mp3_id, Duration::from_secs(5))
        .await;

    // Recorded once in the store, published on the bus through the outbox.
    let stored: Vec<Envelope> = app
        .stored_events(&job_id)
        .await
        .into_iter()
        .filter(|e| e.event_type() == "job.expired")
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    match &stored[0].event {
        JobEvent::JobExpired(e) => assert_eq!(e.owner_id, user.id),
        other => panic!("{other:?}"),
    }
    observed
        .wait_until("JobExpired on the bus", Duration::from_secs(10), |events| {
            events.iter().any(|e| e.event_id == stored[0].event_id)
        })
        .await;
    assert_eq!(app.outbox_pending().await, 0);

    let by_job = app.get(&user, &format!("/jobs/{job_id}/mp3")).await;
    let body = assert_error(by_job, 410, "gone").await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("expired") && message.contains("2 seconds"),
        "{message}"
    );
    let by_id = app.get(&user, &format!("/download?fid={mp3_id}")).await;
    assert_error(by_id, 410, "gone").await;
    // Someone else learns nothing about it.
    let stranger = app.new_user().await;
    let other = app.get(&stranger, &format!("/download?fid={mp3_id}")).await;
    assert_error(other, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converted_video_is_deleted_once_its_mp3_exists() {
    let app = app_with_retention(Duration::from_secs(3600), false).await;
    let user = app.new_user().await;
    let (job_id, video_id, mp3_id) = submit_and_convert(&app, &user).await;
    app.wait_for_status(&user, &job_id, "succeeded").await;
    app.wait_until_deleted(Bucket::Videos, &video_id, Duration::from_secs(10))
        .await;
    let (exists, chunks) = app.file_and_chunks(Bucket::Mp3s, &mp3_id).await;
    assert!(exists && chunks > 0, "the MP3 stays until it expires");
    let download = app.get(&user, &format!("/jobs/{job_id}/mp3")).await;
    assert_eq!(download.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_videos_keeps_the_source_until_the_job_expires() {
    let app = app_with_retention(Duration::from_secs(3), true).await;
    let user = app.new_user().await;
    let (job_id, video_id, mp3_id) = submit_and_convert(&app, &user).await;
    app.wait_for_status(&user, &job_id, "succeeded").await;
    wait_for_ledger(&app, &job_id).await;
    // Given time to (wrongly) delete it, the video stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.file_and_chunks(Bucket::Videos, &video_id).await,
        (true, 1)
    );
    app.wait_for_status(&user, &job_id, "expired").await;
    app.wait_until_deleted(Bucket::Videos, &video_id, Duration::from_secs(5))
        .await;
    app.wait_until_deleted(Bucket::Mp3s, &mp3_id, Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_leaves_no_file_and_no_chunk() {
    let app = app_with_retention(Duration::from_secs(3600), true).await;
    let user = app.new_user().await;
    let (job_id, video_id, mp3_id) = submit_and_convert(&app, &user).await;
    app.wait_for_status(&user, &job_id, "succeeded").await;
    let (_, mp3_chunks) = app.file_and_chunks(Bucket::Mp3s, &mp3_id).await;
    assert!(mp3_chunks > 0);
    let deleted = app
        .client
        .delete(app.url(&format!("/jobs/{job_id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        app.file_and_chunks(Bucket::Videos, &video_id).await,
        (false, 0)
    );
    assert_eq!(app.file_and_chunks(Bucket::Mp3s, &mp3_id).await, (false, 0));
    let job = app.job(&user, &job_id).await;
    assert_eq!(job["status"], "deleted");
    assert!(job["expires_at"].is_null(), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_finishing_after_its_job_was_deleted_leaves_no_mp3() {
    let app = app_with_retention(Duration::from_secs(3600), false).await;
    let user = app.new_user().await;
    let job = app.submit(&user, "race.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let job_uuid = Uuid::parse_str(&job_id).unwrap();
    app.publish(
        job_uuid,
        JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
    )
    .await;
    app.wait_for_status(&user, &job_id, "converting").await;

    let deleted = app
        .client
        .delete(app.url(&format!("/jobs/{job_id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // The converter, unaware, stores its MP3 and announces success.
    let mp3 = mp3ish_bytes(200_000);
    let (mp3_id, _) = app.store_mp3(&user, &job_id, "race.mp4", &mp3).await;
    let (exists, chunks) = app.file_and_chunks(Bucket::Mp3s, &mp3_id).await;
    assert!(exists && chunks > 0);
    app.publish(
        job_uuid,
        JobEvent::ConversionSucceeded(ConversionSucceeded {
            owner_id: user.id.clone(),
            owner_email: user.email.clone(),
            original_filename: "race.mp4".into(),
            mp3_file_id: mp3_id.clone(),
            mp3_size_bytes: mp3.len() as u64,
            duration_seconds: 1.0,
            bitrate_kbps: 128,
            passthrough: false,
        }),
    )
    .await;
    app.wait_until_deleted(Bucket::Mp3s, &mp3_id, Duration::from_secs(10))
        .await;
    let job = app.job(&user, &job_id).await;
    assert_eq!(job["status"], "deleted");
    let download = app.get(&user, &format!("/jobs/{job_id}/mp3")).await;
    assert_error(download, 404, "not_found").await;
}

/// Two converters that both converted one job announce the same success event (its id derives
/// from the submission): the store keeps the first, and the second MP3 does not stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_conversion_of_a_job_leaves_one_mp3() {
    let app = app_with_retention(Duration::from_secs(3600), false).await;
    let user = app.new_user().await;
    let (job_id, _, first_mp3) = submit_and_convert(&app, &user).await;
    let job_uuid = Uuid::parse_str(&job_id).unwrap();
    app.wait_for_status(&user, &job_id, "succeeded").await;

    let mp3 = mp3ish_bytes(150_000);
    let (second_mp3, _) = app.store_mp3(&user, &job_id, "clip.mp4", &mp3).await;
    let first_event = app
        .stored_events(&job_id)
        .await
        .into_iter()
        .find(|e| e.event_type() == "conversion.succeeded")
        .expect("the first success is stored");
    let mut duplicate = contracts::Envelope::new(
        job_uuid,
        "converter",
        JobEvent::ConversionSucceeded(ConversionSucceeded {
            owner_id: user.id.clone(),
            owner_email: user.email.clone(),
            original_filename: "clip.mp4".into(),
            mp3_file_id: second_mp3.clone(),
            mp3_size_bytes: mp3.len() as u64,
            duration_seconds: 1.0,
            bitrate_kbps: 128,
            passthrough: false,
        }),
    );
    duplicate.event_id = first_event.event_id;
    app.bus.publish(&duplicate).await.unwrap();

    app.wait_until_deleted(Bucket::Mp3s, &second_mp3, Duration::from_secs(10))
        .await;
    assert!(app.file_and_chunks(Bucket::Mp3s, &first_mp3).await.0);
    let job = app.job(&user, &job_id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["mp3_file_id"], first_mp3.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweepers_expire_a_job_exactly_once() {
    let mongodb_uri = required_env("MONGODB_URI");
    let mongo = mongodb::Client::with_uri_str(&mongodb_uri).await.unwrap();
    let database = unique_name("jobs_sweep");
    let store = Arc::new(MongoEventStore::new(&mongo, &database));
    let ledger = Arc::new(MongoRetentionLedger::new(&mongo, &database));
    ledger.ensure_indexes().await.unwrap();
    let blobs = Arc::new(platform::testing::gridfs(&mongodb_uri).await);
    let bus: Arc<dyn EventBus> =
        Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));

    // A job that finished a minute ago, with its MP3.
    let job_id = Uuid::now_v7();
    let owner = format!("owner-{}", Uuid::new_v4().simple());
    let submitted = Envelope::new(
        job_id,
        "gateway",
        JobEvent::JobSubmitted(JobSubmitted {
            owner_id: owner.clone(),
            owner_email: "owner@example.com".into(),
            video_file_id: "000000000000000000000000".into(),
            original_filename: "old.mp4".into(),
            content_type: None,
            size_bytes: 1,
            quality: None,
        }),
    )
    .with_traceparent(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    ));
    let mut metadata = Metadata::new();
    metadata.insert("job_id".into(), job_id.to_string().into());
    metadata.insert("owner_id".into(), owner.clone().into());
    let mut upload = blobs
        .create(Bucket::Mp3s, "old.mp3", metadata)
        .await
        .unwrap();
    upload.write(&mp3ish_bytes(10_000)).await.unwrap();
    let mp3 = upload.finish().await.unwrap();
    let mut succeeded = Envelope::new(
        job_id,
        "converter",
        JobEvent::ConversionSucceeded(ConversionSucceeded {
            owner_id: owner.clone(),
            owner_email: "owner@example.com".into(),
            original_filename: "old.mp4".into(),
            mp3_file_id: mp3.id.clone(),
            mp3_size_bytes: 10_000,
            duration_seconds: 1.0,
            bitrate_kbps: 128,
            passthrough: false,
        }),
    );
    succeeded.occurred_at = Utc::now() - chrono::Duration::seconds(60);
    store.append(&submitted).await.unwrap();
    store.append(&succeeded).await.unwrap();
    ledger
        .record_finished(&FinishedJob {
            job_id,
            owner_id: owner.clone(),
            finished_at: succeeded.occurred_at,
            mp3_file_id: Some(mp3.id.clone()),
        })
        .await
        .unwrap();

    // Four replicas sweep at the same moment, each with its own publisher.
    let sweepers: Vec<Sweeper> = (0..4)
        .map(|_| Sweeper {
            ledger: ledger.clone(),
            store: store.clone(),
            janitor: FileJanitor::new(blobs.clone()),
            publisher: EventPublisher {
                outbox: Arc::new(MongoOutbox::new(&mongo, &database)),
                store: store.clone(),
                bus: bus.clone(),
                relay_wake: Arc::new(Notify::new()),
                updates: JobUpdates::default(),
            },
            retention: Duration::from_secs(30),
        })
        .collect();
    let results =
        futures::future::join_all(sweepers.iter().map(|sweeper| sweeper.sweep_once())).await;
    let expired: usize = results.into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(expired, 1);
    // Later sweeps find nothing left to do.
    assert_eq!(sweepers[0].sweep_once().await.unwrap(), 0);

    let events = store.events_of_job(job_id).await.unwrap();
    let expirations: Vec<&Envelope> = events
        .iter()
        .filter(|e| e.event_type() == "job.expired")
        .collect();
    assert_eq!(expirations.len(), 1, "{events:?}");
    // It continues the job's trace.
    assert!(
        expirations[0]
            .traceparent
            .as_deref()
            .is_some_and(|t| t.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")),
        "{:?}",
        expirations[0].traceparent
    );
    let outbox_entries = mongo
        .database(&database)
        .collection::<mongodb::bson::Document>("outbox")
        .count_documents(mongodb::bson::doc! {"event_type": "job.expired"})
        .await
        .unwrap();
    assert_eq!(outbox_entries, 1);
    assert!(blobs.info(Bucket::Mp3s, &mp3.id).await.unwrap().is_none());
    let chunks = mongo
        .database("mp3s")
        .collection::<mongodb::bson::Document>("fs.chunks")
        .count_documents(mongodb::bson::doc! {
            "files_id": mongodb::bson::oid::ObjectId::parse_str(&mp3.id).unwrap()
        })
        .await
        .unwrap();
    assert_eq!(chunks, 0);
    let _ = mongo.database(&database).drop().await;
}
