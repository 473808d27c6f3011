//! One end-to-end journey — sign up, log in, upload, follow the progress, download, get the mail —
//! run twice over the same composition: once with every backend embedded (what a newcomer gets
//! from `cargo run`), once with every backend switched to the real services of the test harness.

mod common;

use common::{Running, User, real_services};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use platform::testing::{mail_dir, wait_for_mail};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The journey, against the REST API at `base_url`, reading the mails that land in `mails`.
async fn signup_login_upload_progress_download_mail(base_url: &str, mails: &Path) {
    // The web page the banner points at.
    let page = reqwest::get(format!("{base_url}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    let user = User::sign_up(base_url).await;
    assert_eq!(user.token.split('.').count(), 3, "a JWT: {}", user.token);

    let accepted = user.upload("holiday.mp4").await;
    assert_eq!(accepted["status"], "submitted", "{accepted}");
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        accepted["links"]["status"],
        format!("{base_url}/jobs/{job_id}"),
        "links point at this server"
    );

    // Progress: the job's live event stream, until it ends at the terminal state.
    let stream = user
        .client
        .get(user.url(&format!("/jobs/{job_id}/events")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = stream.bytes_stream().eventsource();
    let mut seen: Vec<(String, Value)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(event) = events.next().await {
            let event = event.expect("a well-formed event stream");
            assert_ne!(event.event, "error", "{}", event.data);
            let data: Value = serde_json::from_str(&event.data).unwrap();
            seen.push((event.event, data["job"].clone()));
        }
    })
    .await
    .expect("the event stream ends once the job is finished");
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types.first(), Some(&"job.submitted"), "{types:?}");
    assert!(types.contains(&"conversion.started"), "{types:?}");
    assert_eq!(types.last(), Some(&"conversion.succeeded"), "{types:?}");
    let progress: Vec<u64> = seen
        .iter()
        .map(|(_, job)| job["progress"].as_u64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {progress:?}"
    );
    let (_, finished) = seen.last().unwrap();
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["progress"], 100);

    // Status.
    let job = user.job(&job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["duration_seconds"].as_f64().unwrap() > 0.5, "{job}");
    let mp3_file_id = job["mp3_file_id"].as_str().unwrap().to_owned();
    let download = format!("{base_url}/jobs/{job_id}/mp3");
    assert_eq!(job["links"]["download"], download, "{job}");

    // Download: a real MP3.
    let response = user
        .client
        .get(&download)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    let mp3 = response.bytes().await.unwrap();
    assert!(
        mp3.starts_with(b"ID3") || (mp3[0] == 0xFF && mp3[1] & 0xE0 == 0xE0),
        "starts with an ID3 tag or an MPEG frame sync: {:02x?}",
        &mp3[..4]
    );
    assert!(mp3.len() > 8 * 1024, "{} bytes", mp3.len());
    assert_eq!(job["mp3_size_bytes"], mp3.len());

    // The mail: one, with a download command that works as printed.
    let raw = wait_for_mail(
        mails,
        |mail| mail.contains(&user.email),
        Duration::from_secs(60),
    )
    .await;
    let mail = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a parseable mail");
    assert_eq!(
        mail.subject(),
        Some("Your MP3 of \"holiday.mp4\" is ready"),
        "{raw}"
    );
    let text = mail.body_text(0).expect("a text part");
    let url = format!("{base_url}/download?fid={mp3_file_id}");
    let command = format!("curl -o \"holiday.mp3\" -H \"Authorization: Bearer $TOKEN\" \"{url}\"");
    assert!(text.contains(&command), "{command:?} missing from\n{text}");
    let by_mail = user
        .client
        .get(&url)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_mail.status(), 200);
    assert_eq!(by_mail.bytes().await.unwrap(), mp3);

    let job = user
        .wait_for_job(&job_id, "the notification outcome", |job| {
            !job["notification"].is_null()
        })
        .await;
    assert_eq!(job["notification"]["status"], "sent", "{job}");
    assert_eq!(user.mails(mails).len(), 1, "exactly one mail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_with_every_backend_embedded() {
    let data = tempfile::tempdir().unwrap();
    let app = Running::start(allinone::Settings::for_tests(data.path())).await;
    signup_login_upload_progress_download_mail(&app.base_url, &data.path().join("mail")).await;
    app.stop().await;

    // Everything the journey produced lives in the data directory.
    for path in [
        "auth.db",
        "events/events.jsonl",
        "events/outbox.jsonl",
        "events/retention.jsonl",
        "notification/sent.jsonl",
        "files/mp3s",
    ] {
        assert!(data.path().join(path).exists(), "{path} is missing");
    }
    let mp3s = std::fs::read_dir(data.path().join("files/mp3s"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bin")
        })
        .count();
    assert_eq!(mp3s, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_journey_with_every_backend_real() {
    let data = tempfile::tempdir().unwrap();
    let app = Running::start(real_services(data.path()).await).await;
    signup_login_upload_progress_download_mail(&app.base_url, &mail_dir()).await;
    app.stop().await;

    // Nothing went to the embedded backends.
    for path in ["auth.db", "events", "files", "mail", "notification"] {
        assert!(!data.path().join(path).exists(), "{path} was created");
    }
}
