//! Open job event streams are capped per user (429) and per replica (503), each with a JSON
//! body, and a slot is freed when its stream closes.

use crate::helpers::{Options, TestApp, User, assert_error, spawn_app_with};
use std::time::{Duration, Instant};

async fn open(app: &TestApp, user: &User, job_id: &str) -> reqwest::Response {
    app.get(user, &format!("/jobs/{job_id}/events")).await
}

/// Opens a stream once a slot is free again (slots are freed as the server notices the close).
async fn open_when_freed(app: &TestApp, user: &User, job_id: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = open(app, user, job_id).await;
        if response.status() == 200 || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn event_streams_are_capped_per_user_and_in_all() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|settings| {
            settings.sse_streams_per_user = 2;
            settings.sse_streams_max = 3;
        })),
        ..Options::default()
    })
    .await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let alices_job = app.submit(&alice, "a.mp4").await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bobs_job = app.submit(&bob, "b.mp4").await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let first = open(&app, &alice, &alices_job).await;
    assert_eq!(first.status(), 200);
    let second = open(&app, &alice, &alices_job).await;
    assert_eq!(second.status(), 200);
    let third = open(&app, &alice, &alices_job).await;
    assert!(third.headers().contains_key("retry-after"));
    let body = assert_error(third, 429, "too_many_requests").await;
    assert!(
        body["message"].as_str().unwrap().contains("event streams"),
        "{body}"
    );

    // Bob has his own budget, but the replica holds 3 streams at most.
    let bobs = open(&app, &bob, &bobs_job).await;
    assert_eq!(bobs.status(), 200);
    let over = open(&app, &bob, &bobs_job).await;
    assert!(over.headers().contains_key("retry-after"));
    assert_error(over, 503, "service_unavailable").await;
    // Refusals are not counted: someone else's job is still a 404 first.
    let foreign = open(&app, &bob, &alices_job).await;
    assert_error(foreign, 404, "not_found").await;

    // Closing a stream frees its slot.
    drop(first);
    let again = open_when_freed(&app, &alice, &alices_job).await;
    assert_eq!(again.status(), 200);
    drop(bobs);
    let bobs_again = open_when_freed(&app, &bob, &bobs_job).await;
    assert_eq!(bobs_again.status(), 200);

    // A stream that ends by itself (a finished job) frees its slot too.
    drop((second, again, bobs_again));
    app.convert(&alice, &alices_job, "a.mp4").await;
    app.wait_for_status(&alice, &alices_job, "succeeded").await;
    for _ in 0..5 {
        let finished = open_when_freed(&app, &alice, &alices_job).await;
        assert_eq!(finished.status(), 200);
        let events = crate::helpers::read_sse(finished, Duration::from_secs(10)).await;
        assert_eq!(events.len(), 4);
    }
}
