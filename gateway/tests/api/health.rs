use crate::helpers::{assert_error, spawn_app};
use serde_json::Value;

#[tokio::test]
async fn healthz_and_readyz_report_every_dependency() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
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
    let generated = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let propagated = app
        .client
        .get(app.url("/healthz"))
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
