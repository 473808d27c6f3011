use crate::helpers::{TestApp, User, assert_error, spawn_app};

async fn converted(app: &TestApp, user: &User, name: &str) -> (String, String, Vec<u8>) {
    let job = app.submit(user, name).await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let (mp3_id, mp3) = app.convert(user, &job_id, name).await;
    app.wait_for_status(user, &job_id, "succeeded").await;
    (job_id, mp3_id, mp3)
}

#[tokio::test]
async fn the_owner_downloads_the_mp3_by_file_id_and_by_job() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (job_id, mp3_id, mp3) = converted(&app, &user, "holiday.mp4").await;

    for path in [
        format!("/download?fid={mp3_id}"),
        format!("/jobs/{job_id}/mp3"),
    ] {
        let response = app.get(&user, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "audio/mpeg");
        assert_eq!(headers["content-length"], mp3.len().to_string().as_str());
        assert_eq!(headers["accept-ranges"], "bytes");
        assert_eq!(headers["etag"], format!("\"{mp3_id}\"").as_str());
        assert_eq!(
            headers["content-disposition"],
            "attachment; filename=\"holiday.mp3\"; filename*=UTF-8''holiday.mp3"
        );
        assert_eq!(response.bytes().await.unwrap(), mp3);
    }

    // A matching If-None-Match saves the transfer.
    let cached = app
        .client
        .get(app.url(&format!("/download?fid={mp3_id}")))
        .bearer_auth(&user.token)
        .header("if-none-match", format!("\"{mp3_id}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
}

#[tokio::test]
async fn byte_ranges_are_served_with_206_and_unsatisfiable_ones_with_416() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (job_id, mp3_id, mp3) = converted(&app, &user, "song.mov").await;
    let len = mp3.len();
    let get_range = |range: String| {
        let app = &app;
        let token = user.token.clone();
        let url = app.url(&format!("/jobs/{job_id}/mp3"));
        async move {
            app.client
                .get(url)
                .bearer_auth(token)
                .header("range", range)
                .send()
                .await
                .unwrap()
        }
    };

    // Across a GridFS chunk boundary (1 MiB chunks would not be crossed by a 300 kB file, so
    // pick a range in the middle and one at the end).
    let response = get_range("bytes=1000-200999".into()).await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 1000-200999/{len}").as_str()
    );
    assert_eq!(response.headers()["content-length"], "200000");
    assert_eq!(response.bytes().await.unwrap(), mp3[1000..201000]);

    let response = get_range("bytes=-100".into()).await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes {}-{}/{len}", len - 100, len - 1).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), mp3[len - 100..]);

    let response = get_range(format!("bytes={}-", len - 1)).await;
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap(), mp3[len - 1..]);

    let response = get_range(format!("bytes={len}-")).await;
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    assert_error(response, 416, "range_not_satisfiable").await;

    // If-Range with a stale validator: the whole file.
    let response = app
        .client
        .get(app.url(&format!("/download?fid={mp3_id}")))
        .bearer_auth(&user.token)
        .header("range", "bytes=0-9")
        .header("if-range", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), len);
}

#[tokio::test]
async fn bad_and_unknown_file_ids_are_400_and_404() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let response = app.get(&user, "/download").await;
    assert_error(response, 400, "bad_request").await;
    let response = app.get(&user, "/download?fid=not-an-object-id").await;
    assert_error(response, 400, "bad_request").await;
    let response = app
        .get(&user, "/download?fid=0123456789abcdef01234567")
        .await;
    assert_error(response, 404, "not_found").await;
    let response = app
        .get(&user, &format!("/jobs/{}/mp3", uuid::Uuid::now_v7()))
        .await;
    assert_error(response, 404, "not_found").await;
    // A video id is not an MP3 id.
    let job = app.submit(&user, "v.mp4").await;
    let response = app
        .get(
            &user,
            &format!("/download?fid={}", job["video_file_id"].as_str().unwrap()),
        )
        .await;
    assert_error(response, 404, "not_found").await;
    // Not converted yet.
    let response = app
        .get(
            &user,
            &format!("/jobs/{}/mp3", job["job_id"].as_str().unwrap()),
        )
        .await;
    assert_error(response, 409, "conflict").await;
}

#[tokio::test]
async fn non_ascii_names_get_an_rfc6266_disposition() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (_, mp3_id, _) = converted(&app, &user, "été à Paris.mp4").await;
    let response = app.get(&user, &format!("/download?fid={mp3_id}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"_t_ _ Paris.mp3\"; filename*=UTF-8''%C3%A9t%C3%A9%20%C3%A0%20Paris.mp3"
    );
}
