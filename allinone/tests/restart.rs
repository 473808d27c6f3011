//! State survives restarts, and work accepted before a stop is finished after the next start —
//! replayed from the event store, since the in-process bus keeps nothing — with one mail per job.

mod common;

use allinone::{AllInOne, Settings};
use common::{Running, User};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn settings(data: &Path) -> Settings {
    Settings::for_tests(data)
}

async fn events_of(user: &User, job_id: &str) -> usize {
    let job: Value = user.job(job_id).await;
    assert!(job["status"].is_string(), "{job}");
    // Count the events through the stream of a finished job (it ends at once).
    let body = user
        .client
        .get(user.url(&format!("/jobs/{job_id}/events")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines().filter(|l| l.starts_with("id:")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_accepted_before_a_stop_is_converted_and_mailed_once_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let mail = data.path().join("mail");

    // First run: the converter is not consuming, so the job stays submitted.
    let mut first = settings(data.path());
    first.start_converter = false;
    let app = Running::start(first).await;
    let user = User::sign_up(&app.base_url).await;
    let job_id = user.upload("pending.mp4").await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(user.job(&job_id).await["status"], "submitted");
    app.stop().await;

    // Second run on the same data directory: the same account and token work, and the job is
    // finished and mailed.
    let app = Running::start(settings(data.path())).await;
    let user = user.at(&app.base_url);
    let job = user
        .wait_for_job(&job_id, "conversion and notification", |job| {
            job["status"] == "succeeded" && !job["notification"].is_null()
        })
        .await;
    assert_eq!(job["notification"]["status"], "sent", "{job}");
    assert_eq!(user.mails(&mail).len(), 1);
    let events = events_of(&user, &job_id).await;
    // The account survived too: logging in again works.
    let login = user
        .client
        .post(user.url("/login"))
        .basic_auth(&user.email, Some(common::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    app.stop().await;

    // Third run: nothing is left to do, so nothing happens again.
    let app = Running::start(settings(data.path())).await;
    let user = user.at(&app.base_url);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(user.mails(&mail).len(), 1, "no second mail");
    assert_eq!(events_of(&user, &job_id).await, events, "no new events");
    let job = user.job(&job_id).await;
    assert_eq!(job["status"], "succeeded");
    let mp3 = user
        .client
        .get(user.url(&format!("/jobs/{job_id}/mp3")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(mp3.status(), 200, "the MP3 survived the restarts");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_whose_mail_was_not_sent_is_mailed_once_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let mail = data.path().join("mail");

    let mut first = settings(data.path());
    first.start_notification = false;
    let app = Running::start(first).await;
    let user = User::sign_up(&app.base_url).await;
    let job_id = user.upload("unannounced.mp4").await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = user
        .wait_for_job(&job_id, "the conversion", |job| {
            job["status"] == "succeeded"
        })
        .await;
    assert!(job["notification"].is_null(), "{job}");
    app.stop().await;
    assert!(user.mails(&mail).is_empty());

    let app = Running::start(settings(data.path())).await;
    let user = user.at(&app.base_url);
    let job = user
        .wait_for_job(&job_id, "the notification", |job| {
            !job["notification"].is_null()
        })
        .await;
    assert_eq!(job["notification"]["status"], "sent", "{job}");
    let mails = user.mails(&mail);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("unannounced"), "{}", mails[0]);
    app.stop().await;
}

#[tokio::test]
async fn a_second_process_on_the_same_data_directory_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let first = AllInOne::build(settings(data.path())).await.unwrap();
    let error = match AllInOne::build(settings(data.path())).await {
        Ok(_) => panic!("a second all-in-one on the same directory must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("in use by another mp3converter"), "{error}");
    drop(first);
    // Once the first is gone, the directory is free again.
    AllInOne::build(settings(data.path())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_mongodb_real_the_replay_reads_the_mongodb_event_store() {
    let data = tempfile::tempdir().unwrap();
    let mail = data.path().join("mail");
    // Same jobs database (and sent log) across both runs: the settings are cloned.
    let mut base = settings(data.path());
    base.mongodb_uri = Some(platform::testing::required_env("MONGODB_URI").into());

    let mut first = base.clone();
    first.start_converter = false;
    let app = Running::start(first).await;
    let user = User::sign_up(&app.base_url).await;
    let job_id = user.upload("in-mongodb.mp4").await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(user.job(&job_id).await["status"], "submitted");
    app.stop().await;
    assert!(
        !data.path().join("events").exists(),
        "events went to MongoDB, not the disk"
    );

    let app = Running::start(base).await;
    let user = user.at(&app.base_url);
    let job = user
        .wait_for_job(&job_id, "conversion and notification", |job| {
            job["status"] == "succeeded" && !job["notification"].is_null()
        })
        .await;
    assert_eq!(job["notification"]["status"], "sent", "{job}");
    assert_eq!(user.mails(&mail).len(), 1, "mail still goes to the folder");
    app.stop().await;
}
