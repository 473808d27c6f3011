//! Server-side timeouts: a connection that never finishes its request head is closed after
//! `HEADER_READ_TIMEOUT`, an upload whose body stalls is cut after `BODY_IDLE_TIMEOUT` (408).

use crate::form_limits::read_response;
use crate::helpers::{Options, TestApp, spawn_app_with};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_secs(1);

async fn app_with_short_timeouts() -> TestApp {
    spawn_app_with(Options {
        configure: Some(Box::new(|settings| {
            settings.header_read_timeout = SHORT;
            settings.body_idle_timeout = SHORT;
        })),
        ..Options::default()
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// How long until the server closes `stream` (reading and discarding whatever it sends).
async fn time_to_close(mut stream: TcpStream, start: Instant) -> Duration {
    let mut buffer = [0u8; 4096];
    let wait = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(wait.is_ok(), "the connection was still open after 30 s");
    start.elapsed()
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed() {
    let app = app_with_short_timeouts().await;

    // Silent from the start.
    let start = Instant::now();
    let silent = connect(&app).await;
    let closed_after = time_to_close(silent, start).await;
    assert!(
        closed_after >= SHORT - Duration::from_millis(100) && closed_after < SHORT * 5,
        "silent connection closed after {closed_after:?}"
    );

    // Half a request head, then nothing.
    let start = Instant::now();
    let mut partial = connect(&app).await;
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        .await
        .unwrap();
    let closed_after = time_to_close(partial, start).await;
    assert!(
        closed_after < SHORT * 5,
        "partial head closed after {closed_after:?}"
    );

    // Whole requests are unaffected, on fresh or kept-alive connections.
    for _ in 0..3 {
        let health = app.client.get(app.url("/")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
}

#[tokio::test]
async fn an_upload_whose_body_stalls_is_cut_with_408() {
    let app = app_with_short_timeouts().await;
    let user = app.new_user().await;
    let mut stream = connect(&app).await;
    let head =
        "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.mp4\"\r\n\r\n";
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n{head}",
        user.token,
        10 * 1024 * 1024
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&vec![5u8; 200 * 1024]).await.unwrap();
    // ...and then nothing more.
    let start = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), read_response(&mut stream))
        .await
        .expect("an answer within 20 s")
        .expect("an answer before the connection closed");
    let elapsed = start.elapsed();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"], "request_timeout");
    assert!(elapsed < SHORT * 5, "answered after {elapsed:?}");
    assert_eq!(
        app.files_of(platform::blob::Bucket::Videos, &user.id).await,
        0
    );
    let health = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_json_body_that_stalls_is_cut_with_408() {
    let app = app_with_short_timeouts().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /signup HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"email\": \"slow",
        )
        .await
        .unwrap();
    let start = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), read_response(&mut stream))
        .await
        .expect("an answer within 20 s")
        .expect("an answer before the connection closed");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"], "request_timeout");
    assert!(start.elapsed() < SHORT * 5);
}
