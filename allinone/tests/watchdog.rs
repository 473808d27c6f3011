//! No accepted job stays unfinished, end to end: with no converter consuming, the gateway's
//! watchdog submits the job again, then fails it with a reason, and the notification service
//! mails the owner about that failure like about any other.

mod common;

use allinone::Settings;
use common::{Running, User};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_converter_answers_fails_with_a_reason_and_its_owner_is_mailed() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(data.path());
    settings.start_converter = false;
    settings.gateway.job_stall_timeout = Duration::from_secs(1);
    settings.gateway.job_max_resubmissions = 1;
    settings.gateway.job_watch_interval = Duration::from_millis(200);
    let app = Running::start(settings).await;
    let user = User::sign_up(&app.base_url).await;
    let job_id = user.upload("unanswered.mp4").await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let job = user
        .wait_for_job(&job_id, "the failure and its mail", |job| {
            job["status"] == "failed" && !job["notification"].is_null()
        })
        .await;
    assert_eq!(
        job["failure_reason"], "no progress for 1 second; gave up after 1 re-submission",
        "{job}"
    );
    assert_eq!(job["resubmissions"], 1, "{job}");
    assert_eq!(job["notification"]["status"], "sent", "{job}");
    let mails = user.mails(&data.path().join("mail"));
    assert_eq!(mails.len(), 1, "one mail");
    assert!(
        mails[0].contains("no progress for 1 second"),
        "the mail gives the reason: {}",
        mails[0]
    );
    app.stop().await;
}
