//! Rate limits at the gateway: uploads per minute and in progress per user, login attempts per
//! client address; each refusal is a 429 JSON error with `Retry-After`.

use crate::helpers::{Options, TestApp, assert_error, spawn_app_with};
use gateway::rate_limit::RateLimitConfig;
use reqwest::multipart::{Form, Part};
use std::time::Duration;

async fn app_with_limits(limits: RateLimitConfig, trust_forwarded_for: bool) -> TestApp {
    spawn_app_with(Options {
        configure: Some(Box::new(move |settings| {
            settings.rate_limits = limits;
            settings.trust_forwarded_for = trust_forwarded_for;
        })),
        ..Options::default()
    })
    .await
}

/// Asserts a 429 with a sensible `Retry-After` (in whole seconds, at most `max`).
async fn assert_limited(response: reqwest::Response, max: u64) -> String {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!(
        (1..=max).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let body = assert_error(response, 429, "too_many_requests").await;
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn uploads_per_minute_are_limited_per_user() {
    let app = app_with_limits(
        RateLimitConfig {
            uploads_per_minute: 2,
            max_concurrent_uploads: 0,
            logins_per_minute: 0,
        },
        false,
    )
    .await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    app.submit(&alice, "one.mp4").await;
    app.submit(&alice, "two.mp4").await;
    let third = app.upload(&alice, "three.mp4", vec![1; 1000], "").await;
    // A burst of 2, then one every 30 s.
    let message = assert_limited(third, 30).await;
    assert!(message.contains("2 per minute"), "{message}");
    // Nothing of the refused upload was stored.
    assert_eq!(
        app.files_of(platform::blob::Bucket::Videos, &alice.id)
            .await,
        2
    );
    // Another user has a budget of their own.
    app.submit(&bob, "one.mp4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_are_limited_per_user() {
    let app = app_with_limits(
        RateLimitConfig {
            uploads_per_minute: 0,
            max_concurrent_uploads: 1,
            logins_per_minute: 0,
        },
        false,
    )
    .await;
    let user = app.new_user().await;
    // Verify a token once so the slow upload below does not wait for auth's keys.
    assert_eq!(app.get(&user, "/jobs").await.status(), 200);

    // An upload whose body trickles in: it holds the user's only slot until it ends.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let form = Form::new().part(
        "file",
        Part::stream(body)
            .file_name("slow.mp4")
            .mime_str("video/mp4")
            .unwrap(),
    );
    let slow = {
        let request = app
            .client
            .post(app.url("/upload"))
            .bearer_auth(&user.token)
            .multipart(form);
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    sender.send(Ok(vec![7u8; 64 * 1024])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;

    let second = app.upload(&user, "second.mp4", vec![1; 1000], "").await;
    let message = assert_limited(second, 5).await;
    assert!(message.contains("at most 1 at a time"), "{message}");

    sender.send(Ok(vec![8u8; 64 * 1024])).await.unwrap();
    drop(sender);
    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the slow upload ends")
        .unwrap();
    assert_eq!(slow.status(), 202, "{}", slow.text().await.unwrap());
    // Its slot is free again.
    app.submit(&user, "third.mp4").await;
}

#[tokio::test]
async fn login_attempts_are_limited_per_client_address() {
    let app = app_with_limits(
        RateLimitConfig {
            uploads_per_minute: 0,
            max_concurrent_uploads: 0,
            logins_per_minute: 4,
        },
        false,
    )
    .await;
    // new_user logs in once.
    let user = app.new_user().await;
    assert_eq!(app.login(&user.email, "wrong password").await.status(), 401);
    assert_eq!(app.login(&user.email, &user.password).await.status(), 200);
    assert_eq!(app.login(&user.email, &user.password).await.status(), 200);
    let limited = app.login(&user.email, &user.password).await;
    let message = assert_limited(limited, 15).await;
    assert!(message.contains("4 per minute"), "{message}");
    // X-Forwarded-For is not trusted here: claiming another address does not help.
    let spoofed = app
        .client
        .post(app.url("/login"))
        .header("x-forwarded-for", "203.0.113.50")
        .basic_auth(&user.email, Some(&user.password))
        .send()
        .await
        .unwrap();
    assert_limited(spoofed, 15).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = app_with_limits(
        RateLimitConfig {
            uploads_per_minute: 0,
            max_concurrent_uploads: 0,
            logins_per_minute: 1,
        },
        true,
    )
    .await;
    let signup = app
        .signup("proxied@example.com", "long enough password")
        .await;
    assert_eq!(signup.status(), 201);
    let login_from = |client: &'static str| {
        app.client
            .post(app.url("/login"))
            .header("x-forwarded-for", format!("{client}, 10.0.0.2"))
            .basic_auth("proxied@example.com", Some("long enough password"))
            .send()
    };
    assert_eq!(login_from("203.0.113.1").await.unwrap().status(), 200);
    assert_limited(login_from("203.0.113.1").await.unwrap(), 60).await;
    assert_eq!(login_from("203.0.113.2").await.unwrap().status(), 200);
}

#[tokio::test]
async fn auth_limits_failures_by_the_forwarded_client_address() {
    let app = app_with_limits(
        RateLimitConfig {
            uploads_per_minute: 0,
            max_concurrent_uploads: 0,
            logins_per_minute: 0,
        },
        true,
    )
    .await;
    let attempt = |client: &'static str, n: usize| {
        app.client
            .post(app.url("/login"))
            .header("x-forwarded-for", client)
            .basic_auth(format!("nobody-{n}@example.com"), Some("wrong password"))
            .send()
    };
    // Auth allows 20 failures per address a minute (distinct emails, so not per account).
    let mut refused_at = None;
    for n in 0..25 {
        let response = attempt("198.51.100.7", n).await.unwrap();
        match response.status().as_u16() {
            401 => {}
            429 => {
                refused_at = Some(n);
                assert_limited(response, 60).await;
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        refused_at,
        Some(20),
        "auth limited the address it was given"
    );
    // Another client behind the same proxy is not affected.
    assert_eq!(attempt("198.51.100.8", 99).await.unwrap().status(), 401);
}
