use crate::helpers::{assert_error, read_sse, spawn_app};
use contracts::events::{ConversionFailed, FailureKind, JobEvent};
use platform::blob::{BlobStore, Bucket};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn status_follows_the_converters_events() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "holiday.mp4").await;
    let job_id = job["job_id"].as_str().unwrap();

    let (mp3_id, mp3) = app.convert(&user, job_id, "holiday.mp4").await;
    let state = app.wait_for_status(&user, job_id, "succeeded").await;
    assert_eq!(state["progress"], 100);
    assert_eq!(state["mp3_file_id"], mp3_id.as_str());
    assert_eq!(state["mp3_size_bytes"], mp3.len());
    assert_eq!(state["duration_seconds"], 12.5);
    assert_eq!(state["bitrate_kbps"], 192);
    assert_eq!(state["attempts"], 1);
    for at in ["submitted_at", "started_at", "finished_at"] {
        assert!(state[at].is_string(), "{at}: {state}");
    }
    assert_eq!(
        state["links"]["download"],
        format!("http://mp3converter.test/jobs/{job_id}/mp3")
    );
    // The body is the public contract and nothing else: it reads as `api::JobView` and writes
    // back identical, so no internal field of the fold slips out beside the listed ones.
    let view: api::JobView = serde_json::from_value(state.clone()).unwrap();
    assert_eq!(view.status, api::JobStatus::Succeeded);
    assert_eq!(serde_json::to_value(&view).unwrap(), state);
    assert!(state.get("owner_id").is_none(), "{state}");
}

#[tokio::test]
async fn a_failed_conversion_shows_its_reason() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "silent.mp4").await;
    let job_id = job["job_id"].as_str().unwrap();
    app.publish(
        Uuid::parse_str(job_id).unwrap(),
        JobEvent::ConversionFailed(ConversionFailed {
            owner_id: user.id.clone(),
            owner_email: user.email.clone(),
            original_filename: "silent.mp4".into(),
            kind: FailureKind::Unconvertible,
            reason: "the file has no audio track".into(),
        }),
    )
    .await;
    let state = app.wait_for_status(&user, job_id, "failed").await;
    assert_eq!(state["failure_reason"], "the file has no audio track");
    assert_eq!(state["failure_kind"], "unconvertible");
    assert!(state["links"].get("download").is_none());
    let mp3 = app.get(&user, &format!("/jobs/{job_id}/mp3")).await;
    assert_error(mp3, 409, "conflict").await;
}

#[tokio::test]
async fn duplicated_and_late_events_do_not_corrupt_the_state() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "a.mp4").await;
    let job_id = job["job_id"].as_str().unwrap();
    let id = Uuid::parse_str(job_id).unwrap();
    app.convert(&user, job_id, "a.mp4").await;
    app.wait_for_status(&user, job_id, "succeeded").await;
    // A redelivered progress event (same event id twice) and a late one.
    let late = contracts::Envelope::new(
        id,
        "converter",
        JobEvent::ConversionProgress(contracts::events::ConversionProgress { percent: 10 }),
    );
    platform::bus::EventBus::publish(app.bus.as_ref(), &late)
        .await
        .unwrap();
    platform::bus::EventBus::publish(app.bus.as_ref(), &late)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = app.job(&user, job_id).await;
    assert_eq!(state["status"], "succeeded");
    assert_eq!(state["progress"], 100);
    let events = app
        .mongo
        .database(&app.jobs_database)
        .collection::<mongodb::bson::Document>("events")
        .count_documents(mongodb::bson::doc! {"_id": late.event_id.to_string()})
        .await
        .unwrap();
    assert_eq!(events, 1, "stored once");
}

#[tokio::test]
async fn the_event_stream_is_live_until_the_job_is_done() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "clip.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();

    let response = app.get(&user, &format!("/jobs/{job_id}/events")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let reader = tokio::spawn(read_sse(response, Duration::from_secs(30)));
    // The converter works while the client listens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.convert(&user, &job_id, "clip.mp4").await;

    let events = reader.await.unwrap();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    // Events are streamed as the gateway stores them; the broker may hand the started and progress
    // events to its consumer in either order (each carries the correctly folded state).
    assert_eq!(types.len(), 4, "{events:?}");
    assert_eq!(types[0], "job.submitted");
    assert_eq!(types[3], "conversion.succeeded");
    let mut middle = types[1..3].to_vec();
    middle.sort_unstable();
    assert_eq!(
        middle,
        ["conversion.progress", "conversion.started"],
        "{events:?}"
    );
    let progress = &events
        .iter()
        .find(|(t, _)| t == "conversion.progress")
        .expect("a progress event")
        .1;
    assert_eq!(progress["job"]["status"], "converting");
    assert_eq!(progress["job"]["progress"], 50);
    assert_eq!(progress["event"]["payload"]["percent"], 50);
    let last = &events[3].1;
    assert_eq!(last["job"]["status"], "succeeded");
    assert_eq!(last["job"]["progress"], 100);
    for (name, data) in &events {
        let message: api::events::JobEventMessage = serde_json::from_value(data.clone())
            .unwrap_or_else(|e| panic!("{name}: not the contract's event message ({e}): {data}"));
        assert!(
            api::events::JOB_EVENT_TYPES.contains(&name.as_str()),
            "{name}"
        );
        assert_eq!(message.event["event_type"], name.as_str());
    }

    // Reconnecting after the end replays the history and ends at once.
    let again = app.get(&user, &format!("/jobs/{job_id}/events")).await;
    assert_eq!(read_sse(again, Duration::from_secs(10)).await.len(), 4);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_pagination() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let mut ids = Vec::new();
    for name in ["one.mp4", "two.mp4", "three.mp4"] {
        ids.push(
            app.submit(&user, name).await["job_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.submit(&other, "theirs.mp4").await;

    let page: Value = app.get(&user, "/jobs?limit=2").await.json().await.unwrap();
    let listed: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(page["jobs"][0]["original_filename"], "three.mp4");
    assert_eq!(page["jobs"][0]["status"], "submitted");
    let next = page["next"].as_str().unwrap();
    let path = next.strip_prefix("http://mp3converter.test").unwrap();
    let rest: Value = app.get(&user, path).await.json().await.unwrap();
    let listed: Vec<&str> = rest["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str()]);
    assert!(rest["next"].is_null());

    let all: api::JobList = app.get(&user, "/jobs").await.json().await.unwrap();
    assert_eq!(all.jobs.len(), 3);
    assert!(
        all.jobs
            .iter()
            .all(|j| j.status == api::JobStatus::Submitted)
    );
    assert_eq!(all.next, None);

    for bad in ["/jobs?limit=0", "/jobs?limit=1000"] {
        assert_error(app.get(&user, bad).await, 422, "unprocessable_entity").await;
    }
    for bad in ["/jobs?limit=abc", "/jobs?before=not-a-uuid"] {
        assert_error(app.get(&user, bad).await, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn deleting_a_job_removes_its_files_and_records_the_deletion() {
    let app = spawn_app().await;
    let observed = app.observe().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "gone.mp4").await;
    let job_id = job["job_id"].as_str().unwrap();
    let video_id = job["video_file_id"].as_str().unwrap();
    let (mp3_id, _) = app.convert(&user, job_id, "gone.mp4").await;
    app.wait_for_status(&user, job_id, "succeeded").await;

    let response = app
        .client
        .delete(app.url(&format!("/jobs/{job_id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        app.blobs
            .info(Bucket::Videos, video_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        app.blobs
            .info(Bucket::Mp3s, &mp3_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(app.job(&user, job_id).await["status"], "deleted");
    observed
        .wait_until("JobDeleted", Duration::from_secs(10), |events| {
            events
                .iter()
                .any(|e| e.event_type() == "job.deleted" && e.job_id.to_string() == job_id)
        })
        .await;
    let download = app.get(&user, &format!("/jobs/{job_id}/mp3")).await;
    assert_error(download, 404, "not_found").await;
    let by_fid = app.get(&user, &format!("/download?fid={mp3_id}")).await;
    assert_error(by_fid, 404, "not_found").await;

    // Deleting again is harmless and records nothing new.
    let again = app
        .client
        .delete(app.url(&format!("/jobs/{job_id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(observed.of_type("job.deleted").len(), 1);
}

#[tokio::test]
async fn other_users_jobs_do_not_exist_for_them() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let stranger = app.new_user().await;
    let job = app.submit(&owner, "private.mp4").await;
    let job_id = job["job_id"].as_str().unwrap();
    let (mp3_id, _) = app.convert(&owner, job_id, "private.mp4").await;
    app.wait_for_status(&owner, job_id, "succeeded").await;

    let unknown = Uuid::now_v7();
    for path in [
        format!("/jobs/{job_id}"),
        format!("/jobs/{job_id}/events"),
        format!("/jobs/{job_id}/mp3"),
        format!("/download?fid={mp3_id}"),
    ] {
        let response = app.get(&stranger, &path).await;
        let stranger_body = assert_error(response, 404, "not_found").await;
        // Indistinguishable from a job that does not exist.
        let unknown_path = path
            .replace(job_id, &unknown.to_string())
            .replace(&mp3_id, "0123456789abcdef01234567");
        let response = app.get(&stranger, &unknown_path).await;
        let unknown_body = assert_error(response, 404, "not_found").await;
        assert_eq!(stranger_body, unknown_body, "{path}");
    }
    let delete = app
        .client
        .delete(app.url(&format!("/jobs/{job_id}")))
        .bearer_auth(&stranger.token)
        .send()
        .await
        .unwrap();
    assert_error(delete, 404, "not_found").await;
    // Nothing was deleted.
    assert!(
        app.blobs
            .info(Bucket::Mp3s, &mp3_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(app.job(&owner, job_id).await["status"], "succeeded");
    let listed: Value = app.get(&stranger, "/jobs").await.json().await.unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn malformed_job_ids_are_400() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for path in [
        "/jobs/not-a-uuid",
        "/jobs/123/events",
        "/jobs/..%2F..%2Fetc/mp3",
    ] {
        let response = app.get(&user, path).await;
        assert_error(response, 400, "bad_request").await;
    }
    let response = app
        .client
        .delete(app.url("/jobs/zzz"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "bad_request").await;
}
