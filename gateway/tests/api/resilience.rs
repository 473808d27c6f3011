//! Failures of the gateway's own backing services and shutdown: clear answers, never a hang.

use crate::helpers::{Options, assert_error, read_sse, spawn_app, spawn_app_with};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_outage_is_503_and_the_gateway_recovers() {
    let mut mongo = platform::testing::private_mongodb().await;
    let app = spawn_app_with(Options {
        mongodb_uri: Some(format!("mongodb://127.0.0.1:{}", mongo.port)),
        ..Options::default()
    })
    .await;
    let user = app.new_user().await;
    let job = app.submit(&user, "before.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();

    mongo.stop();
    let started = Instant::now();
    let upload = app.upload(&user, "during.mp4", vec![1u8; 10_000], "").await;
    assert_error(upload, 503, "service_unavailable").await;
    let status = app.get(&user, &format!("/jobs/{job_id}")).await;
    assert_error(status, 503, "service_unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let ready = app
        .client
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    // Back (empty: the private server keeps its data in memory): uploads work again.
    mongo.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.upload(&user, "after.mp4", vec![2u8; 10_000], "").await;
        if response.status() == 202 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "the gateway did not recover");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_live_event_streams_and_stops_gracefully() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "pending.mp4").await;
    let response = app
        .get(
            &user,
            &format!("/jobs/{}/events", job["job_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(response.status(), 200);
    // The job never finishes; only the shutdown can end this stream.
    let reader = tokio::spawn(read_sse(response, Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let events = reader.await.unwrap();
    assert_eq!(events.len(), 1, "the submission, then the end: {events:?}");
    assert_eq!(events[0].0, "job.submitted");
}
