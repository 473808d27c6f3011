use crate::helpers::{Options, assert_error, spawn_app, spawn_app_with};
use contracts::Quality;
use contracts::events::JobEvent;
use platform::blob::{BlobStore, Bucket};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn an_upload_is_stored_announced_and_immediately_visible() {
    let app = spawn_app().await;
    let observed = app.observe().await;
    let user = app.new_user().await;
    let video = b"\x00\x00\x00\x18ftypmp42 pretend video bytes".repeat(1000);
    let response = app.upload(&user, "holiday.mp4", video.clone(), "").await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let job_id = body["job_id"].as_str().unwrap();
    let video_id = body["video_file_id"].as_str().unwrap();
    assert_eq!(location, format!("http://mp3converter.test/jobs/{job_id}"));
    assert_eq!(body["links"]["status"], location);
    assert_eq!(body["links"]["download"], format!("{location}/mp3"));
    assert_eq!(body["size_bytes"], video.len());
    assert_eq!(body["status"], "submitted");

    // The video is in GridFS with its metadata, byte for byte.
    let info = app
        .blobs
        .info(Bucket::Videos, video_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.length, video.len() as u64);
    assert_eq!(info.metadata["owner_id"], user.id.as_str());
    assert_eq!(info.metadata["job_id"], job_id);
    assert_eq!(info.metadata["original_filename"], "holiday.mp4");
    assert_eq!(info.metadata["content_type"], "video/mp4");
    let stored = read_all(&app, Bucket::Videos, video_id).await;
    assert_eq!(stored, video);

    // Status works at once (the event went straight into the store).
    let job = app.job(&user, job_id).await;
    assert_eq!(job["status"], "submitted");
    assert_eq!(job["original_filename"], "holiday.mp4");
    assert_eq!(job["video_file_id"], video_id);

    // JobSubmitted went out on the bus, once.
    observed
        .wait_until("JobSubmitted", Duration::from_secs(10), |events| {
            !events.is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submitted = observed.of_type("job.submitted");
    assert_eq!(submitted.len(), 1);
    let JobEvent::JobSubmitted(event) = &submitted[0].event else {
        unreachable!()
    };
    assert_eq!(submitted[0].job_id.to_string(), job_id);
    assert_eq!(event.owner_id, user.id);
    assert_eq!(event.owner_email, user.email);
    assert_eq!(event.video_file_id, video_id);
    assert_eq!(event.size_bytes, video.len() as u64);
    assert_eq!(event.quality, None);
    assert_eq!(app.outbox_pending().await, 0);
}

async fn read_all(app: &crate::helpers::TestApp, bucket: Bucket, id: &str) -> Vec<u8> {
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = app
        .blobs
        .read(bucket, id, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

#[tokio::test]
async fn quality_and_bitrate_are_carried_from_query_or_form() {
    let app = spawn_app().await;
    let observed = app.observe().await;
    let user = app.new_user().await;

    let by_query = app
        .upload(&user, "a.mp4", b"video".to_vec(), "?quality=V0")
        .await;
    assert_eq!(by_query.status(), 202);
    let by_query: Value = by_query.json().await.unwrap();
    assert_eq!(by_query["quality"], "V0");

    let form = Form::new()
        .text("bitrate", "192")
        .part("video", Part::bytes(b"video".to_vec()).file_name("b.mkv"));
    let by_form = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(by_form.status(), 202);
    let by_form: Value = by_form.json().await.unwrap();
    assert_eq!(by_form["quality"], "192 kbps");

    observed
        .wait_until("two submissions", Duration::from_secs(10), |e| e.len() >= 2)
        .await;
    let qualities: Vec<(String, Option<Quality>)> = observed
        .of_type("job.submitted")
        .into_iter()
        .map(|e| match e.event {
            JobEvent::JobSubmitted(s) => (e.job_id.to_string(), s.quality),
            _ => unreachable!(),
        })
        .collect();
    assert!(qualities.contains(&(
        by_query["job_id"].as_str().unwrap().to_owned(),
        Some(Quality::Vbr { level: 0 })
    )));
    assert!(qualities.contains(&(
        by_form["job_id"].as_str().unwrap().to_owned(),
        Some(Quality::Cbr { kbps: 192 })
    )));

    let job = app.job(&user, by_query["job_id"].as_str().unwrap()).await;
    assert_eq!(job["quality"]["mode"], "vbr");
    assert_eq!(job["quality_label"], "V0");
}

#[tokio::test]
async fn invalid_quality_requests_are_422_and_store_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for query in [
        "?quality=V10",
        "?quality=best",
        "?bitrate=100",
        "?bitrate=fast",
        "?quality=V2&bitrate=192",
    ] {
        let response = app.upload(&user, "a.mp4", b"video".to_vec(), query).await;
        assert_error(response, 422, "unprocessable_entity").await;
    }
    // Quality in the query and bitrate in the form: still both.
    let form = Form::new()
        .part("file", Part::bytes(b"video".to_vec()).file_name("a.mp4"))
        .text("bitrate", "128");
    let response = app
        .client
        .post(app.url("/upload?quality=V3"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(response, 422, "unprocessable_entity").await;
    assert_eq!(app.files_of(Bucket::Videos, &user.id).await, 0);
}

#[tokio::test]
async fn missing_empty_duplicate_or_malformed_files_are_400_and_store_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;

    let empty = app.upload(&user, "empty.mp4", Vec::new(), "").await;
    assert_error(empty, 400, "bad_request").await;

    let no_file = Form::new().text("quality", "V2");
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(no_file)
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "bad_request").await;

    let two_files = Form::new()
        .part("file", Part::bytes(vec![1u8; 100_000]).file_name("a.mp4"))
        .part("file2", Part::bytes(vec![2u8; 1000]).file_name("b.mp4"));
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(two_files)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 400, "bad_request").await;
    assert!(
        body["message"].as_str().unwrap().contains("one file"),
        "{body}"
    );

    // A body cut off in the middle of the file part.
    let truncated = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nsome bytes but never the closing boundary";
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(truncated)
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "bad_request").await;

    let not_multipart = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .json(&serde_json::json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(not_multipart, 400, "bad_request").await;

    let no_boundary = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .header("content-type", "multipart/form-data")
        .body("whatever")
        .send()
        .await
        .unwrap();
    assert_error(no_boundary, 400, "bad_request").await;

    assert_eq!(app.files_of(Bucket::Videos, &user.id).await, 0);
    let jobs: Value = app.get(&user, "/jobs").await.json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn uploads_need_a_valid_token() {
    let app = spawn_app().await;
    let form = Form::new().part("file", Part::bytes(b"video".to_vec()).file_name("a.mp4"));
    let response = app
        .client
        .post(app.url("/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthorized").await;

    let form = Form::new().part("file", Part::bytes(b"video".to_vec()).file_name("a.mp4"));
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthorized").await;
}

/// Sends a hand-written multipart body whose file part has this `Content-Disposition`.
async fn upload_raw(
    app: &crate::helpers::TestApp,
    token: &str,
    disposition: &[u8],
) -> reqwest::Response {
    let raw = [
        &b"--B\r\nContent-Disposition: "[..],
        disposition,
        b"\r\nContent-Type: video/mp4\r\n\r\nvideo bytes\r\n--B--\r\n",
    ]
    .concat();
    app.client
        .post(app.url("/upload"))
        .bearer_auth(token)
        .header("content-type", "multipart/form-data; boundary=B")
        .body(raw)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn hostile_file_names_are_sanitised() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = app.submit(&user, "../../etc/passwd.mp4").await;
    assert_eq!(body["original_filename"], "passwd.mp4");
    let info = app
        .blobs
        .info(Bucket::Videos, body["video_file_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.metadata["original_filename"], "passwd.mp4");

    // Control characters and Windows paths can only arrive percent-encoded (RFC 5987).
    let response = upload_raw(
        &app,
        &user.token,
        b"form-data; name=\"file\"; filename*=UTF-8''..%5C..%5Cetc%2Fpa%01ss%0Awd%7F.mp4",
    )
    .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["original_filename"], "passwd.mp4");

    // A name that is not UTF-8 still marks a file part, and is repaired.
    let response = upload_raw(
        &app,
        &user.token,
        b"form-data; name=\"file\"; filename=\"caf\xe9.mp4\"",
    )
    .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["original_filename"], "caf\u{fffd}.mp4");

    // A raw control character in a part header is not valid multipart at all.
    let response = upload_raw(
        &app,
        &user.token,
        b"form-data; name=\"file\"; filename=\"a\x01b.mp4\"",
    )
    .await;
    assert_error(response, 400, "bad_request").await;
}

/// Over the limit: 413, and neither the file nor any of its chunks stays in `videos`. Runs on a
/// private MongoDB so "no chunk at all" can be checked exactly.
#[tokio::test]
async fn uploads_over_the_limit_are_413_and_leave_nothing_behind() {
    let mongo = platform::testing::private_mongodb().await;
    let uri = format!("mongodb://127.0.0.1:{}", mongo.port);
    let limit: u64 = 3 * 1024 * 1024;
    let app = spawn_app_with(Options {
        max_upload_bytes: Some(limit),
        mongodb_uri: Some(uri),
        ..Options::default()
    })
    .await;
    let user = app.new_user().await;
    let videos = app.mongo.database("videos");
    let count = |name: &'static str| {
        let videos = videos.clone();
        async move {
            videos
                .collection::<mongodb::bson::Document>(name)
                .count_documents(mongodb::bson::doc! {})
                .await
                .unwrap()
        }
    };

    // Streamed without a declared length, so the gateway must notice while storing: several
    // MiB are written to GridFS before the limit is crossed.
    let chunk = bytes::Bytes::from(vec![7u8; 256 * 1024]);
    let chunks = (0..16).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let form = Form::new().part("file", Part::stream(body).file_name("big.mp4"));
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 413, "payload_too_large").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&limit.to_string())
    );
    assert_eq!(count("fs.files").await, 0);
    assert_eq!(count("fs.chunks").await, 0);

    // With a declared length it is refused before anything is stored.
    let form = Form::new().part(
        "file",
        Part::bytes(vec![1u8; 5 * 1024 * 1024]).file_name("big.mp4"),
    );
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "payload_too_large").await;
    assert_eq!(count("fs.files").await, 0);
    assert_eq!(count("fs.chunks").await, 0);

    // Exactly at the limit is fine.
    let response = app
        .upload(&user, "ok.mp4", vec![3u8; limit as usize], "")
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(count("fs.files").await, 1);
}
