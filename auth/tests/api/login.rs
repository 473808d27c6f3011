//! Login: every bad credential looks the same from outside, in message and in time.

use crate::helpers::{
    Backend, PASSWORD, expect_code, on_both_backends, spawn_app, spawn_app_with, unique_email,
};
use auth::passwords::HashingParams;
use std::time::{Duration, Instant};
use tonic::Code;

on_both_backends!(
    a_wrong_password_is_unauthenticated,
    an_unknown_email_gets_the_same_error_as_a_wrong_password,
);

async fn a_wrong_password_is_unauthenticated(backend: Backend) {
    let app = backend.spawn().await;
    let email = unique_email("wrong");
    app.register(&email, PASSWORD).await.unwrap();

    let status = expect_code(
        app.login(&email, "not the password").await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "invalid email or password");
    // Nearly right is still wrong: case and whitespace of passwords matter.
    expect_code(
        app.login(&email, &PASSWORD.to_uppercase()).await,
        Code::Unauthenticated,
    );
    expect_code(
        app.login(&email, &format!("{PASSWORD} ")).await,
        Code::Unauthenticated,
    );
    app.stop().await;
}

async fn an_unknown_email_gets_the_same_error_as_a_wrong_password(backend: Backend) {
    let app = backend.spawn().await;
    let email = unique_email("known");
    app.register(&email, PASSWORD).await.unwrap();

    let wrong_password = expect_code(
        app.login(&email, "bad password").await,
        Code::Unauthenticated,
    );
    let unknown = expect_code(
        app.login(&unique_email("nobody"), PASSWORD).await,
        Code::Unauthenticated,
    );
    let malformed = expect_code(
        app.login("not an email", PASSWORD).await,
        Code::Unauthenticated,
    );
    let empty = expect_code(app.login("", "").await, Code::Unauthenticated);
    for status in [&unknown, &malformed, &empty] {
        assert_eq!(status.message(), wrong_password.message());
        assert!(status.metadata().get("retry-after").is_none());
    }
    app.stop().await;
}

/// Without the dummy hash an unknown email would answer after a database lookup only, far
/// sooner than a wrong password, which costs an argon2 verification.
#[tokio::test]
async fn an_unknown_email_takes_as_long_as_a_wrong_password() {
    // Heavier than the usual test parameters so the hash clearly dominates a database round trip.
    let app = spawn_app_with(|settings| {
        settings.password_hashing = HashingParams {
            memory_kib: 8 * 1024,
            iterations: 2,
            parallelism: 1,
        };
        settings.login_limits.max_failures_per_email = 1_000;
        settings.login_limits.max_failures_per_address = 1_000;
    })
    .await;
    let email = unique_email("timing");
    app.register(&email, PASSWORD).await.unwrap();

    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..7 {
        let started = Instant::now();
        expect_code(
            app.login(&email, "bad password").await,
            Code::Unauthenticated,
        );
        wrong.push(started.elapsed());
        let started = Instant::now();
        expect_code(
            app.login(&format!("nobody{round}@example.com"), PASSWORD)
                .await,
            Code::Unauthenticated,
        );
        unknown.push(started.elapsed());
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (wrong, unknown) = (median(&mut wrong), median(&mut unknown));
    assert!(
        unknown * 2 > wrong && wrong * 2 > unknown,
        "unknown email took {unknown:?}, wrong password {wrong:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_overlong_password_at_login_is_just_wrong() {
    let app = spawn_app().await;
    let email = unique_email("long");
    app.register(&email, PASSWORD).await.unwrap();
    let status = expect_code(
        app.login(&email, &"x".repeat(10_000)).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "invalid email or password");
    app.stop().await;
}

#[tokio::test]
async fn a_successful_login_is_not_slowed_by_earlier_successes() {
    let app = spawn_app().await;
    let email = unique_email("often");
    app.register(&email, PASSWORD).await.unwrap();
    // Far more logins than the failure limit: successes do not count against it.
    for _ in 0..12 {
        app.login(&email, PASSWORD).await.unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_any_work() {
    let app = spawn_app().await;
    let status = expect_code(
        app.login(&unique_email("huge"), &"x".repeat(1_000_000))
            .await,
        Code::OutOfRange,
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    // The service is unharmed.
    app.register(&unique_email("after"), PASSWORD)
        .await
        .unwrap();
    app.stop().await;
}
