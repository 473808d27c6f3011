//! Observability across the four services, composed in one process: one job's trace id appears in
//! the log lines of auth, gateway, converter and notification, and the metric families move when a
//! job runs. (Each service's own tests check its spans and metrics in detail.)

mod common;

use allinone::Settings;
use common::{FIXTURE, PASSWORD, Running};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A log sink shared with the global subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install_json_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .init();
    captured
}

/// A value of one metric family (summed over its label sets) in Prometheus text.
fn metric_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_jobs_trace_id_reaches_the_logs_of_all_four_services_and_metrics_move() {
    let logs = install_json_logs();
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(Settings::for_tests(dir.path())).await;
    let base = running.base_url.clone();
    let admin = running.admin_url.clone();
    let client = reqwest::Client::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let metrics_before = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let email = format!("trace-{}@example.com", uuid::Uuid::new_v4().simple());
    let signup = client
        .post(format!("{base}/signup"))
        .header("traceparent", &traceparent)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let login = client
        .post(format!("{base}/login"))
        .header("traceparent", &traceparent)
        .basic_auth(&email, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let echoed = login.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        echoed.contains(trace_id),
        "the gateway continues the caller's trace: {echoed}"
    );
    let token = login.text().await.unwrap();

    let video = std::fs::read(FIXTURE).unwrap();
    let form = Form::new().part("file", Part::bytes(video).file_name("traced.mp4"));
    let accepted: Value = client
        .post(format!("{base}/upload"))
        .header("traceparent", &traceparent)
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().expect("accepted").to_owned();

    // Done when the notification outcome is folded into the job.
    let mut job = Value::Null;
    for _ in 0..300 {
        job = client
            .get(format!("{base}/jobs/{job_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["notification"]["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["notification"]["status"], "sent", "{job}");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let mut services_seen = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| l.contains(trace_id)) {
        let parsed: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        if let Some(target) = parsed["target"].as_str() {
            let service = target.split("::").next().unwrap_or(target).to_owned();
            services_seen.insert(service);
        }
    }
    for service in ["auth", "gateway", "converter", "notification"] {
        assert!(
            services_seen.contains(service),
            "no {service} log line carries the job's trace id; seen: {services_seen:?}"
        );
    }
    assert!(!text.contains(PASSWORD), "a password reached the logs");
    assert!(!text.contains(&token), "a token reached the logs");

    let metrics_after = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "http_requests_total",
        "grpc_server_requests_total",
        "auth_logins_total",
        "events_published_total",
        "events_consumed_total",
        "jobs_total",
        "emails_total",
        "upload_bytes_total",
        "conversion_duration_seconds_count",
    ] {
        let (before, after) = (
            metric_sum(&metrics_before, family),
            metric_sum(&metrics_after, family),
        );
        assert!(after > before, "{family} did not move: {before} → {after}");
    }
    running.stop().await;
}
