//! Trace propagation from HTTP into events, HTTP metrics on /metrics, and the access log.

use crate::helpers::spawn_app;
use platform::trace::TraceContext;
use reqwest::multipart::{Form, Part};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn an_upload_continues_the_callers_trace_into_job_submitted() {
    let app = spawn_app().await;
    let observed = app.observe().await;
    let user = app.new_user().await;
    let form = Form::new().part(
        "file",
        Part::bytes(b"traced video".to_vec())
            .file_name("traced.mp4")
            .mime_str("video/mp4")
            .unwrap(),
    );
    let response = app
        .client
        .post(app.url("/upload"))
        .bearer_auth(&user.token)
        .header(
            "traceparent",
            format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01"),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answered = TraceContext::parse(response.headers()["traceparent"].to_str().unwrap())
        .expect("a valid traceparent");
    assert_eq!(answered.trace_id_hex(), CALLER_TRACE);
    assert_ne!(
        answered.span_id, 0x00f067aa0ba902b7,
        "the gateway's own span"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    let job_id = body["job_id"].as_str().unwrap().to_owned();

    let stored = app.stored_events(&job_id).await;
    assert_eq!(stored.len(), 1);
    let submitted = TraceContext::parse(stored[0].traceparent.as_deref().unwrap()).unwrap();
    assert_eq!(submitted.trace_id_hex(), CALLER_TRACE);
    observed
        .wait_until(
            "JobSubmitted on the bus",
            Duration::from_secs(10),
            |events| {
                events.iter().any(|e| {
                    e.job_id.to_string() == job_id
                        && e.traceparent
                            .as_deref()
                            .and_then(TraceContext::parse)
                            .is_some_and(|t| t.trace_id_hex() == CALLER_TRACE)
                })
            },
        )
        .await;

    // Without a traceparent (or with a malformed one) a new trace starts.
    let fresh = app
        .client
        .get(app.url("/"))
        .header("traceparent", "garbage")
        .send()
        .await
        .unwrap();
    let started = TraceContext::parse(fresh.headers()["traceparent"].to_str().unwrap()).unwrap();
    assert_ne!(started.trace_id_hex(), CALLER_TRACE);
}

/// The value of the sample of `metric` whose labels include all of `labels`.
fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        if !labels.iter().all(|label| rest.contains(label)) {
            return None;
        }
        rest.rsplit(' ').next()?.parse().ok()
    })
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "counted.mp4").await;
    let job_id = job["job_id"].as_str().unwrap();
    assert_eq!(
        app.get(&user, &format!("/jobs/{job_id}")).await.status(),
        200
    );
    let refused = app.upload(&user, "empty.mp4", Vec::new(), "").await;
    assert_eq!(refused.status(), 400);

    let response = app
        .client
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.unwrap();
    let upload = [r#"method="POST""#, r#"route="/upload""#, r#"status="202""#];
    assert_eq!(
        sample(&metrics, "http_requests_total", &upload),
        Some(1.0),
        "{metrics}"
    );
    let status = [r#"route="/jobs/{id}""#, r#"status="200""#];
    assert_eq!(
        sample(&metrics, "http_requests_total", &status),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains(job_id),
        "raw paths never become labels: {metrics}"
    );
    assert!(sample(&metrics, "http_request_duration_seconds_count", &upload).is_some());
    assert_eq!(
        sample(&metrics, "uploads_total", &[r#"outcome="accepted""#]),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "uploads_total", &[r#"outcome="rejected""#]),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "upload_bytes_total", &[]),
        Some("not really a video".len() as f64)
    );
    assert!(
        sample(
            &metrics,
            "job_events_stored_total",
            &[r#"event_type="job.submitted""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

/// Collects everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn every_request_gets_one_access_log_line() {
    // nextest runs each test in its own process, so this subscriber sees only this test.
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let app = spawn_app().await;
    let user = app.new_user().await;
    let job = app.submit(&user, "logged.mp4").await;
    let job_id = job["job_id"].as_str().unwrap();
    let response = app
        .client
        .get(app.url(&format!("/jobs/{job_id}")))
        .bearer_auth(&user.token)
        .header("x-request-id", "access-log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace = TraceContext::parse(response.headers()["traceparent"].to_str().unwrap()).unwrap();
    response.bytes().await.unwrap();
    let anonymous = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(anonymous.status(), 404);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let access: Vec<serde_json::Value> = output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "access")
        .collect();
    let lines_of = |request_id: &str| {
        access
            .iter()
            .filter(|line| line["fields"]["request_id"] == request_id)
            .cloned()
            .collect::<Vec<_>>()
    };
    let status = lines_of("access-log-test-1");
    assert_eq!(status.len(), 1, "{access:?}");
    let fields = &status[0]["fields"];
    assert_eq!(fields["user_id"], user.id.as_str());
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/jobs/{id}");
    assert_eq!(fields["status"], 200);
    assert!(
        fields["response_bytes"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        fields["latency_ms"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 0.0
    );
    assert_eq!(status[0]["span"]["trace_id"], trace.trace_id_hex());

    let upload = access
        .iter()
        .find(|line| line["fields"]["route"] == "/upload")
        .expect("the upload was logged");
    assert_eq!(upload["fields"]["status"], 202);
    assert!(
        upload["fields"]["request_bytes"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let unmatched = access
        .iter()
        .find(|line| line["fields"]["status"] == 404)
        .expect("unknown routes are logged too");
    assert_eq!(unmatched["fields"]["user_id"], "-");
    assert_eq!(unmatched["fields"]["route"], "unmatched");
    // Secrets never reach the log.
    assert!(!output.contains(&user.token));
    assert!(!output.contains(&user.password));
}
