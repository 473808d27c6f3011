use crate::helpers::{Options, assert_error, spawn_app, spawn_app_with};
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test]
async fn signup_then_login_returns_the_token_as_plain_text_like_the_original() {
    let app = spawn_app().await;
    let email = "alice@example.com";
    let signup = app.signup(email, "a long enough password").await;
    assert_eq!(signup.status(), 201);
    let body: Value = signup.json().await.unwrap();
    assert_eq!(body["email"], email);
    assert!(!body["user_id"].as_str().unwrap().is_empty());

    let login = app.login(email, "a long enough password").await;
    assert_eq!(login.status(), 200);
    assert!(
        login.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let token = login.text().await.unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // The token opens the API.
    let jobs = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), 200);
}

#[tokio::test]
async fn login_answers_json_when_asked() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let response = app
        .client
        .post(app.url("/login"))
        .basic_auth(&user.email, Some(&user.password))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"].as_str().unwrap().split('.').count(), 3);
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now());
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let wrong = app.login(&user.email, "not the password").await;
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(wrong, 401, "invalid_credentials").await;

    let unknown = app.login("nobody@example.com", "whatever it is").await;
    assert_error(unknown, 401, "invalid_credentials").await;

    let missing = app.client.post(app.url("/login")).send().await.unwrap();
    assert_error(missing, 401, "invalid_credentials").await;

    let garbage = app
        .client
        .post(app.url("/login"))
        .header("authorization", "Basic !!!not-base64")
        .send()
        .await
        .unwrap();
    assert_error(garbage, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_with_retry_after() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let mut limited = None;
    for _ in 0..30 {
        let response = app.login(&user.email, "wrong password!!").await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 401);
    }
    let response = limited.expect("auth rate-limits repeated failures");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_error(response, 429, "too_many_requests").await;
}

#[tokio::test]
async fn signup_accepts_basic_and_refuses_duplicates_and_invalid_input() {
    let app = spawn_app().await;
    let basic = app
        .client
        .post(app.url("/signup"))
        .basic_auth("bob@example.com", Some("another long password"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 201);

    let duplicate = app.signup("bob@example.com", "another long password").await;
    assert_error(duplicate, 409, "conflict").await;

    let bad_email = app.signup("not-an-email", "another long password").await;
    assert_error(bad_email, 422, "unprocessable_entity").await;

    let short_password = app.signup("carol@example.com", "x").await;
    assert_error(short_password, 422, "unprocessable_entity").await;

    let missing_field = app
        .client
        .post(app.url("/signup"))
        .json(&serde_json::json!({"email": "dan@example.com"}))
        .send()
        .await
        .unwrap();
    assert_error(missing_field, 422, "unprocessable_entity").await;

    let malformed = app
        .client
        .post(app.url("/signup"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "bad_request").await;

    let not_json = app
        .client
        .post(app.url("/signup"))
        .body("email=x")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn an_absent_auth_service_is_503_quickly() {
    let closed = platform::testing::free_port();
    let app = spawn_app_with(Options {
        auth_grpc_url: Some(format!("http://127.0.0.1:{closed}")),
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let response = app.login("a@example.com", "whatever password").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_error(response, 503, "service_unavailable").await;

    let signup = app.signup("a@example.com", "whatever password").await;
    assert_error(signup, 503, "service_unavailable").await;

    // Without keys no token can be checked: 503, not 401 or 500.
    let jobs = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth("eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.e30.c2ln")
        .send()
        .await
        .unwrap();
    assert_error(jobs, 503, "service_unavailable").await;

    let ready = app
        .client
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn a_hung_auth_service_is_503_at_the_deadline_not_a_hang() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let app = spawn_app_with(Options {
        auth_grpc_url: Some(format!("http://127.0.0.1:{port}")),
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let response = app.login("a@example.com", "whatever password").await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_error(response, 503, "service_unavailable").await;
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_reason() {
    let app = spawn_app().await;
    let user = app.new_user().await;

    let missing = app.client.get(app.url("/jobs")).send().await.unwrap();
    let body = assert_error(missing, 401, "unauthorized").await;
    assert!(body["message"].as_str().unwrap().contains("missing"));

    let garbage = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_error(garbage, 401, "unauthorized").await;

    // The real token with its signature swapped for another's.
    let other = app.new_user().await;
    let (head_payload, _) = user.token.rsplit_once('.').unwrap();
    let (_, other_signature) = other.token.rsplit_once('.').unwrap();
    let forged = format!("{head_payload}.{other_signature}");
    let response = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 401, "unauthorized").await;
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    let basic = app
        .client
        .get(app.url("/jobs"))
        .basic_auth(&user.email, Some(&user.password))
        .send()
        .await
        .unwrap();
    assert_error(basic, 401, "unauthorized").await;
}

#[tokio::test]
async fn me_names_the_tokens_owner_and_refuses_a_bad_token() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for _ in 0..2 {
        // The second answer comes from the verified-token memory: it must be the same.
        let response = app
            .client
            .get(app.url("/me"))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user_id"], user.id.as_str());
        assert_eq!(body["email"], user.email.as_str());
    }

    let anonymous = app.client.get(app.url("/me")).send().await.unwrap();
    assert_error(anonymous, 401, "unauthorized").await;
    let (head_payload, _) = user.token.rsplit_once('.').unwrap();
    let forged = format!("{head_payload}.AAAA");
    let response = app
        .client
        .get(app.url("/me"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthorized").await;
}
