//! Nothing orphaned: the orphan sweeper deletes a video whose job was never recorded and the
//! files of deleted jobs, once they are older than `ORPHAN_GRACE`, and leaves live jobs' files.
//! On a private MongoDB-wire server: the sweeper walks the whole blob store, which the other
//! tests share.

use crate::helpers::{Options, spawn_app_with};
use platform::blob::{BlobStore, Bucket, Metadata};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_without_a_job_and_files_of_deleted_jobs_are_swept_live_ones_stay() {
    let mongo = platform::testing::private_mongodb().await;
    let app = spawn_app_with(Options {
        mongodb_uri: Some(format!("mongodb://127.0.0.1:{}", mongo.port)),
        configure: Some(Box::new(|settings| {
            settings.orphan_grace = Duration::from_secs(2);
            settings.orphan_sweep_interval = Duration::from_millis(200);
        })),
        ..Options::default()
    })
    .await;
    let user = app.new_user().await;
    let live = app.submit(&user, "live.mp4").await;
    let live_video = live["video_file_id"].as_str().unwrap().to_owned();

    // A crash between the GridFS write and the outbox: a video whose job was never recorded.
    let mut metadata = Metadata::new();
    metadata.insert("job_id".into(), Uuid::now_v7().to_string().into());
    metadata.insert("owner_id".into(), user.id.clone().into());
    let mut upload = app
        .blobs
        .create(Bucket::Videos, "lost.mp4", metadata)
        .await
        .unwrap();
    upload.write(b"not really a video").await.unwrap();
    let lost = upload.finish().await.unwrap().id;

    // An MP3 that arrived for a job its owner had deleted, and that stayed.
    let deleted = app.submit(&user, "deleted.mp4").await;
    let deleted_id = deleted["job_id"].as_str().unwrap().to_owned();
    let response = app
        .client
        .delete(app.url(&format!("/jobs/{deleted_id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (late_mp3, _) = app
        .store_mp3(&user, &deleted_id, "deleted.mp4", b"ID3 mp3")
        .await;

    app.wait_until_deleted(Bucket::Videos, &lost, Duration::from_secs(20))
        .await;
    app.wait_until_deleted(Bucket::Mp3s, &late_mp3, Duration::from_secs(20))
        .await;
    // Older than the grace by now, and looked at in the same sweeps: kept, its job is alive.
    assert!(
        app.file_and_chunks(Bucket::Videos, &live_video).await.0,
        "the live job's video stays"
    );
    app.stop().await;
}
