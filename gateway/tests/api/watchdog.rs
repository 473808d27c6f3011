//! The watchdog: a job the converter never answers is submitted again a bounded number of
//! times, each recorded as `job.resubmitted`, then fails with a reason (whose
//! `conversion.failed` the notification service mails like any failure).

use crate::helpers::{Options, TestApp, spawn_app_with};
use contracts::JobEvent;
use std::time::Duration;

async fn app_with_stall_timeout(timeout: Duration, resubmissions: u32) -> TestApp {
    spawn_app_with(Options {
        configure: Some(Box::new(move |settings| {
            settings.job_stall_timeout = timeout;
            settings.job_max_resubmissions = resubmissions;
            settings.job_watch_interval = Duration::from_millis(200);
        })),
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_nobody_converts_is_resubmitted_then_failed_with_a_reason() {
    // No converter consumes in this test: the job's submission is never answered.
    let app = app_with_stall_timeout(Duration::from_secs(1), 2).await;
    let observed = app.observe().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "ignored.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();

    let failed = app.wait_for_status(&user, &job_id, "failed").await;
    assert_eq!(
        failed["failure_reason"], "no progress for 1 second; gave up after 2 re-submissions",
        "{failed}"
    );
    assert_eq!(failed["resubmissions"], 2, "{failed}");
    observed
        .wait_until(
            "the failure on the bus",
            Duration::from_secs(10),
            |events| {
                events
                    .iter()
                    .any(|e| matches!(e.event, JobEvent::ConversionFailed(_)))
            },
        )
        .await;
    // The submission went out three times (the upload, then two re-submissions), the same event.
    let submissions = observed.of_type("job.submitted");
    assert!(submissions.len() >= 3, "{} submissions", submissions.len());
    assert!(
        submissions
            .iter()
            .all(|e| e.event_id == submissions[0].event_id)
    );
    let stored = app.stored_events(&job_id).await;
    let mut resubmissions: Vec<u32> = stored
        .iter()
        .filter_map(|e| match &e.event {
            JobEvent::JobResubmitted(r) => Some(r.resubmission),
            _ => None,
        })
        .collect();
    resubmissions.sort();
    assert_eq!(resubmissions, vec![1, 2]);
    let failures = stored
        .iter()
        .filter(|e| matches!(e.event, JobEvent::ConversionFailed(_)))
        .count();
    assert_eq!(failures, 1, "one failure, recorded once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_moving_is_left_alone() {
    let app = app_with_stall_timeout(Duration::from_secs(2), 1).await;
    let user = app.new_user().await;
    let job = app.submit(&user, "busy.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let id = uuid::Uuid::parse_str(&job_id).unwrap();
    // Progress every half second for five seconds: never two seconds quiet.
    for percent in 0..10u8 {
        app.publish(
            id,
            JobEvent::ConversionProgress(contracts::events::ConversionProgress {
                percent: percent * 10,
            }),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let state = app.job(&user, &job_id).await;
    assert_eq!(state["status"], "converting", "{state}");
    let resubmitted = app
        .stored_events(&job_id)
        .await
        .iter()
        .filter(|e| matches!(e.event, JobEvent::JobResubmitted(_)))
        .count();
    assert_eq!(resubmitted, 0);
    app.stop().await;
}
