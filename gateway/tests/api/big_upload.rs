//! A 300 MB upload streams through the gateway without its memory growing with the file.

use crate::helpers::spawn_app;
use bytes::Bytes;
use platform::blob::{BlobStore, Bucket};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Resident memory of this process (the gateway runs in it), in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_upload_keeps_memory_flat() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    // Warm up the connection pools and allocator with a small upload first.
    app.submit(&user, "warm-up.mp4").await;

    const SIZE: u64 = 300 * MIB;
    // Generated as it is sent: the same 1 MiB buffer (shared, not copied) 300 times.
    let block = Bytes::from((0..MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let chunks = (0..SIZE / MIB).map(move |_| Ok::<_, std::io::Error>(block.clone()));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let form = Form::new().part(
        "file",
        Part::stream_with_length(body, SIZE)
            .file_name("feature-film.mp4")
            .mime_str("video/mp4")
            .unwrap(),
    );

    let before = vm_rss();
    let peak = Arc::new(AtomicU64::new(before));
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let peak = peak.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            while !sampling.is_cancelled() {
                peak.fetch_max(vm_rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(form)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    sampling.cancel();
    sampler.await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "VmRSS before {} MiB, peak growth {} MiB",
        before / MIB,
        growth / MIB
    );
    assert!(
        growth < 64 * MIB,
        "memory grew by {} MiB for a 300 MiB upload",
        growth / MIB
    );

    let video_id = body["video_file_id"].as_str().unwrap();
    let info = app
        .blobs
        .info(Bucket::Videos, video_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.length, SIZE);
    assert_eq!(body["size_bytes"], SIZE);

    // Clean up the shared server.
    let deleted = app
        .client
        .delete(app.url(&format!("/jobs/{}", body["job_id"].as_str().unwrap())))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}
