//! Health, readiness and metrics live on the internal listener (`ADMIN_ADDR`) only; the public
//! one answers them like any unknown route.

use crate::helpers::{Options, assert_error, spawn_app, spawn_app_with};
use serde_json::Value;

#[tokio::test]
async fn healthz_and_readyz_report_every_dependency() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(app.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let ready = app
        .client
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    let status = ready.status();
    let body: Value = ready.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    for check in ["auth", "event_store", "blob_store", "event_bus"] {
        assert_eq!(body["checks"][check]["status"], "ok", "{check}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_an_incoming_one_is_kept() {
    let app = spawn_app().await;
    let generated = app.client.get(app.url("/")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let propagated = app
        .client
        .get(app.url("/"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(propagated.headers()["x-request-id"], "trace-me-42");

    // Errors too.
    let missing = app
        .client
        .get(app.url("/jobs"))
        .header("x-request-id", "err-7")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["x-request-id"], "err-7");
    assert_error(missing, 401, "unauthorized").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_error(response, 404, "not_found").await;
    let response = app.client.get(app.url("/upload")).send().await.unwrap();
    assert_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn internal_endpoints_are_not_on_the_public_listener() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the public listener serves the API");
    for path in ["/metrics", "/readyz", "/healthz"] {
        let public = app.client.get(app.url(path)).send().await.unwrap();
        assert_error(public, 404, "not_found").await;
    }
    let metrics = app
        .client
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    // Scrapes and probes are not API traffic: only the page request is counted.
    assert!(!text.contains(r#"route="/metrics""#), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_dependency_that_is_down_but_never_its_driver_text() {
    let mut mongo = platform::testing::private_mongodb().await;
    let app = spawn_app_with(Options {
        mongodb_uri: Some(format!("mongodb://127.0.0.1:{}", mongo.port)),
        ..Options::default()
    })
    .await;
    mongo.stop();
    let ready = app
        .client
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body["checks"]["event_store"]["status"], "unavailable",
        "{body}"
    );
    assert_eq!(body["checks"]["event_bus"]["status"], "ok", "{body}");
    let reason = body["checks"]["event_store"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(!reason.is_empty(), "{body}");
    let text = body.to_string();
    let port = mongo.port.to_string();
    for leak in [
        port.as_str(),
        "127.0.0.1",
        "Kind",
        "error",
        "Server selection",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
    app.stop().await;
}
