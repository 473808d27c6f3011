//! `/healthz` and `/readyz` against real dependencies, and with the mail server missing.

mod common;

use common::*;
use platform::testing::free_port;
use serde_json::Value;

async fn get(url: String) -> (u16, Value) {
    let response = reqwest::get(&url).await.expect("the endpoint answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn ready_when_broker_mail_server_and_store_answer() {
    let harness = Harness::new().await;
    let app = harness.start(test_settings()).await;

    let (status, body) = get(format!("http://{}/healthz", app.http_addr)).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = get(format!("http://{}/readyz", app.http_addr)).await;
    assert_eq!(status, 200, "{body}");
    for check in ["event_bus", "smtp", "mongodb"] {
        assert_eq!(body["checks"][check]["status"], "ok", "{check}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn not_ready_without_the_mail_server_and_the_password_is_never_shown() {
    let harness = Harness::new().await;
    let settings = notification::Settings {
        smtp_url: format!("smtp://mailer:hunter2@127.0.0.1:{}", free_port())
            .parse()
            .unwrap(),
        ..test_settings()
    };
    let app = harness.start(settings).await;

    let (status, body) = get(format!("http://{}/readyz", app.http_addr)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["smtp"]["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["mongodb"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["event_bus"]["status"], "ok", "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");

    // Still alive: liveness does not depend on the mail server.
    let (status, _) = get(format!("http://{}/healthz", app.http_addr)).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn not_ready_without_the_store() {
    let harness = Harness::new().await;
    let settings = notification::Settings {
        mongodb_uri: format!("mongodb://127.0.0.1:{}", free_port()).into(),
        ..test_settings()
    };
    let app = harness.start(settings).await;

    let (status, body) = get(format!("http://{}/readyz", app.http_addr)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["mongodb"]["status"], "unavailable", "{body}");
    app.stop().await;
}
