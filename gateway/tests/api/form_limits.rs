//! Hostile upload bodies: a part header that never ends, too many parts, a chunked body over the
//! limit. Each gets its 4xx while the client is still sending, the gateway's memory stays flat
//! and it keeps serving.

use crate::helpers::{Options, TestApp, assert_error, spawn_app, spawn_app_with};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;
const BOUNDARY: &str = "hostile-boundary";

/// Resident memory of this process (the gateway runs in it), in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// What a raw client saw.
pub struct RawAnswer {
    pub status: u16,
    pub body: Value,
    /// Body bytes the client had sent when the answer arrived.
    pub sent: u64,
    pub elapsed: Duration,
}

/// Reads one HTTP/1.1 response with a `Content-Length` (every JSON answer of the gateway);
/// `None` when the connection closed before a whole one arrived.
pub async fn read_response(reader: &mut (impl AsyncReadExt + Unpin)) -> Option<(u16, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Some((status, data[end + 4..end + 4 + length].to_vec()));
            }
        }
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
    }
}

/// `POST /upload` with `Transfer-Encoding: chunked`: `head`, then `filler` generated 64 KiB at a
/// time up to `total` bytes (never held in memory), while the answer is read concurrently.
async fn chunked_upload(
    app: &TestApp,
    token: &str,
    head: &[u8],
    filler: u8,
    total: u64,
) -> RawAnswer {
    let address = app.address.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        head.len()
    );
    let mut first = request.into_bytes();
    first.extend_from_slice(head);
    first.extend_from_slice(b"\r\n");
    let start = Instant::now();
    let writing = {
        let sent = sent.clone();
        tokio::spawn(async move {
            writer.write_all(&first).await?;
            let block = vec![filler; 64 * 1024];
            let framed = [format!("{:x}\r\n", block.len()).as_bytes(), &block, b"\r\n"].concat();
            while sent.load(Ordering::Relaxed) < total {
                writer.write_all(&framed).await?;
                sent.fetch_add(block.len() as u64, Ordering::Relaxed);
            }
            writer.write_all(b"0\r\n\r\n").await?;
            Ok::<_, std::io::Error>(())
        })
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), read_response(&mut reader))
        .await
        .expect("an answer within 60 s")
        .expect("an answer before the connection closed");
    let elapsed = start.elapsed();
    let sent = sent.load(Ordering::Relaxed);
    writing.abort();
    RawAnswer {
        status: answer.0,
        body: serde_json::from_slice(&answer.1).expect("a JSON body"),
        sent,
        elapsed,
    }
}

async fn still_serving(app: &TestApp, user: &crate::helpers::User) {
    let health = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    app.submit(user, "after.mp4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_header_that_never_ends_is_refused_early_with_flat_memory() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    app.submit(&user, "warm-up.mp4").await;

    const TOTAL: u64 = 64 * MIB;
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\nX-Endless: "
    );
    let before = vm_rss();
    let peak = Arc::new(AtomicU64::new(before));
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while !sampling.is_cancelled() {
                peak.fetch_max(vm_rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let answer = chunked_upload(&app, &user.token, head.as_bytes(), b'a', TOTAL).await;
    sampling.cancel();
    sampler.await.unwrap();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "answer {} after {:?} and {} KiB sent; VmRSS growth {} KiB",
        answer.status,
        answer.elapsed,
        answer.sent / 1024,
        growth / 1024
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["error"], "part_header_too_large");
    assert!(answer.body["message"].is_string());
    assert!(
        answer.sent < TOTAL,
        "the answer came only after the whole body"
    );
    assert!(growth < 16 * MIB, "memory grew by {} MiB", growth / MIB);
    still_serving(&app, &user).await;
}

#[tokio::test]
async fn a_preamble_that_never_reaches_a_boundary_is_refused() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let answer = chunked_upload(&app, &user.token, b"preamble ", b'p', 16 * MIB).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["error"], "part_header_too_large");
    still_serving(&app, &user).await;
}

#[tokio::test]
async fn too_many_parts_are_refused() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let mut form = Form::new();
    for i in 0..40 {
        form = form.text(format!("extra{i}"), "x");
    }
    form = form.part("file", Part::bytes(b"video".to_vec()).file_name("a.mp4"));
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 400, "too_many_parts").await;
    assert!(
        body["message"].as_str().unwrap().contains("parts"),
        "{body}"
    );
    assert_eq!(
        app.files_of(platform::blob::Bucket::Videos, &user.id).await,
        0
    );

    // A form with a few extra fields is still fine.
    let form = Form::new()
        .text("title", "holiday")
        .text("quality", "V2")
        .part("file", Part::bytes(b"video".to_vec()).file_name("a.mp4"));
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_while_it_streams() {
    let limit = MIB;
    let app = spawn_app_with(Options {
        max_upload_bytes: Some(limit),
        ..Options::default()
    })
    .await;
    let user = app.new_user().await;
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    );
    const TOTAL: u64 = 64 * MIB;
    let answer = chunked_upload(&app, &user.token, head.as_bytes(), 7, TOTAL).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.body["error"], "payload_too_large");
    assert!(
        answer.sent < TOTAL,
        "the answer came only after the whole body"
    );
    assert_eq!(
        app.files_of(platform::blob::Bucket::Videos, &user.id).await,
        0
    );
    still_serving(&app, &user).await;
}
