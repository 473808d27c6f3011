//! Brute-force protection: failed logins per email and per client address.

use crate::helpers::{CLIENT, PASSWORD, expect_code, spawn_app, spawn_app_with, unique_email};
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn repeated_failures_for_one_email_are_refused_with_a_retry_time() {
    // Defaults: 5 failures per email per minute.
    let app = spawn_app().await;
    let email = unique_email("target");
    app.register(&email, PASSWORD).await.unwrap();

    // Spread over several addresses, so only the per-email limit can trip.
    for n in 0..5 {
        expect_code(
            app.login_from(&email, "guess", &format!("198.51.100.{n}"))
                .await,
            Code::Unauthenticated,
        );
    }
    let status = expect_code(
        app.login_from(&email, "guess", "198.51.100.99").await,
        Code::ResourceExhausted,
    );
    let retry_after: u64 = status
        .metadata()
        .get("retry-after")
        .expect("retry-after metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        status
            .message()
            .contains(&format!("retry in {retry_after} seconds")),
        "{}",
        status.message()
    );
    // Locked means locked: even the right password waits, from anywhere.
    expect_code(
        app.login_from(&email, PASSWORD, "203.0.113.1").await,
        Code::ResourceExhausted,
    );
    // Other accounts are unaffected.
    let other = unique_email("bystander");
    app.register(&other, PASSWORD).await.unwrap();
    app.login(&other, PASSWORD).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_refused() {
    let app = spawn_app_with(|settings| {
        settings.login_limits.max_failures_per_address = 4;
    })
    .await;
    let email = unique_email("sprayed");
    app.register(&email, PASSWORD).await.unwrap();

    // Password spraying: a different email each time, all from one address.
    for n in 0..4 {
        expect_code(
            app.login(&unique_email(&format!("spray{n}")), PASSWORD)
                .await,
            Code::Unauthenticated,
        );
    }
    let status = expect_code(app.login(&email, PASSWORD).await, Code::ResourceExhausted);
    assert!(status.metadata().get("retry-after").is_some());
    // The same address with a different port is the same client.
    expect_code(
        app.login_from(&email, PASSWORD, &format!("{CLIENT}:61000"))
            .await,
        Code::ResourceExhausted,
    );
    // Another client address is not blocked.
    app.login_from(&email, PASSWORD, "192.0.2.200")
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_limit_lifts_once_the_window_has_passed() {
    let app = spawn_app_with(|settings| {
        settings.login_limits.max_failures_per_email = 2;
        settings.login_limits.window = Duration::from_secs(2);
    })
    .await;
    let email = unique_email("patient");
    app.register(&email, PASSWORD).await.unwrap();
    for _ in 0..2 {
        expect_code(app.login(&email, "guess").await, Code::Unauthenticated);
    }
    let status = expect_code(app.login(&email, PASSWORD).await, Code::ResourceExhausted);
    let retry_after: u64 = status
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after <= 2, "{retry_after}");
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(200)).await;
    app.login(&email, PASSWORD).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_burst_of_concurrent_guesses_cannot_exceed_the_limit() {
    let app = spawn_app().await;
    let email = unique_email("burst");
    app.register(&email, PASSWORD).await.unwrap();
    let guesses = (0..15).map(|n| {
        let app = &app;
        let email = &email;
        async move {
            app.login_from(email, &format!("guess {n}"), &format!("198.51.100.{n}"))
                .await
        }
    });
    let results = futures::future::join_all(guesses).await;
    let checked = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::Unauthenticated))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    assert_eq!(checked, 5, "{results:?}");
    assert_eq!(refused, 10, "{results:?}");
    app.stop().await;
}
